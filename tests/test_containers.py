"""Unit tests of the container-tool settings and the pure parts of builds (no buildah run)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from codestudio import containers
from codestudio.images import base as base_build
from codestudio.images import bud, builder, history
from codestudio.images.progress import StepTracker
from codestudio.errors import NotFound, RuntimeFailure, UsageError
from codestudio.store import Store

# --------------------------------------------------------------------------
# containers.conf


def facts(**overrides) -> containers.HostFacts:
    values = dict(nofile_hard=20000, nproc_hard=96365, systemd=False, cgroup_v2=False, runc=True)
    values.update(overrides)
    return containers.HostFacts(**values)


def test_conf_keeps_ulimits_at_or_below_the_hard_limits():
    text = containers.render_containers_conf(facts(nofile_hard=20000, nproc_hard=1000))
    assert 'default_ulimits = ["nofile=20000:20000", "nproc=1000:1000"]' in text
    text = containers.render_containers_conf(facts(nofile_hard=1 << 40, nproc_hard=1 << 40))
    assert f"nofile={containers.NOFILE_CAP}:{containers.NOFILE_CAP}" in text
    assert f"nproc={containers.NPROC_CAP}:{containers.NPROC_CAP}" in text


def test_conf_uses_cgroupfs_only_without_systemd():
    without = containers.render_containers_conf(facts(systemd=False))
    assert 'cgroup_manager = "cgroupfs"' in without and 'runtime = "runc"' in without
    with_systemd = containers.render_containers_conf(facts(systemd=True, cgroup_v2=True))
    assert "cgroup_manager" not in with_systemd
    assert "runtime" not in containers.render_containers_conf(facts(runc=False))


def test_conf_is_valid_toml_and_passed_to_every_tool(codestudio_home):
    import tomllib

    path = containers.containers_conf()
    assert path.parent == codestudio_home / "containers"
    conf = tomllib.loads(path.read_text())
    assert conf["containers"]["default_ulimits"]
    assert containers.tool_env()["CONTAINERS_CONF"] == str(path)
    assert containers.podman_env()["CONTAINERS_CONF"] == str(path)


def test_missing_tool_names_the_apt_line(monkeypatch):
    monkeypatch.setattr(containers.shutil, "which", lambda name: None)
    monkeypatch.setattr(containers, "_checked_tools", set())
    with pytest.raises(RuntimeFailure) as info:
        containers.require_tools("buildah", "debootstrap", "busybox")
    assert "apt-get install -y buildah busybox-static debootstrap" in str(info.value)


# --------------------------------------------------------------------------
# policy and storage


def test_missing_host_policy_is_replaced_by_the_engines_own(monkeypatch, tmp_path):
    monkeypatch.setattr(containers, "HOST_POLICY", tmp_path / "absent.json")
    monkeypatch.setattr(containers, "_storage_flags", lambda: [])
    policy = containers.signature_policy()
    assert json.loads(policy.read_text())["default"] == [{"type": "insecureAcceptAnything"}]
    assert containers.buildah_command("bud", "-t", "x", ".") == ["buildah", "bud", "--signature-policy", str(policy), "-t", "x", "."]
    assert containers.buildah_command("tag", "a", "b") == ["buildah", "tag", "a", "b"]
    assert containers.podman_command("kube", "play", "x.yaml")[:4] == ["podman", "kube", "play", "--signature-policy"]
    assert "dpkg --configure -a" in containers.policy_note()


def test_host_policy_is_used_when_present(monkeypatch, tmp_path):
    present = tmp_path / "policy.json"
    present.write_text("{}")
    monkeypatch.setattr(containers, "HOST_POLICY", present)
    monkeypatch.setattr(containers, "_storage_flags", lambda: [])
    assert containers.signature_policy() is None
    assert containers.podman_command("run", "img") == ["podman", "run", "img"]
    assert containers.policy_note() is None


def test_storage_driver_probe_is_cached(monkeypatch, codestudio_home):
    calls = []
    monkeypatch.delenv("CODESTUDIO_STORAGE_DRIVER", raising=False)
    monkeypatch.setattr(containers, "_configured_driver", lambda: None)
    monkeypatch.setattr(containers, "_store_info", lambda: {"GraphRoot": "/x", "GraphDriverName": "overlay"})
    monkeypatch.setattr(containers, "probe_overlay", lambda root: calls.append(root) or (False, "no overlay here"))
    assert containers.storage_driver() == "vfs"
    assert containers.storage_driver() == "vfs"
    assert calls == ["/x"]
    saved = json.loads((codestudio_home / "containers" / "storage-driver.json").read_text())
    assert saved["driver"] == "vfs" and saved["detail"] == "no overlay here"
    # The fallback differs from what the tools pick alone, so it is passed explicitly.
    assert containers._storage_flags() == ["--storage-driver", "vfs"]


def test_storage_flag_is_omitted_when_the_tools_agree(monkeypatch):
    monkeypatch.delenv("CODESTUDIO_STORAGE_DRIVER", raising=False)
    monkeypatch.setattr(containers, "_configured_driver", lambda: None)
    monkeypatch.setattr(containers, "_store_info", lambda: {"GraphRoot": "/x", "GraphDriverName": "overlay"})
    monkeypatch.setattr(containers, "probe_overlay", lambda root: (True, "ok"))
    assert containers.storage_driver() == "overlay"
    assert containers._storage_flags() == []


def test_storage_driver_env_override(monkeypatch):
    monkeypatch.setenv("CODESTUDIO_STORAGE_DRIVER", "vfs")
    assert containers.storage_driver() == "vfs"
    monkeypatch.setenv("CODESTUDIO_STORAGE_DRIVER", "zfs; rm -rf /")
    with pytest.raises(UsageError):
        containers.storage_driver()


# --------------------------------------------------------------------------
# CA bundle and proxies


def test_ca_bundle_order(monkeypatch, tmp_path):
    first, second = tmp_path / "a.pem", tmp_path / "b.pem"
    second.write_text("x")
    monkeypatch.setenv("SSL_CERT_FILE", str(first))  # missing: skipped
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(second))
    monkeypatch.delenv("PIP_CERT", raising=False)
    assert containers.host_ca_bundle() == second.resolve()
    first.write_text("y")
    assert containers.host_ca_bundle() == first.resolve()


def test_ca_bundle_with_a_colon_cannot_be_mounted(monkeypatch, tmp_path):
    odd = tmp_path / "odd:name.pem"
    odd.write_text("x")
    monkeypatch.setenv("SSL_CERT_FILE", str(odd))
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("PIP_CERT", raising=False)
    monkeypatch.setattr(containers, "DEBIAN_CA_BUNDLE", tmp_path / "none.crt")
    assert containers.host_ca_bundle() is None


def test_bud_arguments_mount_the_ca_read_only(monkeypatch, tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("x")
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    args = builder.bud_args(tmp_path / "render", "abc", tmp_path / "iid", no_cache=True)
    assert args[args.index("-v") + 1] == f"{bundle.resolve()}:/etc/ssl/certs/ca-certificates.crt:ro"
    assert {"--layers", "--no-cache", "--force-rm", "--pull=never", "--http-proxy=true"} <= set(args)
    # Every stage's FROM names the base through this argument: the exact image hashed.
    assert args[args.index("--build-arg") + 1] == "CODESTUDIO_BASE_IMAGE=abc"
    assert args[-1] == str(tmp_path / "render" / "context")


def test_bud_arguments_mount_index_settings_and_local_indexes(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    args = builder.bud_args(tmp_path / "render", "abc", tmp_path / "iid", no_cache=False,
                            settings_dir=tmp_path / "s", local_paths=(wheels,))
    volumes = [args[i + 1] for i, a in enumerate(args) if a == "-v"]
    assert f"{tmp_path / 's'}:/run/codestudio-build:ro" in volumes
    assert f"{wheels}:{wheels}:ro" in volumes


# --------------------------------------------------------------------------
# Streaming


def test_stream_yields_lines_and_return_code(monkeypatch):
    monkeypatch.setattr(containers, "require_tools", lambda *n: None)
    with containers.stream(["sh", "-c", "echo one; echo two >&2; exit 4"]) as proc:
        lines = list(proc)
    assert lines == ["one", "two"]
    assert proc.returncode == 4


def test_tool_failure_keeps_the_output(monkeypatch):
    monkeypatch.setattr(containers, "buildah_command", lambda *a: ["sh", "-c", "echo bad thing >&2; exit 3"])
    monkeypatch.setattr(containers, "require_tools", lambda *n: None)
    with pytest.raises(containers.ToolFailure) as info:
        containers.buildah("anything")
    assert info.value.returncode == 3 and "bad thing" in str(info.value)


# --------------------------------------------------------------------------
# Build progress and content hash


def step(number, block_index, block_type, label):
    return SimpleNamespace(number=number, block_index=block_index, block_type=block_type, label=label)


def test_tracker_follows_steps_cache_and_tail():
    tracker = StepTracker(steps={2: step(2, 0, "dockerfile", "tools"), 3: step(3, 1, "dockerfile", "broken")})
    lines = [
        "STEP 1/3: FROM abc",
        "STEP 2/3: RUN echo ok",
        "--> Using cache 1966d9441c7859dc29607672048d5eedc6adc9dde0c2f7a9d83612d3f63f3907",
        "STEP 3/3: RUN false",
        *[f"out {i}" for i in range(30)],
    ]
    starts = [tracker.feed(line) for line in lines]
    assert starts[:4] == [True, True, False, True]
    assert tracker.cached == {2}
    assert (tracker.number, tracker.total, tracker.instruction) == (3, 3, "RUN false")
    assert tracker.where() == "blocks[1] (type: dockerfile) 'broken'"
    assert list(tracker.tail) == [f"out {i}" for i in range(10, 30)]


def test_failure_message_names_block_statement_and_output(tmp_path):
    tracker = StepTracker(steps={5: step(5, 1, "dockerfile", "second")})
    for line in ["STEP 5/9: RUN make", "compiling", "error: boom", "Error: building at STEP"]:
        tracker.feed(line)
    failure = bud._failure("template 'tpl'", tracker, tmp_path / "build.log")
    text = str(failure)
    assert "step 5/9 in blocks[1] (type: dockerfile) 'second'" in text
    assert "failing statement: RUN make" in text
    assert "error: boom" in text and str(tmp_path / "build.log") in text
    assert failure.block_index == 1 and failure.exit_code == 1


def rendered(dockerfile="FROM x\n", files=None, plugins=None):
    return SimpleNamespace(
        template=SimpleNamespace(id="t"),
        dockerfile=dockerfile,
        context_files=files if files is not None else {"a.txt": (b"a", 0o644)},
        plugins=plugins if plugins is not None else {"codestudio-advanced": "0.1.0"},
    )


def test_content_hash_covers_every_input():
    reference = builder.content_hash(builder.content_manifest(rendered(), "base1"))
    assert reference == builder.content_hash(builder.content_manifest(rendered(), "base1"))
    variants = [
        builder.content_manifest(rendered(dockerfile="FROM y\n"), "base1"),
        builder.content_manifest(rendered(files={"a.txt": (b"b", 0o644)}), "base1"),
        builder.content_manifest(rendered(files={"a.txt": (b"a", 0o755)}), "base1"),
        builder.content_manifest(rendered(files={"b.txt": (b"a", 0o644)}), "base1"),
        builder.content_manifest(rendered(plugins={"codestudio-advanced": "0.2.0"}), "base1"),
        builder.content_manifest(rendered(), "base2"),
    ]
    hashes = {builder.content_hash(m) for m in variants}
    assert reference not in hashes and len(hashes) == len(variants)
    assert builder.image_name("t", reference) == f"localhost/codestudio/t:{reference[:16]}"


def test_template_reference_is_a_stored_id_or_a_file(tmp_path, monkeypatch):
    import codestudio.templates_store as templates_store

    with pytest.raises(UsageError, match="no such template file"):
        templates_store.resolve_template(str(tmp_path / "missing.yaml"))
    with pytest.raises(NotFound, match="neither a template file nor a stored template id"):
        templates_store.resolve_template("never-added")
    monkeypatch.setattr(templates_store, "resolve_ref", lambda ref, store=None: (tmp_path / "stored.yaml", 3) if ref == "kept" else None)
    assert templates_store.resolve_template("kept") == (tmp_path / "stored.yaml", 3)
    with pytest.raises(UsageError, match="not a template file"):
        templates_store.resolve_template(str(tmp_path))
    (tmp_path / "t.yaml").write_text("id: t\n")
    assert templates_store.resolve_template(str(tmp_path / "t.yaml")) == (tmp_path / "t.yaml", None)


# --------------------------------------------------------------------------
# History


def test_history_latest_and_image_for(tmp_path, monkeypatch):
    store = Store(tmp_path / "state.db")
    with pytest.raises(NotFound):
        history.image_for("t", store=store)
    first = history.start(store, template_id="t", template_version=None, content_hash="h1", image="i:h1", plugins={"p": "1"})
    history.finish(store, first, outcome="succeeded", image_id="id1")
    failed = history.start(store, template_id="t", template_version=None, content_hash="h2", image="i:h2", plugins={})
    history.finish(store, failed, outcome="failed", error="boom")
    skipped = history.start(store, template_id="t", template_version=None, content_hash="h1", image="i:h1", plugins={},
                            outcome="skipped", image_id="id1")
    rows = history.list_builds("t", store=store)
    assert [r["outcome"] for r in rows] == ["skipped", "failed", "succeeded"]
    assert rows[2]["plugins"] == {"p": "1"} and rows[0]["ended_at"] is not None
    assert history.latest_build("t", store=store)["id"] == skipped
    built = history.image_for("t", store=store, check_storage=False)
    assert (built.image, built.image_id, built.content_hash) == ("i:h1", "id1", "h1")
    monkeypatch.setattr(containers, "image_id", lambda ref: None)
    with pytest.raises(RuntimeFailure, match="no longer in local storage"):
        history.image_for("t", store=store)


def test_a_build_that_died_is_closed_by_the_next_one(tmp_path):
    store = Store(tmp_path / "state.db")
    history.start(store, template_id="t", template_version=None, content_hash="h", image="i", plugins={})
    history.start(store, template_id="t", template_version=None, content_hash="h", image="i", plugins={})
    rows = history.list_builds("t", store=store)
    assert [(r["outcome"], r["error"]) for r in rows] == [("running", None), ("failed", "interrupted")]


# --------------------------------------------------------------------------
# Base image inputs


def test_mirror_from_deb822_and_one_line_sources(tmp_path):
    sources_list = tmp_path / "sources.list"
    sources_list.write_text("# deb http://commented.example/debian bookworm main\n"
                            "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main contrib\n")
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text(
        "Types: deb\n# a comment inside the stanza\nURIs: http://two.example/debian\nSuites: trixie trixie-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://two.example/debian-security\nSuites: trixie-security\nComponents: main\n\n"
        "Types: deb\nURIs: http://off.example/debian\nSuites: sid\nComponents: main\nEnabled: no\n"
    )
    (d / "other.list.disabled").write_text("deb http://ignored.example/x bookworm main\n")
    sources = base_build.host_apt_sources(sources_list, d)
    assert [s.uri for s in sources] == ["http://one.example/debian", "http://two.example/debian", "http://two.example/debian-security"]
    assert base_build.host_debian_mirror("bookworm", sources, host_is_debian=True) == "http://one.example/debian"
    assert base_build.host_debian_mirror("trixie", sources, host_is_debian=True) == "http://two.example/debian"
    only_822 = base_build.host_apt_sources(tmp_path / "none", d)
    assert base_build.host_debian_mirror("trixie", only_822, host_is_debian=True) == "http://two.example/debian"
    assert base_build.host_debian_mirror("bookworm", only_822, host_is_debian=True) == "http://two.example/debian"
    assert base_build.host_debian_mirror("bookworm", only_822, host_is_debian=False) is None
    assert base_build.host_debian_mirror("bookworm", [], host_is_debian=True) is None


def test_base_inputs_change_with_suite_mirror_and_runner(monkeypatch, tmp_path):
    runner = tmp_path / "runner.py"
    runner.write_text("print('v1')\n")
    monkeypatch.setattr(base_build, "_runner_path", lambda: runner)
    one = base_build.inputs_hash("bookworm", "http://m.example/debian", "amd64")
    assert one == base_build.inputs_hash("bookworm", "http://m.example/debian", "amd64")
    assert one != base_build.inputs_hash("trixie", "http://m.example/debian", "amd64")
    assert one != base_build.inputs_hash("bookworm", None, "amd64")
    runner.write_text("print('v2')\n")
    assert one != base_build.inputs_hash("bookworm", "http://m.example/debian", "amd64")
    # The tarball cache does not depend on the runner: a runner change reuses it.
    assert base_build.rootfs_key("bookworm", None, "amd64") == base_build.rootfs_key("bookworm", None, "amd64")


def test_base_dockerfile_sets_user_runner_and_entrypoint():
    text = base_build.dockerfile_text()
    assert text.startswith("FROM scratch\nADD rootfs.tar /\n")
    assert "useradd --uid 1000" in text and "/home/codestudio/workspace" in text
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "python3", "/opt/codestudio/runner.py"]' in text
    assert "LABEL" not in text  # values come as --label arguments: no Dockerfile escaping
    assert base_build.labels("abc", "bookworm", None)["io.codestudio.base.inputs"] == "abc"


@pytest.mark.parametrize("suite, mirror", [("bookworm; rm -rf /", None), ("bookworm", "ftp://x"), ("bookworm", "http://x y")])
def test_base_build_rejects_bad_input(suite, mirror):
    with pytest.raises(UsageError):
        base_build.build_base(suite=suite, mirror=mirror)


def test_clean_rootfs_drops_caches_and_host_files(tmp_path):
    root = tmp_path
    for rel in ("var/lib/apt/lists/deb_dists_bookworm_Release", "var/cache/apt/pkgcache.bin",
                "var/cache/apt/archives/x.deb", "var/log/dpkg.log", "etc/resolv.conf", "etc/hostname", "tmp/junk"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    (root / "var/lib/apt/lists/partial").mkdir()
    base_build._clean_rootfs(root)
    assert list((root / "var/lib/apt/lists").iterdir()) == []
    assert not (root / "var/cache/apt/pkgcache.bin").exists()
    assert not (root / "var/cache/apt/archives/x.deb").exists()
    assert not (root / "etc/resolv.conf").exists()
    assert (root / "etc/hostname").read_text() == "codestudio\n"
    assert not (root / "tmp/junk").exists()


def test_cli_lists_builds_as_json(tmp_path, codestudio_home):
    store = Store.default()
    bid = history.start(store, template_id="t", template_version=None, content_hash="h" * 64, image="i", plugins={})
    history.finish(store, bid, outcome="failed", error="x")
    cli = str(Path(__import__("sys").executable).with_name("codestudio"))
    out = subprocess.run([cli, "template", "builds", "t", "--json"], capture_output=True, text=True, check=True).stdout
    assert [r["outcome"] for r in json.loads(out)] == ["failed"]
    table = subprocess.run([cli, "template", "builds", "t"], capture_output=True, text=True, check=True).stdout
    assert "failed" in table and "hhhhhhhhhhhhhhhh" in table
