"""Render-level tests of each advanced block (codestudio-advanced)."""

from __future__ import annotations

import json

import pytest

from codestudio.errors import TemplateError
from codestudio.render import render_state


@pytest.fixture
def plan(codestudio_plan):
    """(template, state) of a template made of the given blocks (codestudio.testing)."""
    return codestudio_plan


def test_dockerfile_users_and_resources(plan, tmp_path):
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "setup.sh").write_text("#!/bin/sh\necho setup\n")
    (tmp_path / "files" / "setup.sh").chmod(0o755)
    template, state = plan(
        """
        - type: dockerfile
          run_as_root: true
          statements: RUN /tmp/setup.sh
          resources: [files/setup.sh]
        - type: dockerfile
          statements: RUN whoami
        """
    )
    rendered = render_state(template, state)
    assert rendered.context_files["setup.sh"] == (b"#!/bin/sh\necho setup\n", 0o755)
    body = rendered.dockerfile.split("# [0]")[1]
    assert body.index("USER root") < body.index("RUN /tmp/setup.sh") < body.index("USER codestudio") < body.index("RUN whoami")


def test_dockerfile_resources_sit_next_to_the_dockerfile(plan, tmp_path):
    (tmp_path / "files" / "tree").mkdir(parents=True)
    (tmp_path / "files" / "prefixed.py").write_text("print('hi')\n")
    (tmp_path / "files" / "tree" / "inner.txt").write_text("inner\n")
    template, state = plan(
        """
        - type: dockerfile
          statements: |
            COPY prefixed.py /opt/app/prefixed.py
            COPY tree /opt/app/tree
          resources: [files/prefixed.py, files/tree]
        """
    )
    files = render_state(template, state).context_files
    assert files["prefixed.py"][0] == b"print('hi')\n"
    assert files["tree/inner.txt"][0] == b"inner\n"
    # Everything else is the engine's, under one reserved folder.
    assert {k for k in files if not k.startswith(".codestudio/")} == {"prefixed.py", "tree/inner.txt"}
    assert ".codestudio/runner/runner.json" in files


def test_dockerfile_resource_name_clash_between_blocks(plan, tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "x.txt").write_text(sub)
    with pytest.raises(TemplateError) as err:
        plan(
            """
            - {type: dockerfile, statements: RUN true, resources: [a/x.txt]}
            - {type: dockerfile, statements: RUN true, resources: [b/x.txt]}
            """
        )
    message = str(err.value)
    assert "blocks[1]" in message and "field 'resources'" in message
    assert "'x.txt' (b/x.txt) has the same name as 'x.txt' (a/x.txt) of blocks[0]" in message


def test_dockerfile_same_resource_in_two_blocks_is_fine(plan, tmp_path):
    (tmp_path / "x.txt").write_text("x")
    plan(
        """
        - {type: dockerfile, statements: RUN true, resources: [x.txt]}
        - {type: dockerfile, statements: RUN true, resources: [x.txt]}
        """
    )


def test_dockerfile_resource_name_clash_in_one_block(plan, tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "x.txt").write_text(sub)
    with pytest.raises(TemplateError, match=r"blocks\[0\].*resources\.1.*'b/x.txt' and 'a/x.txt' are both named 'x.txt'"):
        plan("- {type: dockerfile, statements: RUN true, resources: [a/x.txt, b/x.txt]}\n")


@pytest.mark.parametrize("name", [".codestudio", "Dockerfile", ".dockerignore", "Containerfile"])
def test_dockerfile_resource_with_a_reserved_name_is_refused(plan, tmp_path, name):
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / name).write_text("x")
    with pytest.raises(TemplateError) as err:
        plan(f"- {{type: dockerfile, statements: RUN true, resources: [files/{name}]}}\n")
    message = str(err.value)
    assert f"blocks[0] (type: dockerfile): field 'resources': resource {name!r} (files/{name}) takes the name {name!r}, reserved" in message


@pytest.mark.parametrize("statement", ["CMD [\"x\"]", "ENTRYPOINT x", "ONBUILD RUN x", "RUN <<EOF\necho\nEOF"])
def test_dockerfile_refuses_structure_breaking_statements(plan, statement):
    with pytest.raises(TemplateError, match="statements"):
        plan(f"- type: dockerfile\n  statements: {json.dumps(statement)}\n")


def test_entrypoint_string_command_runs_through_sh_and_defaults(plan):
    _, state = plan(
        """
        - type: entrypoint
          label: worker
          command: "python3 -m worker --name 'a b'"
        - type: entrypoint
          label: web
          command: [srv]
          port: 3000
        """
    )
    worker, web = (ep for _, ep in state.entrypoints)
    assert worker.command == ["/bin/sh", "-c", "python3 -m worker --name 'a b'"]
    assert worker.port is None and worker.expose_html is False
    assert web.expose_html is True and web.proxied_subpath == "/"


def test_entrypoint_expose_html_needs_a_port(plan):
    with pytest.raises(TemplateError, match="expose_html needs a port"):
        plan("- {type: entrypoint, label: x, command: [x], expose_html: true}\n")


def test_action_label_defaults_to_name_and_name_is_checked(plan):
    _, state = plan("- {type: action, name: tidy-up, command: 'rm -rf /tmp/x', wait: false}\n")
    action = state.actions[0][1]
    assert (action.label, action.wait) == ("tidy-up", False)
    with pytest.raises(TemplateError, match="field 'name'"):
        plan("- {type: action, name: 'Tidy Up', command: x}\n")


def test_starter_files_inline_and_from_a_resource_folder(plan, tmp_path):
    (tmp_path / "starter" / "pkg").mkdir(parents=True)
    (tmp_path / "starter" / "pkg" / "run.sh").write_text("echo hi\n")
    (tmp_path / "starter" / "pkg" / "run.sh").chmod(0o755)
    _, state = plan(
        """
        - type: starter-files
          zone: user-versioned
          files: {notes/todo.md: "- [ ] start\\n"}
          resources: [starter]
        """
    )
    files = {f.path: f for _, f in state.starter_files}
    assert files["notes/todo.md"].content == b"- [ ] start\n"
    assert files["starter/pkg/run.sh"].mode == 0o755
    assert {f.zone for f in files.values()} == {"user-versioned"}


@pytest.mark.parametrize("path", ["../escape.txt", "/abs.txt", "a/../../b"])
def test_starter_files_paths_stay_in_the_zone(plan, path):
    with pytest.raises(TemplateError, match="files"):
        plan(f"- type: starter-files\n  files: {{{json.dumps(path)}: x}}\n")


def test_file_sync_defaults_and_duplicate_targets(plan):
    _, state = plan(
        """
        - type: file-sync
          mappings:
            - {zone: recipes}
            - {zone: project-lib-versioned, subfolder: python, one_way: true}
          exclusions: ["*.pyc"]
        """
    )
    assert [m.target for m in state.sync_mappings] == [
        "/home/codestudio/workspace/recipes",
        "/home/codestudio/workspace/project-lib-versioned/python",
    ]
    assert state.sync_mappings[1].one_way and state.sync_exclusions == ["*.pyc"]
    with pytest.raises(TemplateError, match="two mappings target"):
        plan("- type: file-sync\n  mappings: [{zone: recipes}, {zone: user-versioned, target: /home/codestudio/workspace/recipes}]\n")


def test_file_sync_rejects_unknown_zone(plan):
    with pytest.raises(TemplateError, match="field 'mappings.0.zone'"):
        plan("- type: file-sync\n  mappings: [{zone: scratch}]\n")


def test_kubernetes_probe_and_extra_ports(plan):
    template, state = plan(
        """
        - {type: entrypoint, label: api, command: [api], port: 8081, proxied_subpath: /}
        - {type: kubernetes, readiness_url: "${baseUrl}/ready", extra_ports: [9090, 9091]}
        """
    )
    assert state.all_ports == [8081, 9090, 9091]
    runner = json.loads(render_state(template, state).runner_json)
    assert runner["probe"] == {"kind": "http", "port": 8081, "url": "${baseUrl}/ready"}
    # A stripped port never sees the prefix, so the probe path is the bare one.
    from codestudio.render import StudioContext, probe_path

    assert probe_path(state, StudioContext(project_key="P", studio_id="s"), "t") == "/ready"


def test_kubernetes_probe_without_any_port_is_an_error(plan):
    with pytest.raises(TemplateError, match="no port to probe"):
        plan("- {type: kubernetes, tcp_probe: true}\n")


@pytest.mark.parametrize("subfolder", [".git", "data/.git", ".GIT/hooks", "git~1", "a/.git."])
def test_file_sync_rejects_a_subfolder_in_git(plan, subfolder):
    # A mapping folder inside a zone's '.git' would let a sync write its config and hooks (issue 9 item 1).
    with pytest.raises(TemplateError, match=r"field 'mappings\.0\.subfolder'.*'\.git'"):
        plan(f"- type: file-sync\n  mappings: [{{zone: project-lib-versioned, subfolder: {json.dumps(subfolder)}}}]\n")


def test_kubernetes_cpu_and_memory_are_requests_and_limits(plan):
    import kubernetes_validate
    import yaml

    template, state = plan(
        """
        - {type: entrypoint, label: api, command: [api], port: 8081}
        - {type: kubernetes, cpu: 0.5, memory: 512Mi}
        - {type: kubernetes, cpu: 2}
        """
    )
    # A later kubernetes block's value replaces an earlier one; the one it leaves unset stays.
    assert (state.pod.cpu, state.pod.memory) == ("2", "512Mi")
    docs = list(yaml.safe_load_all(render_state(template, state).kubernetes_yaml))
    for doc in docs:
        kubernetes_validate.validate(doc, "1.31", strict=True)
    container = docs[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "2", "memory": "512Mi"}, "limits": {"cpu": "2", "memory": "512Mi"}}


def test_kubernetes_without_resources_sets_none(plan):
    import yaml

    template, state = plan("- {type: entrypoint, label: api, command: [api], port: 8081}\n")
    container = next(yaml.safe_load_all(render_state(template, state).kubernetes_yaml))["spec"]["template"]["spec"]["containers"][0]
    assert "resources" not in container


@pytest.mark.parametrize(("field", "value"), [
    ("cpu", "-1"), ("cpu", "0"), ("cpu", "500Mi"), ("cpu", "0.0001"), ("cpu", "lots"), ("cpu", "true"),
    ("memory", "64Q"), ("memory", "0"), ("memory", "-64Mi"), ("memory", "512m"), ("memory", "1k"),
    ("memory", "4 Gi"), ("memory", "1e9; rm -rf /"),
])
def test_kubernetes_bad_quantity_names_the_field(plan, field, value):
    with pytest.raises(TemplateError) as info:
        plan(f"- {{type: kubernetes, {field}: {json.dumps(value)}}}\n")
    assert f"field {field!r}" in str(info.value) and info.value.exit_code == 2


KUBE_VERSIONS = [f"1.{minor}" for minor in range(28, 38)]


def test_kubernetes_gpu_node_selector_tolerations_service_account(plan):
    import kubernetes_validate
    import yaml

    template, state = plan(
        """
        - {type: entrypoint, label: api, command: [api], port: 8081}
        - type: kubernetes
          cpu: 4
          memory: 8Gi
          gpu: 2
          node_selector: {kubernetes.io/arch: amd64, gpu-type: a100}
          tolerations:
            - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
            - {key: dedicated, value: studios, effect: NoExecute, toleration_seconds: 30}
            - {operator: Exists}
          service_account: studio-runner
        - {type: kubernetes, gpu: 1, gpu_resource: amd.com/gpu, node_selector: {zone: eu-1}}
        """
    )
    docs = list(yaml.safe_load_all(render_state(template, state).kubernetes_yaml))
    for version in KUBE_VERSIONS:
        for doc in docs:
            kubernetes_validate.validate(doc, version, strict=True)
    pod = docs[0]["spec"]["template"]["spec"]
    limits = pod["containers"][0]["resources"]["limits"]
    # The later block's GPU (count and resource) wins; selectors and tolerations add up.
    assert limits == {"cpu": "4", "memory": "8Gi", "amd.com/gpu": "1"}
    assert pod["nodeSelector"] == {"kubernetes.io/arch": "amd64", "gpu-type": "a100", "zone": "eu-1"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Equal", "value": "studios", "effect": "NoExecute", "tolerationSeconds": 30},
        {"operator": "Exists"},
    ]
    assert pod["serviceAccountName"] == "studio-runner" and "automountServiceAccountToken" not in pod


def test_kubernetes_gpu_defaults_to_nvidia_and_no_account_means_no_token(plan):
    import yaml

    template, state = plan("- {type: entrypoint, label: api, command: [api], port: 8081}\n- {type: kubernetes, gpu: 1}\n")
    pod = next(yaml.safe_load_all(render_state(template, state).kubernetes_yaml))["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"] == {"limits": {"nvidia.com/gpu": "1"}}
    assert pod["automountServiceAccountToken"] is False
    assert "nodeSelector" not in pod and "tolerations" not in pod


@pytest.mark.parametrize(("snippet", "field", "words"), [
    ("gpu: 1, gpu_resource: null", "gpu_resource", "GPU resource name"),
    ("gpu: 1, gpu_resource: ''", "gpu_resource", "extended resource name"),
    ("gpu: 1, gpu_resource: cpu", "gpu_resource", "extended resource name"),
    ("gpu: 0", "gpu", ""),
    ("gpu: '2'", "gpu", ""),
    ("tolerations: [{value: x, effect: NoSchedule}]", "tolerations", "key is required"),
    ("tolerations: [{key: a, operator: Exists, value: x}]", "tolerations", "value must be empty"),
    ("tolerations: [{key: a, effect: NoSchedule, toleration_seconds: 5}]", "tolerations", "NoExecute"),
    ("tolerations: [{key: a, operator: Like}]", "tolerations", ""),
    ("tolerations: [{key: 'a b'}]", "tolerations", "label key"),
    ("node_selector: {'bad key!': x}", "node_selector", "label key"),
    ("node_selector: {zone: 'eu 1'}", "node_selector", "label value"),
    ("node_selector: {'-zone': x}", "node_selector", "label key"),
    ("node_selector: {'Bad_Prefix/zone': x}", "node_selector", "label key"),
    ("node_selector: {zone: '" + "x" * 64 + "'}", "node_selector", "label value"),
    ("service_account: 'Default Account'", "service_account", "Kubernetes name"),
])
def test_kubernetes_bad_scheduling_input_names_the_field(plan, snippet, field, words):
    with pytest.raises(TemplateError) as info:
        plan(f"- {{type: kubernetes, {snippet}}}\n")
    text = str(info.value)
    assert f"field {field!r}" in text or f"field '{field}." in text, text
    assert words in text and info.value.exit_code == 2
