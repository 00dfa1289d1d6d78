"""Template and base image builds with the real buildah (and podman to look inside images)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codestudio import containers
from codestudio.images import BuildFailed, image_for, latest_build, list_builds
from codestudio.templates_store import build_template

pytestmark = pytest.mark.e2e
CLI = str(Path(sys.executable).with_name("codestudio"))

THREE_BLOCKS = """
- type: dockerfile
  label: first block
  run_as_root: true
  statements: |
    RUN echo one > /opt/one
- type: dockerfile
  label: second block
  run_as_root: true
  statements: |
    RUN echo two > /opt/two
- type: dockerfile
  label: third block
  run_as_root: true
  statements: |
    RUN echo {third} > /opt/three
"""


def run_in(image: str, *command: str) -> str:
    """Run a command in a throwaway container of ``image`` and return its stdout."""
    proc = containers.podman("run", "--rm", "--network", "none", "--entrypoint", command[0], image, *command[1:])
    return proc.stdout


def steps_of(rendered_steps, block_index: int) -> set[int]:
    return {s.number for s in rendered_steps if s.block_index == block_index}


def test_build_then_noop_rebuild_runs_no_buildah(tiny_template, monkeypatch):
    path = tiny_template(THREE_BLOCKS.format(third="three"), name="noop")
    first = build_template(str(path), quiet=True)
    assert first.outcome == "succeeded"
    assert containers.image_id(first.image) == first.image_id
    assert containers.image_id(first.latest) == first.image_id

    def no_buildah(*args, **kwargs):
        raise AssertionError("an unchanged template must not run buildah bud")

    monkeypatch.setattr(containers, "stream", no_buildah)
    second = build_template(str(path), quiet=True)
    assert second.outcome == "skipped"
    assert (second.image, second.image_id) == (first.image, first.image_id)

    history = list_builds(first.template_id)
    assert [b["outcome"] for b in history] == ["skipped", "succeeded"]
    assert Path(history[1]["log_path"]).is_file()
    assert history[1]["plugins"] == {"codestudio-advanced": history[1]["plugins"]["codestudio-advanced"]}
    assert latest_build(first.template_id)["image_id"] == first.image_id
    assert image_for(first.template_id).image == first.image


def test_changing_the_last_block_reuses_earlier_layers(tiny_template):
    from codestudio.render import render_template

    path = tiny_template(THREE_BLOCKS.format(third="three"), name="cache")
    first = build_template(str(path), quiet=True)

    path.write_text(path.read_text().replace("echo three", "echo changed"))
    rendered = render_template(path)
    second = build_template(str(path), quiet=True)
    assert second.outcome == "succeeded"
    assert second.content_hash != first.content_hash
    cached = set(second.cached_steps)
    # Blocks 1 and 2 come from the cache, block 3 is built again.
    assert steps_of(rendered.steps, 0) | steps_of(rendered.steps, 1) <= cached
    changed = [s.number for s in rendered.steps if "echo changed" in s.instruction]
    assert len(changed) == 1 and changed[0] in steps_of(rendered.steps, 2)
    assert changed[0] not in cached
    assert "Using cache" in second.log_path.read_text()
    assert containers.image_id(second.latest) == second.image_id
    # The old hash tag still names the old image.
    assert containers.image_id(first.image) == first.image_id
    assert run_in(second.image, "cat", "/opt/one", "/opt/three") == "one\nchanged\n"


def test_failure_in_block_2_names_it_and_moves_no_tag(tiny_template):
    path = tiny_template(THREE_BLOCKS.format(third="three"), name="fail")
    good = build_template(str(path), quiet=True)

    path.write_text(path.read_text().replace("RUN echo two > /opt/two", "RUN echo 'about to fail' && exit 3"))
    with pytest.raises(BuildFailed) as info:
        build_template(str(path), quiet=True)
    message = str(info.value)
    assert "blocks[1] (type: dockerfile) 'second block'" in message
    assert "failing statement: RUN echo 'about to fail' && exit 3" in message
    assert "about to fail" in message.split("last output:")[1]
    assert info.value.block_index == 1
    assert info.value.log_path.is_file()

    assert containers.image_id(good.latest) == good.image_id
    assert containers.image_refs(f"localhost/codestudio/{good.template_id}") == sorted([good.image, good.latest])
    assert [b["outcome"] for b in list_builds(good.template_id)] == ["failed", "succeeded"]
    assert image_for(good.template_id).image_id == good.image_id


def test_resources_are_copied_and_usable_in_run(tiny_template):
    path = tiny_template(
        """
        - type: dockerfile
          label: data files
          run_as_root: true
          statements: |
            COPY data.txt /opt/data/data.txt
            COPY tree /opt/data/tree
            RUN grep -q hello /opt/data/data.txt && cat /opt/data/data.txt /opt/data/tree/inner.txt > /opt/data/both.txt
          resources: [files/data.txt, files/tree]
        """,
        files={"files/data.txt": "hello resources\n", "files/tree/inner.txt": "inner file\n"},
        name="resources",
    )
    result = build_template(str(path), quiet=True)
    assert run_in(result.image, "cat", "/opt/data/both.txt") == "hello resources\ninner file\n"


def test_runner_label_and_metadata_are_readable_from_the_image(tiny_template):
    from codestudio.render import render_template

    path = tiny_template(
        """
        - type: entrypoint
          label: Web server
          command: [httpd, -f, -p, "8080"]
          port: 8080
        """,
        name="label",
    )
    result = build_template(str(path), quiet=True)
    labels = containers.image_labels(result.image)
    runner = json.loads(labels["io.codestudio.runner"])
    assert runner == json.loads(render_template(path).runner_json)
    assert runner["entrypoints"][0]["command"] == ["httpd", "-f", "-p", "8080"]
    assert labels["io.codestudio.template"] == result.template_id
    assert json.loads(run_in(result.image, "cat", "/opt/codestudio/runner.json")) == runner
    assert run_in(result.image, "id", "-u") == "1000\n"


def test_ca_bundle_and_proxy_reach_run_steps_but_not_the_image(tiny_template, monkeypatch, tmp_path):
    bundle = tmp_path / "bundle.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nnot-a-real-cert\n-----END CERTIFICATE-----\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    path = tiny_template(
        """
        - type: dockerfile
          label: network probe
          run_as_root: true
          statements: |
            RUN cat "$SSL_CERT_FILE" > /opt/ca-seen && echo "$HTTPS_PROXY" > /opt/proxy-seen
        """,
        name="network",
    )
    result = build_template(str(path), quiet=True)
    assert "not-a-real-cert" in run_in(result.image, "cat", "/opt/ca-seen")
    assert run_in(result.image, "cat", "/opt/proxy-seen") == "http://proxy.invalid:3128\n"
    # The bundle was only mounted: the image holds no copy of it, nor the proxy.
    assert "not-a-real-cert" not in run_in(result.image, "cat", "/etc/ssl/certs/ca-certificates.crt")
    config = containers.image_inspect(result.image)["OCIv1"]["config"]
    assert not any("proxy" in e.lower() for e in config.get("Env", []))
    assert "proxy.invalid" not in result.log_path.read_text()


def test_no_cache_rebuilds_every_layer(tiny_template):
    path = tiny_template(THREE_BLOCKS.format(third="three"), name="nocache")
    build_template(str(path), quiet=True)
    again = build_template(str(path), no_cache=True, quiet=True)
    assert again.outcome == "succeeded"
    assert again.cached_steps == []
    assert containers.image_id(again.latest) == again.image_id


def test_concurrent_builds_of_two_templates(tiny_template):
    paths = [
        tiny_template(
            f"""
            - type: dockerfile
              label: marker {name}
              run_as_root: true
              statements: |
                RUN echo {name} > /opt/marker && for i in 1 2 3; do echo $i >> /opt/marker; done
            """,
            name=name,
        )
        for name in ("left", "right")
    ]
    procs = [
        subprocess.Popen(
            [CLI, "template", "build", "--json", str(p)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        for p in paths
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    assert results[0]["image_id"] != results[1]["image_id"]
    for result, name in zip(results, ("left", "right"), strict=True):
        assert run_in(result["image"], "cat", "/opt/marker") == f"{name}\n1\n2\n3\n"
        assert [b["outcome"] for b in list_builds(result["template_id"])] == ["succeeded"]


def test_cli_exit_codes(tiny_template, tmp_path):
    path = tiny_template(
        """
        - type: dockerfile
          label: broken
          statements: |
            RUN exit 7
        """,
        name="cli",
    )
    proc = subprocess.run([CLI, "template", "build", "-q", str(path)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "'broken'" in proc.stderr and "RUN exit 7" in proc.stderr
    proc = subprocess.run([CLI, "template", "build", str(tmp_path / "missing.yaml")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "no such template file" in proc.stderr


def test_real_debian_base_and_a_template_on_it(debian_base, session_home, tmp_path, image_cleanup, monkeypatch):
    from codestudio.images.base import build_base

    # The session's data dir holds the cached root filesystem: a rebuild
    # (if the runner changed since the fixture ran) skips debootstrap.
    monkeypatch.setenv("CODESTUDIO_HOME", str(session_home))
    build_base(quiet=True)
    assert build_base(quiet=True).outcome == "unchanged"
    assert run_in(debian_base, "id", "codestudio") == "uid=1000(codestudio) gid=1000(codestudio) groups=1000(codestudio)\n"
    assert containers.image_inspect(debian_base)["OCIv1"]["config"]["Entrypoint"] == [
        "/usr/bin/tini", "--", "python3", "/opt/codestudio/runner.py"
    ]
    assert run_in(debian_base, "sh", "-c", "ls /var/lib/apt/lists | wc -l") == "0\n"

    template = tmp_path / "debian.yaml"
    template_id = f"test-debian-{os.getpid()}"
    image_cleanup(template_id)
    template.write_text(
        f"id: {template_id}\n"
        "blocks:\n"
        "  - type: dockerfile\n"
        "    label: venv with a package from PyPI\n"
        "    run_as_root: true\n"
        "    statements: |\n"
        "      RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-deps --disable-pip-version-check six==1.16.0\n"
    )
    result = build_template(str(template), quiet=True)
    assert run_in(result.image, "/opt/venv/bin/python", "-c", "import six; print(six.__version__)") == "1.16.0\n"
    assert run_in(result.image, "python3", "-c", "import os; print(os.getcwd(), os.getuid())") == "/home/codestudio/workspace 1000\n"


def test_stored_template_builds_by_id_and_records_its_version(tiny_template):
    from codestudio.access import identify
    from codestudio.templates_store import add_template

    path = tiny_template(THREE_BLOCKS.format(third="stored"), name="stored")
    stored, _ = add_template(identify(), path)
    result = build_template(stored.id, quiet=True)
    assert result.outcome == "succeeded"
    assert list_builds(stored.id)[0]["template_version"] == stored.version
    assert run_in(result.image, "cat", "/opt/three") == "stored\n"
