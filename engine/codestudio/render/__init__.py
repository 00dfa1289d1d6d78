"""Build state -> the files a template renders to.

``Dockerfile`` and ``nginx.conf`` are text formats rendered from jinja2
templates kept as files, every value escaped by a filter. ``runner.json``
and ``kubernetes.yaml`` are data formats serialised from data (json /
yaml.safe_dump), which escapes by construction. Output is deterministic:
sorted keys, fixed timestamps and modes in ``context/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from codestudio import __version__
from codestudio.blockapi import CONTEXT_DIR, BuildState, Copy, Env, Raw, Run, Workdir
from codestudio.errors import PluginError, TemplateError

#: mtime of every file in context/ (1980-01-01, as in zip and wheels).
FIXED_MTIME = 315532800
CA_ARGS = ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS")
RUNNER_LABEL = "io.codestudio.runner"
TEMPLATE_LABEL = "io.codestudio.template"
BLOCKS_LABEL = "io.codestudio.blocks"
NAMESPACE = "codestudio"
#: The label of the build tools' stage step (``FROM`` the tools image).
TOOLS_STEP_LABEL = "codestudio build tools"


@dataclass
class StudioContext:
    """Per-studio values that go into kubernetes.yaml and nginx.conf.

    ``codestudio render`` uses these defaults; the runtimes pass real ones.
    """

    project_key: str = "PROJECT"
    studio_id: str | None = None
    owner: str = "user"
    image: str | None = None
    host_ports: dict[int, int] = field(default_factory=dict)
    mode: Literal["studio", "webapp"] = "studio"
    webapp_id: str | None = None
    namespace: str = NAMESPACE
    session_secret: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    #: Distinguishes runtimes sharing one container engine (the local runtime: its data dir).
    instance: str | None = None


@dataclass
class StepInfo:
    """One Dockerfile instruction as buildah numbers it (``STEP n/m``) and the block it belongs to."""

    number: int
    block_index: int | None
    block_type: str | None
    label: str
    instruction: str
    #: The stage (1-based, Dockerfile order) and the step's number in it, as buildah prints them.
    stage: int = 1
    stage_number: int = 0


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


def _jinja():
    import jinja2

    from codestudio import dockerfile

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("codestudio.render", "templates"),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=False,
    )
    env.filters["exec_form"] = dockerfile.exec_form
    env.filters["quoted"] = dockerfile.quoted
    env.filters["comment"] = dockerfile.comment
    return env


# --------------------------------------------------------------------------
# Dockerfile + context


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:60] or "file"


def _norm_mode(mode: int) -> int:
    return 0o755 if mode & 0o111 else 0o644


def _add_tree(files: dict[str, tuple[bytes, int]], rel: str, source: Path, resources) -> None:
    """Copy a file or folder into ``files`` under ``rel`` (modes normalised).

    The content comes from the resolver: exactly the files it checked when
    the resource was resolved, each re-checked as it is read.
    """
    for sub, data, mode in resources.contents(source):
        files[f"{rel}/{sub}" if sub else rel] = (data, _norm_mode(mode))


def build_dockerfile(template, state: BuildState, runner_json: str) -> tuple[str, dict[str, tuple[bytes, int]], list[StepInfo]]:
    """Render the Dockerfile and collect the build context."""
    from codestudio.runner import RUNNER_PATH

    files: dict[str, tuple[bytes, int]] = {}
    groups = []
    current_user = None  # the base image's user is unknown: always set it once
    installer = python_installer(template)
    uses_tools = False
    stages = []
    # The leading run of blocks that build on their own (contribute_stage) becomes parallel stages,
    # when it has two or more: a stage alone overlaps with nothing and only adds a copy of its result.
    leading = parallel_stages(template) and len(leading_stages(state)) > 1
    for gi, group in enumerate(state.groups):
        block = group.block
        prefix = f"{CONTEXT_DIR}/blocks/{gi:02d}-{_safe_name(block.type if block else 'engine')}"
        rendered_steps = []
        staged = leading = leading and bool(group.stage_paths) and block is not None
        if staged:
            # A stage starts from the base image: its first step says its user.
            image_user, current_user = current_user, None
        for si, step in enumerate(group.steps):
            item: dict = {"user_line": None}
            if step.user != current_user:
                item["user_line"] = step.user
                current_user = step.user
            if isinstance(step, Run):
                previous = rendered_steps[-1] if rendered_steps else None
                if (step.script is not None and item["user_line"] is None and previous is not None
                        and previous.get("scripts") is not None):
                    # Consecutive scripts of one block (as one user) run as one RUN: each RUN is a
                    # layer commit. Each keeps its own shell (a subshell): its exit, cd or variables
                    # reach the next no more than they did across RUN steps; a failure stops the RUN.
                    previous["scripts"].append(step.script)
                    previous["argv"] = ["/bin/sh", "-e", "-c", "\n".join(f"(\n{text.strip(chr(10))}\n)"
                                                                        for text in previous["scripts"])]
                    previous["mounts"] = run_mounts(previous["argv"], installer)
                    uses_tools |= bool(previous["mounts"])
                    continue
                item["kind"] = "run"
                item["argv"] = step.argv if step.argv is not None else ["/bin/sh", "-e", "-c", step.script]
                item["scripts"] = [step.script] if step.script is not None else None
                item["mounts"] = run_mounts(item["argv"], installer)
                uses_tools |= bool(item["mounts"])
            elif isinstance(step, Copy):
                item["kind"] = "copy"
                if step.content is not None:
                    name = _safe_name(Path(step.dest).name)
                    rel = f"{prefix}/{si}/{name}"
                    data = step.content.encode() if isinstance(step.content, str) else step.content
                    files[rel] = (data, step.mode)
                else:
                    name = _safe_name(step.source.name)
                    rel = f"{prefix}/{si}/{name}"
                    _add_tree(files, rel, step.source, state.resources)
                    if step.source.is_file():
                        files[rel] = (files[rel][0], step.mode if step.mode != 0o644 else files[rel][1])
                item["src"] = rel + ("/" if step.source is not None and step.source.is_dir() else "")
                item["dest"] = step.dest
                item["owner"] = step.owner
            elif isinstance(step, Env):
                item["kind"] = "env"
                item["env_items"] = sorted(step.values.items())
            elif isinstance(step, Workdir):
                item["kind"] = "workdir"
                item["path"] = step.path
            elif isinstance(step, Raw):
                item["kind"] = "raw"
                item["text"] = step.text.strip("\n")
                for name, source in sorted(step.resources.items()):
                    # Collisions were refused by the planner (plan.check_resource_names).
                    _add_tree(files, name, source, state.resources)
                # Raw text may switch users itself; force the next step to say its user.
                current_user = None
            else:
                raise PluginError(f"unknown step type {type(step).__name__}")
            rendered_steps.append(item)
        title = group.title + (f" ({block.type})" if block and group.title != block.type else "")
        if staged:
            name = f"codestudio-block-{gi:02d}"
            stages.append({"index": gi, "name": name, "title": title, "steps": rendered_steps})
            current_user = image_user
            rendered_steps = [{"user_line": None, "kind": "copy_from", "stage": name, "path": path}
                              for path in group.stage_paths]
        groups.append({"title": title, "steps": rendered_steps})

    # The runner and its plan go last: editing an entrypoint must not rebuild the blocks.
    files[f"{CONTEXT_DIR}/runner/runner.py"] = (RUNNER_PATH.read_bytes(), 0o755)
    files[f"{CONTEXT_DIR}/runner/runner.json"] = (runner_json.encode(), 0o644)
    groups.append(
        {
            "title": "codestudio runner",
            # One COPY (one layer) for both files: every instruction after the
            # last block costs a layer commit on each rebuild.
            "steps": [
                {"user_line": "root" if current_user != "root" else None, "kind": "copy", "owner": "root",
                 "src": f"{CONTEXT_DIR}/runner/", "dest": "/opt/codestudio/"},
            ],
        }
    )
    block_list = [
        {"type": b.type, "distribution": b.distribution, "version": b.version} for b in template.blocks
    ]
    labels = [
        (TEMPLATE_LABEL, template.id),
        (BLOCKS_LABEL, json.dumps(block_list, sort_keys=True, separators=(",", ":"))),
        (RUNNER_LABEL, json.dumps(json.loads(runner_json), sort_keys=True, separators=(",", ":"))),
    ]
    tools = _tools_stage(installer) if uses_tools else None
    text = _jinja().get_template("Dockerfile.j2").render(
        version=__version__,
        template_id=template.id,
        base_image=state.base_image,
        ca_args=CA_ARGS,
        tools=tools,
        stages=stages,
        groups=groups,
        labels=labels,
    )
    return text, dict(sorted(files.items())), _step_infos(text, state)


def leading_stages(state: BuildState) -> list[int]:
    """The groups of the template's leading run of independent blocks (``contribute_stage``)."""
    run = []
    for gi, group in enumerate(state.groups):
        if not group.stage_paths or group.block is None:
            break
        run.append(gi)
    return run


def parallel_stages(template) -> bool:
    """The template's ``build.parallel_stages``, else the data dir's setting, else false."""
    from codestudio import buildenv

    chosen = getattr(getattr(template, "build", None), "parallel_stages", None)
    return buildenv.default_parallel_stages() if chosen is None else chosen


def python_installer(template) -> str:
    """uv or pip: the template's ``build.python_installer``, else the data dir's setting, else uv."""
    from codestudio import buildenv

    build = getattr(template, "build", None)
    chosen = getattr(build, "python_installer", None)
    return chosen or buildenv.default_installer()


def run_mounts(argv: list[str], installer: str) -> list[str]:
    """The ``--mount`` values of a RUN step: what its text names.

    A step calling the build tools gets them (bind-mounted from their
    stage) and the download cache of the installer they use; a step naming
    a tool's cache folder (``blockhelpers.cache_dir``) gets that cache.
    """
    from codestudio import buildenv

    text = "\0".join(argv)
    mounts = []
    tools = buildenv.TOOLS_DIR + "/" in text
    if tools:
        mounts.append(f"type=bind,from={buildenv.TOOLS_STAGE},source={buildenv.TOOLS_DIR},target={buildenv.TOOLS_DIR}")
    for tool, folder in buildenv.CACHES.items():
        if folder in text or (tools and tool == installer):
            mounts.append(buildenv.cache_mount(tool))
    return mounts


def _tools_stage(installer: str) -> dict:
    """The build tools as a stage of the template's Dockerfile: the tools image the builder makes."""
    from codestudio import buildenv

    return {"name": buildenv.TOOLS_STAGE, "arg": buildenv.TOOLS_IMAGE_ARG, "id": buildenv.tools_id(installer),
            "installer": installer}


def tools_dockerfile(installer: str) -> tuple[str, dict[str, tuple[bytes, int]]]:
    """The Dockerfile and context files of the build tools image (:func:`codestudio.buildenv.tools_image`).

    With uv: ``install-python`` and ``verify-record.py``, and uv installed
    with pip from the package index into a venv, ``FROM`` the base image (the
    build argument ``CODESTUDIO_BASE_IMAGE``). With pip: the two scripts
    alone, ``FROM scratch``.
    """
    from codestudio import buildenv

    files = {f"build-tools/{name}": (data, 0o755) for name, data in sorted(buildenv.tool_files().items())}
    venv = f"{buildenv.TOOLS_DIR}/uv"
    script = (f"python3 -m venv {venv}\n"
              f"CODESTUDIO_INSTALLER=pip {buildenv.INSTALL_PYTHON} {venv}/bin/python uv=={buildenv.UV_VERSION}\n"
              f"{venv}/bin/uv --version\n")
    text = _jinja().get_template("BuildTools.Dockerfile.j2").render(
        version=__version__,
        installer=installer,
        ca_args=CA_ARGS,
        files_src="build-tools/",
        tools_dir=buildenv.TOOLS_DIR,
        pip_cache=buildenv.cache_mount("pip"),
        script=script,
        label=buildenv.TOOLS_LABEL,
        tools_id=buildenv.tools_id(installer),
    )
    return text, files


def _step_infos(text: str, state: BuildState) -> list[StepInfo]:
    """Number instructions as buildah does and attach each to its block group.

    Instructions come from :func:`codestudio.dockerfile.split_instructions`
    (buildah's own continuation rule); each belongs to the group whose
    ``# [n]`` marker comment is the last one above its first line. buildah
    counts steps per stage (``[stage/stages] STEP n/m``, the prefix only when
    there are several stages), from the stage's ``FROM``; arguments before
    the first ``FROM`` are no step. ``number`` runs over all stages in
    Dockerfile order.
    """
    from codestudio.dockerfile import split_instructions

    marker = re.compile(r"^# \[(\d+|labels|tools|image)\]")
    groups_at: list[tuple[int, int | str | None]] = []  # (line, group index or "tools")
    for number, line in enumerate(text.split("\n"), start=1):
        m = marker.match(line)
        if m:
            key = m.group(1)
            groups_at.append((number, int(key) if key.isdigit() else key if key == "tools" else None))
    infos: list[StepInfo] = []
    g = -1
    stage = 0
    in_stage = 0
    for instruction in split_instructions(text):
        if instruction.text.split(None, 1)[0].upper() == "FROM":
            stage += 1
            in_stage = 0
        if stage == 0:
            continue
        in_stage += 1
        while g + 1 < len(groups_at) and groups_at[g + 1][0] < instruction.start:
            g += 1
        group_index = groups_at[g][1] if g >= 0 else None
        block = None
        label = "codestudio"
        if group_index == "tools":
            label = TOOLS_STEP_LABEL
        elif group_index is not None and group_index < len(state.groups):
            block = state.groups[group_index].block
            label = state.groups[group_index].title
        elif group_index is not None:
            label = "codestudio runner"
        infos.append(
            StepInfo(
                number=len(infos) + 1,
                block_index=block.index if block else None,
                block_type=block.type if block else None,
                label=label,
                instruction=" ".join(instruction.text.split()),
                stage=stage,
                stage_number=in_stage,
            )
        )
    return infos


# --------------------------------------------------------------------------
# runner.json


def runner_document(template, state: BuildState) -> dict:
    from codestudio.runner.runner import SCHEMA

    probe = state.effective_probe()
    return {
        "schema": SCHEMA,
        "template": template.id,
        "env": dict(sorted(state.env.items())),
        "entrypoints": [ep.model_dump(mode="json") for _, ep in state.entrypoints],
        "actions": [a.model_dump(mode="json") for _, a in state.actions],
        "probe": probe.model_dump(mode="json") if probe else None,
        "ports": state.all_ports,
        "exposed_ports": state.exposed_ports,
    }


def runner_json(template, state: BuildState) -> str:
    """runner.json, checked with the runner's own :func:`~codestudio.runner.runner.validate_config`.

    The image's runner reads the same file with the same function, so render
    and runner cannot disagree: what the runner would refuse at start-up is
    a template error here, naming the block it came from.
    """
    from codestudio.runner.runner import validate_config

    doc = runner_document(template, state)
    problems = validate_config(doc)
    if problems:
        raise TemplateError(str(template.path), [_runner_problem(p, state) for p in problems])
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _runner_problem(problem: str, state: BuildState) -> str:
    """Name the block an entrypoint or action of runner.json came from."""
    match = re.match(r"(entrypoints|actions)\[(\d+)\]", problem)
    if match:
        items = state.entrypoints if match.group(1) == "entrypoints" else state.actions
        index = int(match.group(2))
        if index < len(items):
            return f"{items[index][0].where}: runner.json {problem}"
    return f"runner.json {problem}"


# --------------------------------------------------------------------------
# kubernetes.yaml


#: First port the runner's guard listens on (docs/runner.md, "The guard"): above Linux's
#: default ephemeral range (32768-60999), so no outgoing connection in the pod takes it.
GUARD_PORT_BASE = 61000
#: Key of the guard secret in the studio's Secret ``<kube name>-guard`` (Kubernetes);
#: the local runtime writes the value into the manifest it plays instead.
GUARD_SECRET_KEY = "guard-secret"
#: Labels of the gateway's pods: the only ones a studio's NetworkPolicy admits.
GATEWAY_POD_LABELS = {"app.kubernetes.io/name": "codestudio-gateway", "app.kubernetes.io/managed-by": "codestudio"}


def guard_ports(ports: list[int]) -> dict[int, int]:
    """Server port -> the guard port in front of it: 61000 and up, skipping the template's own ports."""
    taken = set(ports)
    out: dict[int, int] = {}
    candidate = GUARD_PORT_BASE
    for port in sorted(taken):
        while candidate in taken:
            candidate += 1
        if candidate > 65535:
            raise ValueError("too many ports for the guard's range (61000-65535)")
        out[port] = candidate
        candidate += 1
    return out


def port_name(port: int) -> str:
    """Name of the container port (the guard's) serving server port ``port``."""
    return f"p{port}"


def kube_name(project_key: str, studio_id: str, instance: str | None = None) -> str:
    """A DNS-1123 name for the studio's Deployment and Service (at most 63 characters).

    Readable (``cs-<project>-<studio>-``) but always ends in a hash of the
    exact project key, studio id and ``instance`` (the local runtime passes
    its data dir), because lowercasing and replacing ``_`` make different
    studios look alike: ``X-Y``/``z`` and ``X``/``y-z`` must never share a pod.
    """
    digest = hashlib.sha256(f"{project_key}\0{studio_id}\0{instance or ''}".encode()).hexdigest()[:10]
    readable = re.sub(r"[^a-z0-9-]", "-", f"cs-{project_key.lower()}-{studio_id}")
    readable = re.sub(r"-+", "-", readable).strip("-")
    # Room for "-<digest>" and podman's "-pod-0-studio" suffix on container names.
    readable = readable[: 63 - len(digest) - 1 - 13].rstrip("-")
    return f"{readable}-{digest}"


def browser_path(studio: StudioContext, template_id: str) -> str:
    studio_id = studio.studio_id or template_id
    if studio.mode == "webapp":
        return f"/web-apps-backends/{studio.project_key}/{studio.webapp_id or studio_id}_${{K8S_POD_NAME}}"
    return f"/code-studios/{studio.project_key}/{studio_id}"


def _label_value(value: str) -> str:
    value = re.sub(r"[^A-Za-z0-9_.-]", "-", value)[:63].strip("-_.")
    return value or "x"


def probe_path(state: BuildState, studio: StudioContext, template_id: str) -> str | None:
    """The HTTP probe path with ``${baseUrl}`` expanded, as the server inside sees it.

    For a port served with ``proxied_subpath: /`` the prefix is stripped by the
    gateway, so ``${baseUrl}`` expands to the empty string there.
    """
    probe = state.effective_probe()
    if probe is None or probe.kind != "http":
        return None
    strip = any(ep.port == probe.port and ep.proxied_subpath == "/" for _, ep in state.entrypoints)
    base = "" if strip else f"{browser_path(studio, template_id)}/{probe.port}"
    path = (probe.url or "${baseUrl}/").replace("${baseUrl}", base)
    return path if path.startswith("/") else "/" + path


def guard_secret_name(studio: StudioContext, template_id: str) -> str:
    """The Secret holding the guard secret: ``<kube name>-guard`` (a webapp's never shares a studio's)."""
    studio_id = studio.studio_id or template_id
    if studio.mode == "webapp":
        studio_id = f"webapp:{studio.webapp_id or studio_id}"
    return f"{kube_name(studio.project_key, studio_id, studio.instance)}-guard"


def container_env(state: BuildState, studio: StudioContext, template_id: str) -> list[dict]:
    base = browser_path(studio, template_id)
    env = [
        {"name": "DKU_CODE_STUDIO_BROWSER_PATH", "value": base},
        *({"name": f"DKU_CODE_STUDIO_BROWSER_PATH_{port}", "value": f"{base}/{port}"} for port in state.all_ports),
        {"name": "CODESTUDIO_MODE", "value": studio.mode},
        {"name": "CODESTUDIO_PROJECT_KEY", "value": studio.project_key},
        {"name": "CODESTUDIO_STUDIO_ID", "value": studio.studio_id or template_id},
        {"name": "CODESTUDIO_OWNER", "value": studio.owner},
        *({"name": k, "value": v} for k, v in sorted(studio.extra_env.items())),
        {"name": "CODESTUDIO_GUARD_PORTS",
         "value": ",".join(f"{p}:{g}" for p, g in guard_ports(state.all_ports).items())},
        {"name": "CODESTUDIO_GUARD_SECRET", "valueFrom": {"secretKeyRef": {
            "name": guard_secret_name(studio, template_id), "key": GUARD_SECRET_KEY}}},
        {"name": "K8S_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "K8S_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "K8S_POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "K8S_POD_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
    ]
    return env


def pod_resources(state: BuildState) -> dict:
    """The container's ``resources``: each quantity the blocks set is both its request and its limit;
    GPUs are a limit of their extended resource (Kubernetes sets the request equal)."""
    values = {k: v for k, v in (("cpu", state.pod.cpu), ("memory", state.pod.memory)) if v is not None}
    out = {"requests": dict(values), "limits": dict(values)} if values else {}
    if state.pod.gpu is not None and state.pod.gpu_resource:
        out.setdefault("limits", {})[state.pod.gpu_resource] = str(state.pod.gpu)
    return out


def pod_scheduling(state: BuildState) -> dict:
    """Pod spec fields from the blocks: node selector, tolerations, service account (and its token)."""
    pod = state.pod
    out: dict = {}
    if pod.node_selector:
        out["nodeSelector"] = dict(pod.node_selector)
    if pod.tolerations:
        out["tolerations"] = [t.manifest() for t in pod.tolerations]
    if pod.service_account:
        out["serviceAccountName"] = pod.service_account
    else:
        # No API token in a studio unless the template asks for an account.
        out["automountServiceAccountToken"] = False
    return out


def kubernetes_manifest(state: BuildState, studio: StudioContext, template_id: str) -> list[dict]:
    """The Deployment (1 replica) and Service a studio runs as, on Kubernetes and under podman."""
    studio_id = studio.studio_id or template_id
    name = kube_name(studio.project_key, studio_id, studio.instance)
    labels = {
        "app.kubernetes.io/name": "codestudio-studio",
        "app.kubernetes.io/managed-by": "codestudio",
        "codestudio.io/project": _label_value(studio.project_key),
        "codestudio.io/studio": _label_value(studio_id),
        "codestudio.io/template": _label_value(template_id),
    }
    selector = {k: labels[k] for k in ("codestudio.io/project", "codestudio.io/studio")}
    # Only the guard's ports are declared (and published locally); servers stay inside the pod.
    guarded = guard_ports(state.all_ports)
    ports = [{"name": port_name(p), "containerPort": guarded[p], "protocol": "TCP"} for p in state.all_ports]
    container: dict = {
        "name": "studio",
        "image": studio.image or f"localhost/codestudio/{template_id}:latest",
        "imagePullPolicy": "IfNotPresent",
        "env": container_env(state, studio, template_id),
        "ports": ports,
        # DESIGN.md: uid 1000, non-root, no privilege escalation, every capability dropped, RuntimeDefault seccomp.
        "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": True, "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    resources = pod_resources(state)
    if resources:
        container["resources"] = resources
    probe = state.effective_probe()
    if probe is not None:
        # A webapp's HTTP probe is the engine's (per replica, at its own prefix); rollouts
        # need a probe that passes at the pod level, so its Kubernetes probe is TCP.
        action = (
            {"httpGet": {"path": probe_path(state, studio, template_id), "port": probe.port}}
            if probe.kind == "http" and studio.mode != "webapp"
            else {"tcpSocket": {"port": probe.port}}
        )
        container["readinessProbe"] = {**action, "periodSeconds": 2, "timeoutSeconds": 2, "failureThreshold": 3}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": studio.namespace,
            "labels": labels,
            "annotations": {"codestudio.io/owner": studio.owner, "codestudio.io/project-key": studio.project_key},
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [container],
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {"fsGroup": 1000, "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                    **pod_scheduling(state),
                },
            },
        },
    }
    docs = [deployment]
    if ports:
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": studio.namespace, "labels": labels},
                "spec": {
                    "selector": selector,
                    "ports": [{"name": port_name(p), "port": p, "targetPort": port_name(p), "protocol": "TCP"}
                              for p in state.all_ports],
                },
            }
        )
    # Only the gateway's pods may connect, and only to the guard ports; no ingress rule
    # at all (no ports) denies everything. Kubelet probes come from the node.
    docs.append(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": studio.namespace, "labels": labels},
            "spec": {
                "podSelector": {"matchLabels": selector},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [{"podSelector": {"matchLabels": dict(GATEWAY_POD_LABELS)}}],
                        "ports": [{"protocol": "TCP", "port": p["containerPort"]} for p in ports],
                    }
                ] if ports else [],
            },
        }
    )
    return docs


def kubernetes_yaml(state: BuildState, studio: StudioContext, template_id: str) -> str:
    import yaml

    return yaml.safe_dump_all(kubernetes_manifest(state, studio, template_id), sort_keys=True, default_flow_style=False)


# --------------------------------------------------------------------------
# nginx.conf


def studio_routes(state: BuildState, studio: StudioContext, template_id: str):
    """The gateway routes of one studio, from its build state."""
    from codestudio.gateway.config import PortRoute, StudioRoutes

    by_port = {ep.port: ep for _, ep in state.entrypoints if ep.port}
    listed = set(state.exposed_ports)
    routes = []
    # Every port is routed (owner-only, like the rest); only exposed ones are tabs.
    for port in state.all_ports:
        ep = by_port.get(port)
        routes.append(
            PortRoute(
                port=port,
                upstream_port=studio.host_ports.get(port, port),
                proxied_subpath=ep.proxied_subpath if ep else "/",
                label=ep.label if ep else f"Port {port}",
                listed=port in listed,
            )
        )
    return StudioRoutes(
        project_key=studio.project_key,
        studio_id=studio.studio_id or template_id,
        owner=studio.owner,
        session_secret=studio.session_secret,
        ports=tuple(routes),
        actions=tuple((a.name, a.label) for _, a in state.actions),
    )


def nginx_conf(state: BuildState, studio: StudioContext, template_id: str) -> str:
    from codestudio.gateway.config import render_studio_locations

    return render_studio_locations(studio_routes(state, studio, template_id))


# --------------------------------------------------------------------------
# Entry points


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


OUTPUTS = frozenset({"Dockerfile", "context", "runner.json", "kubernetes.yaml", "nginx.conf"})
#: Written by every render: what it wrote, so the next render knows the folder is exactly that.
MARKER = ".codestudio-render.json"


def _listing(folder: Path) -> tuple[dict[str, str], list[str], list[str]]:
    """(files -> sha256, folders, other entries) below ``folder``, the marker left out; no link followed."""
    files: dict[str, str] = {}
    dirs: list[str] = []
    others: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            rel = p.relative_to(folder).as_posix()
            if rel == MARKER:
                continue
            if p.is_symlink():
                others.append(rel)
            elif name in dirnames:
                dirs.append(rel)
            elif p.is_file():
                files[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                others.append(rel)
    return files, sorted(dirs), sorted(others)


def _check_replaceable(out_dir: Path) -> None:
    """Refuse ``out_dir`` unless it is missing, empty, or exactly what a previous render wrote."""
    from codestudio.errors import UsageError

    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise UsageError(f"{out_dir} exists and is not a folder")
    if not any(out_dir.iterdir()):
        return
    advice = "render replaces the whole folder: choose an empty or new one"
    marker = out_dir / MARKER
    try:
        if marker.is_symlink() or not marker.is_file():
            raise ValueError
        recorded = json.loads(marker.read_text(encoding="utf-8"))
        recorded_files = dict(recorded["files"])
        recorded_dirs = set(recorded["dirs"])
    except (OSError, ValueError, KeyError, TypeError):
        names = sorted(p.name for p in out_dir.iterdir())
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise UsageError(
            f"{out_dir} is not empty and not a previous render (it holds {shown} and no valid {MARKER}); {advice}"
        ) from None
    files, dirs, others = _listing(out_dir)
    problems = [f"{rel} (not a regular file or folder)" for rel in others]
    problems += [f"{rel}/ (not written by render)" for rel in dirs if rel not in recorded_dirs]
    for rel, digest in sorted(files.items()):
        if rel not in recorded_files:
            problems.append(f"{rel} (not written by render)")
        elif recorded_files[rel] != digest:
            problems.append(f"{rel} (changed since it was rendered)")
    if problems:
        shown = ", ".join(problems[:5]) + (f", and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise UsageError(f"{out_dir} is a previous render with other content: {shown}; it would be lost, so {advice}")


def write_rendered(rendered: Rendered, out_dir: Path | str) -> None:
    """Write the five outputs (and the marker) into ``out_dir``, all or nothing.

    ``out_dir`` must be missing, empty, or exactly a previous render: its
    marker (:data:`MARKER`) lists every file and folder that render wrote,
    with each file's sha256, and the folder must hold nothing else and no
    changed file. It is replaced as a whole, so any other folder is refused
    (exit 2) and left untouched. Files are written into a temporary sibling
    folder which then replaces ``out_dir``; on any error ``out_dir`` is left
    as it was.
    """
    out_dir = Path(out_dir).resolve()
    _check_replaceable(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        (tmp / "Dockerfile").write_text(rendered.dockerfile, encoding="utf-8")
        (tmp / "runner.json").write_text(rendered.runner_json, encoding="utf-8")
        (tmp / "kubernetes.yaml").write_text(rendered.kubernetes_yaml, encoding="utf-8")
        (tmp / "nginx.conf").write_text(rendered.nginx_conf, encoding="utf-8")
        context = tmp / "context"
        context.mkdir()
        for rel, (data, mode) in rendered.context_files.items():
            target = context / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            os.chmod(target, mode)
        files, dirs, _ = _listing(tmp)
        (tmp / MARKER).write_text(
            json.dumps({"codestudio_render": 1, "files": files, "dirs": dirs}, indent=1, sort_keys=True) + "\n",
            encoding="utf-8",
        )
        for dirpath, dirnames, filenames in os.walk(tmp, topdown=False):
            for name in filenames + dirnames:
                os.utime(Path(dirpath, name), (FIXED_MTIME, FIXED_MTIME), follow_symlinks=False)
            os.chmod(dirpath, 0o755)
        os.utime(tmp, (FIXED_MTIME, FIXED_MTIME))
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
            os.rename(out_dir, old / "x")
            os.rename(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
