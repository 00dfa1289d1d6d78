"""Python installs through the build tools: uv by default, pip as the fallback; index settings.

Pure tests (no container tool): what the renderer writes for Python envs,
how the installer is chosen, how the host's pip settings are read and
turned into files for the build, and how step numbers follow stages.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from codestudio import buildenv, hookimpl
from codestudio.blockapi import Block, Run
from codestudio.blockhelpers import pip_install, python_env
from codestudio.errors import UsageError
from codestudio.images import indexes
from codestudio.images.progress import StepTracker
from codestudio.render import render_template


REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.yaml"
    path.write_text(textwrap.dedent(text))
    return path


CODE_ENV = """\
id: py-env
{build}blocks:
  - type: codeenv
    name: py
    packages: [six==1.16.0]
  - type: dockerfile
    run_as_root: true
    statements: |
      RUN echo plain
"""


def test_pip_install_calls_the_build_tools_with_quoted_words():
    text = pip_install("/opt/env/bin/python", ["a==1", "b[x]>=2"], ["/opt/env/req.txt"])
    assert text == "/opt/codestudio-build/bin/install-python /opt/env/bin/python -r /opt/env/req.txt a==1 'b[x]>=2'"
    (run,) = python_env("/opt/env", packages=["six"])
    assert run.script == "/opt/codestudio-build/bin/install-python --venv python3 /opt/env six"
    assert pip_install("/opt/e/bin/python", ["a"], venv="/usr/bin/python3.11") == (
        "/opt/codestudio-build/bin/install-python --venv /usr/bin/python3.11 /opt/e a")
    with pytest.raises(ValueError):
        pip_install("/opt/e/python", venv="python3")


def test_uv_is_the_default_installer_from_the_tools_image(tmp_path, codestudio_home):
    rendered = render_template(write(tmp_path, CODE_ENV.format(build="")))
    text = rendered.dockerfile
    tools, image = text.split("# [image]")
    # The tools are an image the builder makes once per base (its id a build argument), not built here.
    assert "ARG CODESTUDIO_BUILD_TOOLS_IMAGE\n" in tools
    assert "FROM ${CODESTUDIO_BUILD_TOOLS_IMAGE} AS codestudio-build-tools" in tools
    assert "uv==" not in text and rendered.build_tools == "uv"
    assert f" CODESTUDIO_BUILD_TOOLS={buildenv.tools_id('uv')}" in image
    env_run = next(line for line in image.splitlines() if "code-envs/py" in line)
    assert env_run.startswith("RUN --mount=type=bind,from=codestudio-build-tools,source=/opt/codestudio-build,"
                              "target=/opt/codestudio-build --mount=type=cache,id=codestudio-uv,"
                              "target=/var/cache/codestudio/uv,sharing=shared [")
    # A step that does not use the tools gets no mount.
    assert 'RUN echo plain' in image and "--mount" not in next(l for l in image.splitlines() if "echo plain" in l)
    assert not any("build-tools" in name for name in rendered.context_files)


def test_the_tools_image_installs_uv_from_the_index_on_the_base(tmp_path):
    from codestudio.render import tools_dockerfile

    text, files = tools_dockerfile("uv")
    # uv comes from the package index with pip, in a venv of the template's base (its platform).
    assert "FROM ${CODESTUDIO_BASE_IMAGE}\n" in text
    assert f"uv=={buildenv.UV_VERSION}" in text and "--mount=type=cache,id=codestudio-pip" in text
    assert f'LABEL io.codestudio.build-tools="{buildenv.tools_id("uv")}"' in text
    assert files["build-tools/install-python"] == (buildenv.install_python_script(), 0o755)
    # One tag per tools id and base image; pip's tools hold no binary and do not depend on the base.
    assert buildenv.tools_image("uv", "sha256:" + "ab" * 32) == (
        f"localhost/codestudio-build-tools:{buildenv.tools_id('uv')}-{'ab' * 6}")
    assert buildenv.tools_image("pip", "ab" * 32) == f"localhost/codestudio-build-tools:{buildenv.tools_id('pip')}"
    pip_text, _ = tools_dockerfile("pip")
    assert "FROM scratch\n" in pip_text and "uv==" not in pip_text and "\nRUN " not in pip_text


def test_pip_fallback_per_template(tmp_path, codestudio_home):
    rendered = render_template(write(tmp_path, CODE_ENV.format(build="build:\n  python_installer: pip\n")))
    tools, image = rendered.dockerfile.split("# [image]")
    # No uv: the tools image only carries install-python, which then uses the env's own pip.
    assert rendered.build_tools == "pip" and "AS codestudio-build-tools" in tools
    assert f" CODESTUDIO_BUILD_TOOLS={buildenv.tools_id('pip')}" in image
    assert "id=codestudio-pip,target=/var/cache/codestudio/pip" in image and "codestudio-uv" not in image


def test_pip_fallback_from_the_data_dir_and_template_wins(tmp_path, codestudio_home):
    (codestudio_home / "config").mkdir(exist_ok=True)
    (codestudio_home / "config" / "build.toml").write_text('python_installer = "pip"\n')
    assert render_template(write(tmp_path, CODE_ENV.format(build=""))).build_tools == "pip"
    chosen = render_template(write(tmp_path, CODE_ENV.format(build="build:\n  python_installer: uv\n")))
    assert chosen.build_tools == "uv" and buildenv.tools_id("uv") in chosen.dockerfile
    (codestudio_home / "config" / "build.toml").write_text('python_installer = "poetry"\n')
    with pytest.raises(UsageError, match=r"build.toml: python_installer = 'poetry': use one of 'uv', 'pip'"):
        render_template(write(tmp_path, CODE_ENV.format(build="")))


def test_bad_installer_in_template_names_the_field(tmp_path, codestudio_home):
    from codestudio.errors import TemplateError

    with pytest.raises(TemplateError, match="build.python_installer"):
        render_template(write(tmp_path, CODE_ENV.format(build="build:\n  python_installer: conda\n")))


def test_the_installer_choice_changes_the_image_hash_and_layers(tmp_path, codestudio_home):
    uv = render_template(write(tmp_path, CODE_ENV.format(build="")))
    pip = render_template(write(tmp_path, CODE_ENV.format(build="build:\n  python_installer: pip\n")))
    assert uv.dockerfile != pip.dockerfile
    assert buildenv.tools_id("uv") != buildenv.tools_id("pip")


def test_no_python_env_no_tools_stage(tmp_path, codestudio_home):
    rendered = render_template(write(tmp_path, """\
        id: plain
        blocks:
          - type: dockerfile
            run_as_root: true
            statements: RUN echo plain
        """))
    assert "codestudio-build-tools" not in rendered.dockerfile and "CODESTUDIO_BUILD_TOOLS" not in rendered.dockerfile
    assert [s.stage for s in rendered.steps] == [1] * len(rendered.steps) and rendered.build_tools is None


def test_step_numbers_run_over_stages_and_the_tracker_maps_them(tmp_path, codestudio_home):
    rendered = render_template(write(tmp_path, CODE_ENV.format(build="")))
    steps = rendered.steps
    assert [s.number for s in steps] == list(range(1, len(steps) + 1))
    assert steps[0].instruction == "FROM ${CODESTUDIO_BUILD_TOOLS_IMAGE} AS codestudio-build-tools"
    assert steps[0].label == "codestudio build tools" and steps[0].stage == 1
    main_from = next(s for s in steps if s.stage == 2)
    assert main_from.stage_number == 1 and main_from.instruction.startswith("FROM") and main_from.label == "codestudio"
    env_step = next(s for s in steps if "code-envs/py" in s.instruction)
    tracker = StepTracker(steps={s.number: s for s in steps})
    tracker.feed(f"[2/2] STEP {env_step.stage_number}/{sum(s.stage == 2 for s in steps)}: RUN ...")
    assert (tracker.number, tracker.total) == (env_step.number, len(steps))
    assert tracker.where() == "blocks[0] (type: codeenv) 'codeenv'"


# --------------------------------------------------------------------------
# Index settings


def test_index_settings_are_read_as_pip_reads_them(tmp_path):
    low = tmp_path / "global.conf"
    low.write_text("[global]\nindex-url = https://low.example/simple\nfind-links = /nowhere\n")
    high = tmp_path / "user.conf"
    high.write_text("[global]\nindex-url = https://user:secret@mirror.example/simple\n"
                    "[install]\nextra-index-url = https://extra.example/simple https://two.example/simple\n")
    settings = indexes.host_settings([low, high], {"PIP_FIND_LINKS": "file:///srv/wheels", "PIP_TRUSTED_HOST": "mirror.example"})
    assert settings.index_url == "https://user:secret@mirror.example/simple"
    assert settings.extra_index_urls == ["https://extra.example/simple", "https://two.example/simple"]
    assert settings.find_links == ["file:///srv/wheels"]  # the environment wins over files
    assert settings.sources["index_url"] == f"{high} [global] index-url"
    assert settings.urls()[0] == "https://***@mirror.example/simple"
    uv = indexes.uv_toml(settings)
    assert 'index-url = "https://user:secret@mirror.example/simple"' in uv
    assert 'index-strategy = "unsafe-best-match"' in uv and 'allow-insecure-host = ["mirror.example"]' in uv
    pip = indexes.pip_conf(settings)
    assert "extra-index-url = https://extra.example/simple https://two.example/simple" in pip


def test_invalid_index_url_is_refused_naming_where_it_was_set(tmp_path):
    with pytest.raises(UsageError) as info:
        indexes.host_settings([], {"PIP_INDEX_URL": "ftp://user:pw@mirror.example/simple"})
    message = str(info.value)
    assert "PIP_INDEX_URL: 'ftp://***@mirror.example/simple' is not an http://, https:// or file:// URL" in message
    assert "pw" not in message
    with pytest.raises(UsageError, match="PIP_EXTRA_INDEX_URL: 'https:///simple' has no host"):
        indexes.host_settings([], {"PIP_EXTRA_INDEX_URL": "https:///simple"})


def test_local_indexes_and_find_links_are_mounted_at_their_path(tmp_path):
    (tmp_path / "mirror" / "simple").mkdir(parents=True)
    (tmp_path / "wheels").mkdir()
    settings = indexes.host_settings([], {
        "PIP_EXTRA_INDEX_URL": f"file://{tmp_path}/mirror/simple https://remote.example/simple",
        "PIP_FIND_LINKS": f"{tmp_path}/wheels {tmp_path}/missing",
    })
    # The index's parent holds the files its pages link to; missing folders are not mounted.
    assert indexes.local_paths(settings) == [tmp_path / "mirror", tmp_path / "wheels"]


def test_settings_files_are_private_and_hold_masked_names_for_messages(tmp_path):
    settings = indexes.host_settings([], {"PIP_INDEX_URL": "https://u:p@m.example/simple"})
    folder = tmp_path / "s"
    indexes.write_settings(folder, settings)
    assert {p.name for p in folder.iterdir()} == {"pip.conf", "uv.toml", "indexes.txt"}
    assert all((p.stat().st_mode & 0o777) == 0o600 for p in folder.iterdir())
    assert (folder / "indexes.txt").read_text() == "https://***@m.example/simple\n"
    default = tmp_path / "d"
    indexes.write_settings(default, indexes.IndexSettings())
    assert (default / "indexes.txt").read_text() == "https://pypi.org/simple (the default)\n"


# --------------------------------------------------------------------------
# The download caches: show, clear, and the lock builds hold


def test_cache_show_and_clear(codestudio_home):
    from codestudio.images import cache

    folder = codestudio_home / "cache" / "build" / "buildah-cache" / "codestudio-uv"
    (folder / "archive-v0" / "x").mkdir(parents=True)
    (folder / "archive-v0" / "x" / "six.py").write_bytes(b"x" * 100)
    rows = {row["tool"]: row for row in cache.show()}
    assert set(rows) == {"uv", "pip", "npm", "apt"}
    assert (rows["uv"]["bytes"], rows["uv"]["files"], rows["uv"]["path"]) == (100, 1, str(folder))
    assert rows["apt"]["sharing"] == "locked" and rows["pip"]["bytes"] == 0
    with pytest.raises(UsageError, match="no download cache named 'conda'"):
        cache.clear(["conda"])
    assert [r["tool"] for r in cache.clear(["uv"])] == ["uv"]
    assert not folder.exists()


def test_cache_clear_waits_for_running_builds(codestudio_home):
    import threading

    from codestudio.images import cache

    (codestudio_home / "cache" / "build" / "buildah-cache" / "codestudio-pip").mkdir(parents=True)
    waited = threading.Event()
    done = threading.Event()
    with cache.cache_lock(shared=True), cache.cache_lock(shared=True):  # two builds share it
        worker = threading.Thread(target=lambda: (cache.clear(waiting=waited.set), done.set()))
        worker.start()
        assert waited.wait(10)
        assert not done.is_set()
    worker.join(10)
    assert done.is_set() and cache.cache_folders("pip") == []


def test_cache_cli(codestudio_home):
    import json

    from click.testing import CliRunner

    from codestudio.cli import make_cli

    runner = CliRunner()
    shown = runner.invoke(make_cli(), ["cache", "show", "--json"])
    assert shown.exit_code == 0 and [r["tool"] for r in json.loads(shown.output)] == ["uv", "pip", "npm", "apt"]
    cleared = runner.invoke(make_cli(), ["cache", "clear", "--json", "npm"])
    assert cleared.exit_code == 0 and json.loads(cleared.output) == {"removed": []}


# --------------------------------------------------------------------------
# Independent blocks as parallel stages (contribute_stage)


def test_leading_independent_blocks_become_stages_copied_in_template_order(tmp_path, codestudio_home):
    from codestudio.render import render_template

    source = (REPO / "examples" / "data-science.yaml").read_text()
    path = tmp_path / "data-science.yaml"
    path.write_text(source.replace("blocks:", "build:\n  parallel_stages: true\nblocks:", 1))
    rendered = render_template(path)
    text = rendered.dockerfile
    assert "FROM ${CODESTUDIO_BASE_IMAGE} AS codestudio-block-00" in text  # vscode
    assert "FROM ${CODESTUDIO_BASE_IMAGE} AS codestudio-block-01" in text  # jupyterlab
    image = text.split("# [image]")[1]
    copies = [line for line in image.splitlines() if line.startswith("COPY --from=")]
    assert copies == ['COPY --from=codestudio-block-00 ["/opt/codestudio/vscode", "/opt/codestudio/vscode"]',
                      'COPY --from=codestudio-block-01 ["/opt/codestudio/jupyterlab", "/opt/codestudio/jupyterlab"]']
    # The code env (not independent) and everything after it run in the image's stage.
    assert "code-envs/py-ml" in image and "AS codestudio-block-02" not in text
    # Steps of a stage still name their block.
    vscode_steps = [s for s in rendered.steps if s.stage == 2]
    assert {s.block_type for s in vscode_steps} == {"vscode"} and vscode_steps[0].instruction.startswith("FROM")
    assert {s.block_type for s in rendered.steps if s.instruction.startswith("COPY --from=codestudio-block-01")} == {"jupyterlab"}


def test_a_block_before_them_or_the_serial_option_keeps_blocks_in_place(tmp_path, codestudio_home):
    from codestudio.render import render_template

    after_dockerfile = write(tmp_path, """\
        id: ordered
        blocks:
          - type: dockerfile
            run_as_root: true
            statements: RUN echo '[global]' > /etc/pip.conf
          - type: jupyterlab
        """)
    assert "codestudio-block-" not in render_template(after_dockerfile).dockerfile
    serial = write(tmp_path, """\
        id: serial
        build:
          parallel_stages: false
        blocks:
          - type: jupyterlab
        """)
    assert "codestudio-block-" not in render_template(serial).dockerfile


def test_contribute_stage_return_is_checked(codestudio_home):
    from codestudio.plan import HOOK_RETURNS, _WrongReturn

    _, check = HOOK_RETURNS["contribute_stage"]
    assert check(None) == () and check(["/opt/tool"]) == ("/opt/tool",)
    for bad in (["/"], ["/usr"], ["relative"], "/opt/tool", [3]):
        with pytest.raises(_WrongReturn):
            check(bad)


class StagedTool(Block):
    """A third-party block building its own folder, as contribute_stage describes."""

    @hookimpl
    def contribute_dockerfile(self, block):
        return [Run(script=f"mkdir -p /opt/tool{block.index} && echo built > /opt/tool{block.index}/marker")]

    @hookimpl
    def contribute_stage(self, block):
        return [f"/opt/tool{block.index}"]


def test_a_third_party_block_builds_as_a_stage(tmp_path, codestudio_blocks, codestudio_block):
    from codestudio.render import render_template

    codestudio_block("staged-tool", StagedTool())
    path = write(tmp_path, """\
        id: staged
        build:
          parallel_stages: true
        blocks:
          - type: staged-tool
          - type: staged-tool
          - type: dockerfile
            run_as_root: true
            statements: RUN cat /opt/tool0/marker
        """)
    text = render_template(path, blocks=codestudio_blocks).dockerfile
    stage, image = text.split("# [image]")
    assert "AS codestudio-block-00" in stage and "AS codestudio-block-01" in stage
    assert "echo built" in stage and "echo built" not in image
    assert image.index('COPY --from=codestudio-block-00 ["/opt/tool0", "/opt/tool0"]') < image.index(
        'COPY --from=codestudio-block-01 ["/opt/tool1", "/opt/tool1"]') < image.index("cat /opt/tool0/marker")
    # Labels and the step's block survive: the stage ends in a LABEL (see docs/building.md).
    assert 'LABEL io.codestudio.stage="codestudio-block-00"' in stage


def test_a_single_independent_block_builds_in_place(tmp_path, codestudio_blocks, codestudio_block):
    """A stage alone would overlap with nothing: it would only add a copy of its result (and its commit)."""
    from codestudio.render import render_template

    codestudio_block("staged-tool", StagedTool())
    path = write(tmp_path, """\
        id: staged
        blocks:
          - type: staged-tool
          - type: codeenv
            name: py
            packages: [six]
        """)
    rendered = render_template(path, blocks=codestudio_blocks)
    assert "codestudio-block-" not in rendered.dockerfile and "COPY --from" not in rendered.dockerfile
    assert {s.stage for s in rendered.steps if s.label != "codestudio build tools"} == {2}
    image = rendered.dockerfile.split("# [image]")[1]
    assert image.index("echo built") < image.index("code-envs/py")


def test_a_failure_is_blamed_on_the_step_buildah_names_not_the_last_one_printed(tmp_path, codestudio_home):
    rendered = render_template(write(tmp_path, CODE_ENV.format(build="")))
    env_step = next(s for s in rendered.steps if "code-envs/py" in s.instruction)
    tools_step = next(s for s in rendered.steps if s.stage == 1)
    tracker = StepTracker(steps={s.number: s for s in rendered.steps})
    tracker.feed(f"[2/2] STEP {env_step.stage_number}/9: RUN ...")
    tracker.feed(f"[1/2] STEP {tools_step.stage_number}/{tools_step.stage_number}: LABEL ...")  # printed in between
    tracker.feed("error: Request failed after 3 retries")
    tracker.feed('Error: building at STEP "RUN --mount=type=bind,from=codestudio-build-tools,source=/opt/codestudio-build,'
                 'target=/opt/codestudio-build --mount=type=cache,id=codestudio-uv,target=/var/cache/codestudio/uv,'
                 'sharing=shared /bin/sh -e -c /opt/codestudio-build/bin/install-python --venv python3 /opt/codestudio/code-envs/py')
    assert tracker.number == env_step.number
    assert tracker.where() == "blocks[0] (type: codeenv) 'codeenv'"
    assert list(tracker.tail) == ["error: Request failed after 3 retries"]


def test_a_token_in_an_index_urls_query_is_masked_wherever_it_is_shown(tmp_path):
    assert indexes.mask("https://idx.example/simple?token=abc") == "https://idx.example/simple?token=***"
    assert indexes.mask("https://u:pw@idx.example/simple?a=1&key=s3cr3t#frag") == "https://***@idx.example/simple?a=***&key=***#***"
    assert indexes.mask("https://idx.example/simple") == "https://idx.example/simple"
    settings = indexes.host_settings([], {"PIP_INDEX_URL": "https://idx.example/simple?token=abc",
                                          "PIP_EXTRA_INDEX_URL": "https://x.example/simple?access_token=zzz"})
    assert "abc" not in " ".join(settings.urls()) and "zzz" not in " ".join(settings.urls())
    indexes.write_settings(tmp_path / "s", settings)
    assert "abc" not in (tmp_path / "s" / "indexes.txt").read_text()
    with pytest.raises(UsageError) as info:
        indexes.host_settings([], {"PIP_INDEX_URL": "ftp://idx.example/simple?token=abc"})
    assert "abc" not in str(info.value) and "token=***" in str(info.value)


class TwoSteps(Block):
    """Scripts of one block: two as root, then one as the user, then an argv step."""

    @hookimpl
    def contribute_dockerfile(self, block):
        return [Run(script="cd /opt\nexit 0\n"), Run(script="echo second"), Run(script="echo user", user="codestudio"),
                Run(argv=["/bin/echo", "argv"])]


def test_consecutive_scripts_of_a_block_are_one_run_each_in_its_own_shell(tmp_path, codestudio_blocks, codestudio_block):
    import json

    codestudio_block("two-steps", TwoSteps())
    path = write(tmp_path, """\
        id: merged
        blocks:
          - type: jupyterlab
          - type: codeenv
            name: py
            packages: [six]
          - type: two-steps
        """)
    rendered = render_template(path, blocks=codestudio_blocks)
    image = rendered.dockerfile.split("# [image]")[1]
    runs = [line for line in image.splitlines() if line.startswith("RUN ")]
    # JupyterLab's env; the code env with the ipykernel JupyterLab adds to it (one commit);
    # then the block's two root scripts, its user script, its argv step.
    assert len(runs) == 5
    env = json.loads(runs[1][runs[1].index(' ["') + 1:])
    assert env[:3] == ["/bin/sh", "-e", "-c"]
    assert env[3] == ("(\n/opt/codestudio-build/bin/install-python --venv python3 /opt/codestudio/code-envs/py six\n)\n"
                      "(\n/opt/codestudio-build/bin/install-python /opt/codestudio/code-envs/py/bin/python ipykernel\n)")
    assert runs[1].startswith("RUN --mount=type=bind,from=codestudio-build-tools")
    # An exit in the first script ends its subshell only; the second still runs.
    merged = json.loads(runs[2][runs[2].index(' ["') + 1:])[3]
    assert merged == "(\ncd /opt\nexit 0\n)\n(\necho second\n)" and "--mount" not in runs[2]
    assert '"echo user"' in runs[3] and '"/bin/echo", "argv"' in runs[4]
    # Failures still name the block: every step of the merged RUN is the block's.
    step = next(s for s in rendered.steps if "echo second" in s.instruction)
    assert (step.block_index, step.block_type) == (2, "two-steps")


def test_the_tools_image_is_made_once_by_concurrent_builds(codestudio_home, monkeypatch):
    """Two builds finding no tools image: one makes it (under the lock), the other waits and uses it."""
    import threading
    import time

    from codestudio.images import tools
    from codestudio.images.progress import Reporter

    stored: dict[str, str] = {}
    made = []

    def build(installer, base_id, name, reporter):
        made.append(name)
        time.sleep(0.3)  # long enough for the other build to queue on the lock
        stored[name] = "f" * 64
        return stored[name]

    monkeypatch.setattr(tools.containers, "image_id", lambda ref: stored.get(ref))
    monkeypatch.setattr(tools, "_build", build)
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        tools.ensure_tools_image("uv", "e" * 64, Reporter("t", quiet=True)))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert made == [buildenv.tools_image("uv", "e" * 64)] and results == ["f" * 64] * 2


def test_parallel_stages_are_off_unless_the_template_or_the_data_dir_asks(tmp_path, codestudio_home,
                                                                         codestudio_blocks, codestudio_block):
    """Measured on two cores, the stages' copies cost more than their overlap saves: serial is the default."""
    from codestudio.errors import UsageError
    from codestudio.render import render_template

    codestudio_block("staged-tool", StagedTool())
    body = "blocks:\n  - type: staged-tool\n  - type: staged-tool\n"
    plain = tmp_path / "plain.yaml"
    plain.write_text("id: plain\n" + body)
    assert "codestudio-block-" not in render_template(plain, blocks=codestudio_blocks).dockerfile
    settings = codestudio_home / "config" / "build.toml"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text("parallel_stages = true\n")
    assert "AS codestudio-block-01" in render_template(plain, blocks=codestudio_blocks).dockerfile
    off = tmp_path / "serial.yaml"
    off.write_text("id: serial\nbuild:\n  parallel_stages: false\n" + body)
    assert "codestudio-block-" not in render_template(off, blocks=codestudio_blocks).dockerfile
    settings.write_text('parallel_stages = "yes"\n')
    with pytest.raises(UsageError, match=r"build\.toml: parallel_stages = 'yes': use true or false"):
        render_template(plain, blocks=codestudio_blocks)
