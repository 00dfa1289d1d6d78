"""Rendering: the five outputs, determinism, and values that mean exactly what the template said."""

from __future__ import annotations

import json
import re
import os
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codestudio.render import RUNNER_LABEL, StudioContext, render_template, write_rendered

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def parse_dockerfile(text: str, tmp_path: Path) -> DockerfileParser:
    (tmp_path / "df").mkdir(exist_ok=True)
    (tmp_path / "df" / "Dockerfile").write_text(text)
    parser = DockerfileParser(path=str(tmp_path / "df"), cache_content=True)
    parser.content = text
    return parser


def label(parser: DockerfileParser, name: str) -> str:
    """Decode a LABEL value as buildah does (checked against buildah in tests/e2e/test_escaping.py)."""
    import re

    for item in instructions(parser):
        if item["instruction"] == "LABEL":
            m = re.search(re.escape(name) + r'="((?:[^"\\]|\\.)*)"', item["value"])
            if m:
                return re.sub(r'\\([\\"$])', r"\1", m.group(1))
    raise KeyError(name)


def instructions(parser: DockerfileParser) -> list[dict]:
    return [i for i in parser.structure if i["instruction"] != "COMMENT"]


def snapshot(folder: Path) -> dict[str, tuple[bytes, int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in filenames + dirnames:
            p = Path(dirpath, name)
            st_ = p.lstat()
            out[str(p.relative_to(folder))] = (p.read_bytes() if p.is_file() else b"", st_.st_mode, st_.st_mtime_ns)
    return out


def test_render_writes_the_five_outputs(tmp_path):
    out = tmp_path / "out"
    write_rendered(render_template(EXAMPLES / "advanced.yaml"), out)
    assert sorted(p.name for p in out.iterdir()) == [".codestudio-render.json", "Dockerfile", "context", "kubernetes.yaml", "nginx.conf", "runner.json"]
    # Resources next to the Dockerfile under their own names; the engine's files under .codestudio/.
    assert sorted(p.name for p in (out / "context").iterdir()) == [".codestudio", "hello_server.py"]
    assert (out / "context" / ".codestudio" / "runner" / "runner.py").is_file()
    runner = json.loads((out / "runner.json").read_text())
    assert [e["label"] for e in runner["entrypoints"]] == ["Hello API", "Static files"]
    assert runner["probe"] == {"kind": "http", "port": 8081, "url": "${baseUrl}/health"}
    assert runner["ports"] == [8081, 8082, 9090]


def test_render_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_rendered(render_template(EXAMPLES / "advanced.yaml"), a)
    write_rendered(render_template(EXAMPLES / "advanced.yaml"), b)
    assert snapshot(a) == snapshot(b)


def test_resource_name_collision_exits_2_and_writes_nothing(tmp_path, write_template):
    import subprocess
    import sys

    (tmp_path / "files").mkdir()
    (tmp_path / "files" / ".codestudio").write_text("mine")
    path = write_template(
        """
        id: clash
        blocks:
          - {type: dockerfile, statements: COPY .codestudio /opt/x, resources: [files/.codestudio]}
        """
    )
    out = tmp_path / "out"
    for args in (["validate", str(path)], ["render", str(path), "-o", str(out)]):
        result = subprocess.run([sys.executable, "-m", "codestudio", *args], capture_output=True, text=True,
                                env={**os.environ, "CODESTUDIO_HOME": str(tmp_path / "home"), "COLUMNS": "300"})
        assert result.returncode == 2, result.stderr
        assert str(path) in result.stderr
        assert "blocks[0] (type: dockerfile): field 'resources'" in result.stderr
        assert "'.codestudio' (files/.codestudio)" in result.stderr
    assert not out.exists()


def test_dockerfile_groups_follow_blocks_and_labels_come_last(tmp_path):
    rendered = render_template(EXAMPLES / "advanced.yaml")
    parser = parse_dockerfile(rendered.dockerfile, tmp_path)
    kinds = [i["instruction"] for i in instructions(parser)]
    # The base image's argument, then the one stage (no Python env: no build tools stage).
    assert kinds[:2] == ["ARG", "FROM"] and kinds.count("FROM") == 1
    assert kinds[-1] == "LABEL" and kinds.count("LABEL") == 1
    assert label(parser, "io.codestudio.template") == "advanced-example"
    assert json.loads(label(parser, RUNNER_LABEL)) == json.loads(rendered.runner_json)
    # Step numbers map back to the template's blocks in order.
    block_indexes = [s.block_index for s in rendered.steps if s.block_index is not None]
    assert block_indexes == sorted(block_indexes) and block_indexes[0] == 0
    assert len(rendered.steps) == len(instructions(parser)) - 1  # the ARG before FROM is no step
    # The second dockerfile block is not run_as_root: its RUN runs as the studio user.
    user_lines = [i["value"] for i in instructions(parser) if i["instruction"] == "USER"]
    assert user_lines[:2] == ["root", "codestudio"]


def test_kubernetes_yaml_validates_against_the_official_schema(tmp_path):
    import kubernetes_validate

    rendered = render_template(EXAMPLES / "advanced.yaml", StudioContext(project_key="DKU_TEST", studio_id="my-studio"))
    docs = list(yaml.safe_load_all(rendered.kubernetes_yaml))
    assert [d["kind"] for d in docs] == ["Deployment", "Service", "NetworkPolicy"]
    for doc in docs:
        kubernetes_validate.validate(doc, "1.31", strict=True)
    container = docs[0]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["DKU_CODE_STUDIO_BROWSER_PATH"] == "/code-studios/DKU_TEST/my-studio"
    assert env["DKU_CODE_STUDIO_BROWSER_PATH_8081"] == "/code-studios/DKU_TEST/my-studio/8081"
    assert env["K8S_POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # $request_uri port: the server sees the full prefix, so the probe path carries it.
    assert container["readinessProbe"]["httpGet"] == {"path": "/code-studios/DKU_TEST/my-studio/8081/health", "port": 8081}
    assert docs[0]["spec"]["replicas"] == 1


def test_only_the_guard_ports_are_declared_and_only_the_gateway_may_connect():
    import kubernetes_validate

    from codestudio.render import GATEWAY_POD_LABELS, guard_ports

    rendered = render_template(EXAMPLES / "advanced.yaml", StudioContext(project_key="P", studio_id="s"))
    deployment, service, policy = yaml.safe_load_all(rendered.kubernetes_yaml)
    all_ports = rendered.state.all_ports
    guarded = guard_ports(all_ports)
    assert set(guarded) == set(all_ports) and not set(guarded.values()) & set(all_ports)
    assert min(guarded.values()) >= 61000
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert sorted(p["containerPort"] for p in container["ports"]) == sorted(guarded.values())
    env = {e["name"]: e for e in container["env"]}
    assert env["CODESTUDIO_GUARD_PORTS"]["value"] == ",".join(f"{p}:{g}" for p, g in sorted(guarded.items()))
    # The secret is never in the rendered manifest: a per-start Secret holds it.
    ref = env["CODESTUDIO_GUARD_SECRET"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == deployment["metadata"]["name"] + "-guard" and ref["key"] == "guard-secret"
    # The Service keeps the entrypoint port numbers but targets the guard.
    names = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert {p["port"]: names[p["targetPort"]] for p in service["spec"]["ports"]} == guarded
    assert policy["spec"]["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": GATEWAY_POD_LABELS}}]
    assert sorted(p["port"] for p in rule["ports"]) == sorted(guarded.values())
    kubernetes_validate.validate(policy, "1.31", strict=True)


def test_guard_ports_skip_the_templates_own_ports():
    from codestudio.render import guard_ports

    assert guard_ports([8888, 61000, 61001]) == {8888: 61002, 61000: 61003, 61001: 61004}
    assert guard_ports([]) == {}


def test_webapp_mode_browser_path_keeps_pod_name_for_the_runner():
    rendered = render_template(EXAMPLES / "advanced.yaml", StudioContext(project_key="P", studio_id="s", mode="webapp", webapp_id="w1"))
    docs = list(yaml.safe_load_all(rendered.kubernetes_yaml))
    env = {e["name"]: e.get("value") for e in docs[0]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DKU_CODE_STUDIO_BROWSER_PATH"] == "/web-apps-backends/P/w1_${K8S_POD_NAME}"
    assert env["CODESTUDIO_MODE"] == "webapp"


TRICKY = [
    'say "hi" and \'bye\'',
    "cost: $HOME ${PATH} $(id) `uname`",
    "back\\slash\\\\ and trailing \\",
    "# not a comment",
    "unicode: café ☕ 𝄞",
    "multi\nline\n  shell && echo done",
    "RUN echo injected",
    "\nFROM evil\nRUN rm -rf /",
]


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_values_reach_outputs_intact(tmp_path, write_template, blocks, text):
    from codestudio.render import render_state
    from codestudio.plan import apply_blocks
    from codestudio.template import load_template

    first_line = text.splitlines()[0] if text.strip() else "L"
    tab_label = 'Label "quoted" {braces} ' + first_line
    doc = {
        "id": "tricky",
        "blocks": [
            {"type": "entrypoint", "label": tab_label, "command": ["/bin/sh", "-c", text], "port": 8000, "env": {"GREETING": text}},
            {"type": "action", "name": "act", "command": text},
        ],
    }
    path = write_template(json.dumps(doc, ensure_ascii=False))
    template = load_template(path, blocks)
    rendered = render_state(template, apply_blocks(template, blocks))
    runner = json.loads(rendered.runner_json)
    assert runner["entrypoints"][0]["command"] == ["/bin/sh", "-c", text]
    assert runner["entrypoints"][0]["env"] == {"GREETING": text}
    assert runner["actions"][0]["command"] == text
    parser = parse_dockerfile(rendered.dockerfile, tmp_path)
    # Exactly the engine's own instructions: no value added one.
    assert [i["instruction"] for i in instructions(parser)].count("FROM") == 1
    assert "RUN" not in [i["instruction"] for i in instructions(parser)]
    assert json.loads(label(parser, RUNNER_LABEL)) == runner


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r"), max_size=80))
def test_run_scripts_round_trip_through_exec_form(tmp_path, script):
    """Any script a block hands to Run reaches /bin/sh exactly as written."""
    from codestudio.blockapi import BuildState, Run, StepGroup
    from codestudio.render import build_dockerfile
    from codestudio.resources import ResourceResolver

    class T:
        id = "t"
        path = tmp_path / "t.yaml"
        blocks = []

    state = BuildState(template_id="t", base_image="scratch", resources=ResourceResolver(tmp_path))
    if any(ord(c) < 32 and c not in "\t\n" or ord(c) == 127 for c in script):
        return  # Text fields refuse these before they get here
    state.groups.append(StepGroup(block=None, title="t", steps=[Run(script=script)]))
    text, _, _ = build_dockerfile(T, state, "{}")
    parser = parse_dockerfile(text, tmp_path)
    runs = [i for i in instructions(parser) if i["instruction"] == "RUN"]
    assert len(runs) == 1
    assert json.loads(runs[0]["value"]) == ["/bin/sh", "-e", "-c", script]


def test_dockerfile_statements_are_emitted_as_written(tmp_path, write_template, blocks):
    statements = 'RUN echo "a $HOME \\\\ # b" \\\n    && printf \'%s\\n\' café\nENV X="y z"\n'
    path = write_template("id: raw\nblocks:\n  - type: dockerfile\n    statements: " + json.dumps(statements) + "\n")
    rendered = render_template(path, blocks=blocks)
    assert statements.strip("\n") in rendered.dockerfile


@pytest.mark.e2e
def test_nginx_conf_passes_nginx_t(tmp_path):
    """The rendered locations, inside the gateway's full config, pass the real `nginx -t`."""
    from codestudio.gateway.config import GatewaySettings
    from codestudio.gateway.process import Gateway
    from codestudio.render import studio_routes

    studio = StudioContext(project_key="P1", studio_id="s1", session_secret="0" * 64, host_ports={8081: 41001, 8082: 41002, 9090: 41003})
    rendered = render_template(EXAMPLES / "advanced.yaml", studio)
    gateway = Gateway(tmp_path, settings=GatewaySettings(port=18999))
    conf = gateway.render([studio_routes(rendered.state, studio, "advanced-example")])
    try:
        gateway.check(conf)  # raises with nginx's message if rejected
    finally:
        gateway.stop()  # removes the workers' folder it prepared when run as root
    assert "/code-studios/P1/s1/8081/" in rendered.nginx_conf
    assert "127.0.0.1:41001" in conf


@settings(max_examples=200, deadline=None)
@given(
    a=st.tuples(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}", fullmatch=True), st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True)),
    b=st.tuples(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}", fullmatch=True), st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True)),
)
def test_kube_names_of_different_studios_differ(a, b):
    """Pods are named after studios: two studios must never share a name (review finding)."""
    from codestudio.render import kube_name

    name_a, name_b = kube_name(*a), kube_name(*b)
    assert (name_a == name_b) == (a == b)
    assert len(name_a) <= 63 - len("-pod-0-studio") and re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", name_a)


def test_kube_names_look_alike_cases_and_instances():
    from codestudio.render import kube_name

    assert kube_name("X-Y", "z") != kube_name("X", "y-z")
    assert kube_name("P_1", "s") != kube_name("P-1", "s") != kube_name("p-1", "s")
    assert kube_name("P", "s", "/data/one") != kube_name("P", "s", "/data/two")
    assert kube_name("P" * 63, "s" * 63).startswith("cs-ppp")


def test_unexposed_entrypoint_port_is_routed_but_not_listed(tmp_path, write_template, blocks):
    from codestudio.gateway.config import landing_pages
    from codestudio.plan import plan_template
    from codestudio.render import nginx_conf, studio_routes

    path = write_template(
        """
        id: hidden
        blocks:
          - {type: entrypoint, label: Shown, command: [srv], port: 8080}
          - {type: entrypoint, label: Hidden API, command: [api], port: 8081, expose_html: false}
        """
    )
    template, state = plan_template(path, blocks)
    ctx = StudioContext(studio_id="s1", session_secret="a" * 64)
    routes = studio_routes(state, ctx, template.id)
    assert [(r.port, r.listed) for r in routes.ports] == [(8080, True), (8081, False)]
    assert "/code-studios/PROJECT/s1/8081/" in nginx_conf(state, ctx, template.id)
    (page,) = landing_pages([routes]).values()
    assert "8080/" in page and "8081" not in page and "Hidden API" not in page


# --------------------------------------------------------------------------
# render -o DIR replaces only exactly a previous render (issue 9 item 12)


def _render(out: Path) -> None:
    write_rendered(render_template(EXAMPLES / "advanced.yaml"), out)


def test_render_refuses_a_folder_with_the_output_names_and_the_users_own_files(tmp_path):
    from codestudio.errors import UsageError

    out = tmp_path / "mine"
    (out / "context" / "src").mkdir(parents=True)
    (out / "nginx.conf").write_text("my nginx config\n")
    (out / "context" / "src" / "app.py").write_text("print('my app')\n")
    before = snapshot(out)
    with pytest.raises(UsageError, match="not a previous render"):
        _render(out)
    assert snapshot(out) == before


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda out: (out / "context" / "src").mkdir() or (out / "context" / "src" / "app.py").write_text("x"),
         r"context/src/ \(not written by render\).*context/src/app.py \(not written by render\)"),
        (lambda out: (out / "notes.txt").write_text("x"), r"notes.txt \(not written by render\)"),
        (lambda out: (out / "Dockerfile").write_text("FROM mine\n"), r"Dockerfile \(changed since it was rendered\)"),
        (lambda out: (out / "context" / "link").symlink_to("/etc"), r"context/link \(not a regular file or folder\)"),
        (lambda out: (out / ".codestudio-render.json").write_text("{"), "no valid .codestudio-render.json"),
        (lambda out: (out / ".codestudio-render.json").unlink(), "no valid .codestudio-render.json"),
    ],
)
def test_render_refuses_a_previous_render_holding_anything_else(tmp_path, change, problem):
    from codestudio.errors import UsageError

    out = tmp_path / "out"
    _render(out)
    change(out)
    before = snapshot(out)
    with pytest.raises(UsageError, match=problem):
        _render(out)
    assert snapshot(out) == before


def test_render_replaces_an_unchanged_previous_render(tmp_path):
    out = tmp_path / "out"
    _render(out)
    first = snapshot(out)
    (out / "runner.json").unlink()  # a missing file loses nothing
    _render(out)
    assert snapshot(out) == first
    marker = json.loads((out / ".codestudio-render.json").read_text())
    assert "Dockerfile" in marker["files"] and "context" in marker["dirs"]
