"""Build state -> the files a template renders to.

``Dockerfile`` and ``nginx.conf`` are text formats rendered from jinja2
templates kept as files, every value escaped by a filter. ``runner.json``
and ``kubernetes.yaml`` are data formats serialised from data (json /
yaml.safe_dump), which escapes by construction. Output is deterministic:
sorted keys, fixed timestamps and modes in ``context/``.

This module holds the entry points (:func:`render_template`,
:func:`render_state`) and their result, :class:`Rendered`; each output has
its module, whose public names are importable from here: the Dockerfile and
build context in :mod:`~codestudio.render.dockerfile`, ``runner.json`` in
:mod:`~codestudio.render.runner`, ``kubernetes.yaml`` in
:mod:`~codestudio.render.manifests`, ``nginx.conf`` in
:mod:`~codestudio.render.nginx`, the names derived from a studio
(:class:`StudioContext`, kube names, guard ports) in
:mod:`~codestudio.render.studio`, and writing a render to a folder in
:mod:`~codestudio.render.output`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from codestudio.blockapi import BuildState
from codestudio.errors import TemplateError
from codestudio.render.dockerfile import (  # noqa: F401 (re-exported: the renderer's public names)
    BLOCKS_LABEL,
    CA_ARGS,
    RUNNER_LABEL,
    TEMPLATE_LABEL,
    TOOLS_STEP_LABEL,
    StepInfo,
    build_dockerfile,
    leading_stages,
    parallel_stages,
    python_installer,
    run_mounts,
    tools_dockerfile,
)
from codestudio.render.manifests import (  # noqa: F401 (re-exported)
    GATEWAY_POD_LABELS,
    container_env,
    kubernetes_manifest,
    kubernetes_yaml,
    pod_resources,
    pod_scheduling,
)
from codestudio.render.nginx import nginx_conf, studio_routes  # noqa: F401 (re-exported)
from codestudio.render.output import FIXED_MTIME, MARKER, OUTPUTS, write_rendered  # noqa: F401 (re-exported)
from codestudio.render.runner import runner_document, runner_json  # noqa: F401 (re-exported)
from codestudio.render.studio import (  # noqa: F401 (re-exported)
    GUARD_PORT_BASE,
    GUARD_SECRET_KEY,
    NAMESPACE,
    StudioContext,
    browser_path,
    guard_ports,
    guard_secret_name,
    kube_name,
    port_name,
    probe_path,
)


@dataclass
class Rendered:
    template: object
    state: BuildState
    dockerfile: str
    context_files: dict[str, tuple[bytes, int]]
    runner_json: str
    kubernetes_yaml: str
    nginx_conf: str
    steps: list[StepInfo]
    plugins: dict[str, str]
    #: The installer whose build tools image RUN steps mount (``uv`` or ``pip``), None when no step uses them.
    build_tools: str | None = None


def render_state(template, state: BuildState, studio: StudioContext | None = None) -> Rendered:
    studio = studio or StudioContext()
    rj = runner_json(template, state)
    try:
        dockerfile, files, steps = build_dockerfile(template, state, rj)
    except ValueError as exc:  # a value a Dockerfile word cannot hold
        raise TemplateError(str(template.path), [str(exc)]) from None
    plugins = {b.distribution: b.version for b in template.blocks}
    return Rendered(
        template=template,
        state=state,
        dockerfile=dockerfile,
        context_files=files,
        runner_json=rj,
        kubernetes_yaml=kubernetes_yaml(state, studio, template.id),
        nginx_conf=nginx_conf(state, studio, template.id),
        steps=steps,
        plugins=dict(sorted(plugins.items())),
        build_tools=python_installer(template) if any(s.label == TOOLS_STEP_LABEL for s in steps) else None,
    )


def render_template(path: Path | str, studio: StudioContext | None = None, blocks=None) -> Rendered:
    """Load, validate, apply and render a template file. Raises TemplateError on bad input."""
    from codestudio.plan import plan_template

    template, state = plan_template(path, blocks)
    return render_state(template, state, studio)
