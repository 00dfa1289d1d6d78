"""Sequential application and every hook: what block n sees, where contributions land."""

from __future__ import annotations

import pytest

from codestudio import hookimpl
from codestudio.blockapi import (
    Action,
    Block,
    BlockParams,
    PodSettings,
    CodeEnv,
    Entrypoint,
    Probe,
    Run,
    StarterFile,
    SyncMapping,
)
from codestudio.errors import PluginError, TemplateError
from codestudio.plan import plan_template


class EnvParams(BlockParams):
    name: str


class FakeEnv(Block):
    """Announces a code env (like codeenv)."""

    Params = EnvParams

    @hookimpl
    def contribute_dockerfile(self, block, state):
        return [Run(script=f"make-env {block.params.name}")]

    @hookimpl
    def contribute_code_env(self, block, state):
        n = block.params.name
        return CodeEnv(name=n, label=n, path=f"/opt/envs/{n}", python=f"/opt/envs/{n}/bin/python")


class FakeIde(Block):
    """Registers every code env it hears of (like jupyterlab)."""

    seen: list

    def __init__(self):
        self.seen = []

    @hookimpl
    def contribute_dockerfile(self, block, state):
        self.seen.append(("applied", [b.type for b in state.blocks], [e.name for _, e in state.code_envs]))
        return [Run(script="install-ide")]

    @hookimpl
    def contribute_entrypoint(self, block, state):
        return Entrypoint(label="IDE", command=["ide"], port=7000)

    @hookimpl
    def adjust_probe(self, block, state, probe):
        return Probe(kind="http", port=7000, url="${baseUrl}/ready")

    @hookimpl
    def adjust_pod(self, block, state, pod):
        return pod.with_memory_needed("IDE", "256Mi")

    @hookimpl
    def adjust_lifecycle(self, block, state, policy):
        return policy.model_copy(update={"max_lifetime": "1d"})

    @hookimpl
    def register_code_env(self, block, code_env, state):
        self.seen.append(("kernel", code_env.name))
        return [Run(script=f"register {code_env.name}")]


@pytest.fixture
def temp_blocks(blocks):
    ide = FakeIde()
    blocks.register("fake-env", FakeEnv(), "test-env", "0")
    blocks.register("fake-ide", ide, "test-ide", "0")
    try:
        yield blocks, ide
    finally:
        blocks.unregister("fake-env")
        blocks.unregister("fake-ide")


def scripts(group):
    return [s.script for s in group.steps]


def test_code_env_before_ide_registers_in_ide_group(temp_blocks, write_template):
    blocks, ide = temp_blocks
    path = write_template("id: t\nblocks:\n  - {type: fake-env, name: a}\n  - {type: fake-ide}\n")
    _, state = plan_template(path, blocks)
    assert scripts(state.groups[0]) == ["make-env a"]
    assert scripts(state.groups[1]) == ["install-ide", "register a"]
    # Block n saw blocks 1..n-1 and their code env.
    assert ide.seen[0] == ("applied", ["fake-env"], ["a"])


def test_code_env_after_ide_registers_in_env_group(temp_blocks, write_template):
    blocks, ide = temp_blocks
    path = write_template("id: t\nblocks:\n  - {type: fake-ide}\n  - {type: fake-env, name: a}\n  - {type: fake-env, name: b}\n")
    _, state = plan_template(path, blocks)
    assert scripts(state.groups[0]) == ["install-ide"]  # the IDE layer does not depend on the envs
    assert scripts(state.groups[1]) == ["make-env a", "register a"]
    assert scripts(state.groups[2]) == ["make-env b", "register b"]
    assert ide.seen[0] == ("applied", [], [])
    assert ("kernel", "a") in ide.seen and ("kernel", "b") in ide.seen


def test_two_code_envs_with_one_name(temp_blocks, write_template):
    blocks, _ = temp_blocks
    path = write_template("id: t\nblocks:\n  - {type: fake-env, name: a}\n  - {type: fake-env, name: a}\n")
    with pytest.raises(TemplateError, match=r"blocks\[1\].*code env 'a' is already defined by blocks\[0\]"):
        plan_template(path, blocks)


def test_adjust_probe_last_block_wins(temp_blocks, write_template):
    blocks, _ = temp_blocks
    path = write_template(
        "id: t\nblocks:\n  - {type: fake-ide}\n  - {type: kubernetes, readiness_url: '${baseUrl}/health', probe_port: 7000}\n"
    )
    _, state = plan_template(path, blocks)
    assert state.probe == Probe(kind="http", port=7000, url="${baseUrl}/health")
    path = write_template("id: t\nblocks:\n  - {type: kubernetes, tcp_probe: true, extra_ports: [9000]}\n  - {type: fake-ide}\n", "b.yaml")
    _, state = plan_template(path, blocks)
    assert state.probe.url == "${baseUrl}/ready"


def test_adjust_pod_each_block_refines_the_last(temp_blocks, write_template):
    blocks, _ = temp_blocks
    path = write_template("id: t\nblocks:\n  - {type: kubernetes, memory: 1Gi}\n  - {type: fake-ide}\n"
                          "  - {type: kubernetes, cpu: 250m}\n")
    _, state = plan_template(path, blocks)
    assert (state.pod.cpu, state.pod.memory, state.pod.memory_needed) == ("250m", "1Gi", {"IDE": "256Mi"})


def test_adjust_lifecycle_later_blocks_replace_the_fields_they_set(temp_blocks, write_template):
    blocks, _ = temp_blocks
    path = write_template("id: t\nblocks:\n  - {type: lifecycle, idle_timeout: 30m, max_lifetime: 8h}\n"
                          "  - {type: fake-ide}\n  - {type: lifecycle, idle_timeout: 2h}\n")
    _, state = plan_template(path, blocks)
    assert (state.lifecycle.idle_timeout, state.lifecycle.max_lifetime) == ("2h", "1d")


def test_default_probe_is_tcp_on_first_exposed_port(blocks, write_template):
    path = write_template(
        """
        id: t
        blocks:
          - {type: entrypoint, label: worker, command: [w]}
          - {type: entrypoint, label: hidden, command: [h], port: 5000, expose_html: false}
          - {type: entrypoint, label: web, command: [s], port: 5001}
        """
    )
    _, state = plan_template(path, blocks)
    assert state.effective_probe() == Probe(kind="tcp", port=5001)
    assert state.exposed_ports == [5001] and state.all_ports == [5000, 5001]


class Everything(Block):
    """One temporary block implementing every remaining hook."""

    @hookimpl
    def contribute_action(self, block, state):
        return Action(name="act", label="Act", command="echo hi")

    @hookimpl
    def contribute_starter_files(self, block, state):
        return [StarterFile(zone="recipes", path="a/b.txt", content=b"x")]

    @hookimpl
    def contribute_sync(self, block, state):
        return [SyncMapping(zone="recipes", target="/srv/recipes")], ["*.tmp"]

    @hookimpl
    def contribute_env(self, block, state):
        return {"GREETING": "hi ${K8S_POD_NAME}"}

    @hookimpl
    def contribute_ports(self, block, state):
        return [9100]

    @hookimpl
    def validate_block(self, block, state):
        if not state.code_envs:
            return [("code_env", "needs a code env earlier in the template")]
        return None


def test_every_other_hook_lands_in_the_state(blocks, write_template):
    blocks.register("everything", Everything(), "test", "0")
    try:
        path = write_template("id: t\nblocks:\n  - {type: everything}\n")
        with pytest.raises(TemplateError, match=r"blocks\[0\] \(type: everything\): field 'code_env': needs a code env"):
            plan_template(path, blocks)
        blocks.register("fake-env", FakeEnv(), "test-env", "0")
        path = write_template("id: t\nblocks:\n  - {type: fake-env, name: e}\n  - {type: everything}\n", "b.yaml")
        _, state = plan_template(path, blocks)
    finally:
        blocks.unregister("everything")
        blocks.by_type.get("fake-env") and blocks.unregister("fake-env")
    assert [a.name for _, a in state.actions] == ["act"]
    assert [(f.zone, f.path) for _, f in state.starter_files] == [("recipes", "a/b.txt")]
    assert state.sync_configured and state.sync_mappings[0].target == "/srv/recipes"
    assert state.sync_exclusions == ["*.tmp"]
    assert state.env == {"GREETING": "hi ${K8S_POD_NAME}"}
    assert state.extra_ports == [9100]


def test_hook_returning_the_wrong_type_names_the_plugin(blocks, write_template):
    class Wrong(Block):
        @hookimpl
        def contribute_dockerfile(self, block, state):
            return ["RUN rm -rf /"]

    blocks.register("wrong", Wrong(), "acme-wrong", "0")
    try:
        path = write_template("id: t\nblocks:\n  - {type: wrong}\n")
        with pytest.raises(PluginError, match="acme-wrong"):
            plan_template(path, blocks)
    finally:
        blocks.unregister("wrong")


def test_hooks_only_reach_the_owning_plugin(temp_blocks, write_template):
    blocks, ide = temp_blocks
    path = write_template("id: t\nblocks:\n  - {type: dockerfile, statements: RUN true}\n")
    plan_template(path, blocks)
    assert ide.seen == []  # the IDE is installed but not in the template: it hears nothing


def test_starter_files_later_block_replaces_same_path(blocks, write_template):
    path = write_template(
        """
        id: t
        blocks:
          - {type: starter-files, zone: recipes, files: {a.txt: one}}
          - {type: starter-files, zone: recipes, files: {a.txt: two, b.txt: three}}
        """
    )
    _, state = plan_template(path, blocks)
    assert {f.path: f.content for _, f in state.starter_files} == {"a.txt": b"two", "b.txt": b"three"}


def test_every_hook_has_a_row_in_the_return_table():
    import inspect

    from codestudio import hookspecs
    from codestudio.plan import HOOK_RETURNS

    specs = {name for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(f, "codestudio_spec")}
    assert specs and specs == set(HOOK_RETURNS)


@pytest.mark.parametrize(
    ("hook", "value", "shown"),
    [
        ("contribute_env", {"GREETING": 3}, "int 3 as the value of GREETING"),
        ("contribute_env", {"BAD NAME": "x"}, "variable name 'BAD NAME'"),
        ("contribute_env", ["A=b"], "list"),
        ("contribute_ports", [8080, "9090"], "str '9090'"),
        ("contribute_ports", [True], "bool True"),
        ("contribute_ports", [70000], "int 70000"),
        ("contribute_sync", [SyncMapping(zone="recipes", target="/srv/r")], "list"),
        ("contribute_sync", ([SyncMapping(zone="recipes", target="/srv/r")], "*.tmp"), "exclusions '*.tmp'"),
        ("contribute_sync", (["recipes"], []), "str 'recipes'"),
        ("validate_block", "bad", "str 'bad'"),
        ("validate_block", [("field",)], "the problem ('field',)"),
        ("adjust_probe", {"kind": "tcp"}, "dict"),
        ("adjust_pod", {"cpu": "1"}, "dict"),
        ("adjust_pod", PodSettings().model_copy(update={"memory": "lots"}), "PodSettings with memory 'lots'"),
        ("contribute_starter_files", [{"path": "x"}], "dict"),
        ("register_code_env", "RUN x", "str 'RUN x'"),
    ],
)
def test_a_wrong_return_names_plugin_hook_and_block(blocks, write_template, hook, value, shown):
    from codestudio.plan import HOOK_RETURNS

    if hook == "register_code_env":
        blocks.register("fake-env", FakeEnv(), "test-env", "0")

    class Wrong(Block):
        pass

    def impl(self, **kwargs):
        return value

    impl.__signature__ = __import__("inspect").signature(lambda self, block, state: None)
    setattr(Wrong, hook, hookimpl(impl))
    blocks.register("wrong", Wrong(), "acme-wrong", "4.5")
    try:
        extra = "  - {type: fake-env, name: py}\n" if hook == "register_code_env" else ""
        path = write_template(f"id: t\nblocks:\n  - {{type: dockerfile, statements: RUN true}}\n  - {{type: wrong}}\n{extra}")
        with pytest.raises(PluginError) as info:
            plan_template(path, blocks)
    finally:
        blocks.unregister("wrong")
        if hook == "register_code_env":
            blocks.unregister("fake-env")
    message = str(info.value)
    assert f"acme-wrong 4.5: hook {hook} returned" in message and "blocks[1] (type: wrong)" in message
    assert shown in message and HOOK_RETURNS[hook][0] in message


def test_a_hook_that_raises_is_reported_with_plugin_hook_block_and_message(blocks, write_template):
    class Broken(Block):
        @hookimpl
        def contribute_ports(self, block, state):
            raise KeyError("no such port table")

    blocks.register("broken", Broken(), "acme-broken", "1.0")
    try:
        path = write_template("id: t\nblocks:\n  - {type: broken}\n")
        with pytest.raises(PluginError) as info:
            plan_template(path, blocks)
    finally:
        blocks.unregister("broken")
    assert str(info.value) == (
        "block plugin acme-broken 1.0: hook contribute_ports failed for blocks[0] (type: broken): "
        "KeyError: 'no such port table'"
    )
    assert info.value.exit_code == 1


def test_runner_json_is_checked_with_the_runners_own_rules(blocks, write_template, monkeypatch):
    from codestudio.render import render_template
    from codestudio.runner import runner

    path = write_template("id: t\nblocks:\n  - {type: entrypoint, label: API, command: [srv], port: 8081}\n")
    assert '"schema": %d' % runner.SCHEMA in render_template(path).runner_json
    # Whatever the runner would refuse at start-up is refused at render, naming the block.
    monkeypatch.setattr(runner, "validate_config", lambda doc: ["entrypoints[0].label: refused by the runner"])
    with pytest.raises(TemplateError, match=r"blocks\[0\] \(type: entrypoint\): runner.json entrypoints\[0\].label"):
        render_template(path)
