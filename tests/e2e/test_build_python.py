"""Python envs built with uv (default) and pip (fallback), on the real base image.

Small on purpose (one code env with one small package and its dependency):
what differs between installers is proven on it; full-size images are the
standard blocks' own e2e tests.
"""

from __future__ import annotations

import os
import uuid

import pytest

from codestudio import containers
from codestudio.images import BuildFailed
from codestudio.templates_store import build_template

pytestmark = pytest.mark.e2e

# python-dateutil pins nothing of six: the resolver picks six's version itself.
PACKAGES = "[python-dateutil==2.9.0.post0]"


def run_in(image: str, *command: str) -> str:
    return containers.podman("run", "--rm", "--network", "none", "--entrypoint", command[0], image, *command[1:]).stdout


@pytest.fixture
def code_env_template(tmp_path, debian_base, image_cleanup):
    run = uuid.uuid4().hex[:8]

    def write(name: str, build: str = "", packages: str = PACKAGES):
        template_id = f"test-py-{name}-{run}"
        image_cleanup(template_id)
        path = tmp_path / f"{name}.yaml"
        path.write_text(
            f"id: {template_id}\n{build}"
            "blocks:\n"
            "  - type: codeenv\n"
            # A name (so a path) of its own: buildah's layer cache (shared by the machine)
            # must not answer for this step, the installer has to run.
            f"    name: py-{name}-{run}\n"
            f"    packages: {packages}\n"
        )
        return path

    return write


def env_python(image: str, *args: str) -> str:
    """Run the image's one code env's interpreter (its path carries the test's unique name)."""
    return run_in(image, "sh", "-c", 'exec /opt/codestudio/code-envs/*/bin/python "$@"', "sh", *args)


def debian_base_ref() -> str:
    from codestudio.plan import default_base_image

    return default_base_image()


def freeze(image: str) -> list[str]:
    return env_python(image, "-m", "pip", "freeze", "--all").split()


def test_uv_and_pip_install_the_same_versions(code_env_template, codestudio_home):
    uv = build_template(str(code_env_template("uv")), quiet=True)
    pip = build_template(str(code_env_template("pip", build="build:\n  python_installer: pip\n")), quiet=True)
    assert freeze(uv.image) == freeze(pip.image)
    assert any(line.startswith("six==") for line in freeze(uv.image))
    log = uv.log_path.read_text()
    assert "Installed 2 packages" in log
    # uv came from the build tools image, made from the package index on this base.
    from codestudio import buildenv

    tools = buildenv.tools_image("uv", containers.image_id(debian_base_ref()))
    assert containers.image_labels(tools)[buildenv.TOOLS_LABEL] == buildenv.tools_id("uv")
    assert run_in(tools, f"{buildenv.TOOLS_DIR}/uv/bin/uv", "--version").split()[:2] == ["uv", buildenv.UV_VERSION]
    # The uv-made env has exactly the pip and setuptools python3 -m venv installs, and they work.
    reference = run_in(uv.image, "sh", "-c", "python3 -m venv /tmp/ref && /tmp/ref/bin/pip freeze --all").split()
    assert reference and [line for line in freeze(uv.image) if line.split("==")[0] in ("pip", "setuptools")] == reference
    assert env_python(uv.image, "-m", "pip", "--version").startswith("pip ")
    assert "pip" in run_in(uv.image, "sh", "-c", "ls /opt/codestudio/code-envs/*/bin/").split()
    # The installer is recorded where pip and uv record it (the image is otherwise the same).
    installer = run_in(uv.image, "sh", "-c", "cat /opt/codestudio/code-envs/*/lib/python3*/site-packages/six-*.dist-info/INSTALLER")
    assert installer.strip() == "uv"


def test_cache_is_mounted_not_baked_and_build_tools_stay_out(code_env_template, codestudio_home):
    result = build_template(str(code_env_template("cache")), quiet=True)
    cache = codestudio_home / "cache" / "build"
    wheels = [p for p in cache.rglob("*") if p.is_file() and "six" in p.name.lower()]
    assert wheels, f"uv's cache in the data dir holds nothing of six: {sorted(cache.rglob('*'))[:20]}"
    # Inside the image: no cached file, no build tool, no index settings.
    found = run_in(result.image, "sh", "-c",
                   "find /var/cache/codestudio /opt/codestudio-build /run/codestudio-build -type f 2>/dev/null | head; true")
    assert found == ""
    history = containers.image_inspect(result.image)["Docker"]["history"]
    env_step = next(h["created_by"] for h in history if "code-envs/py-" in h.get("created_by", ""))
    assert "--mount=type=cache,id=codestudio-uv" in env_step
    # Every layer's files: none under the cache or tools folders.
    layers = run_in(result.image, "sh", "-c", "ls -A /var/cache/codestudio/uv 2>/dev/null | wc -l")
    assert layers.strip() == "0"


def test_no_cache_rebuilds_the_template_not_the_build_tools(code_env_template, codestudio_home):
    from codestudio import buildenv

    path = str(code_env_template("nocache", packages="[six==1.16.0]"))
    build_template(path, quiet=True)
    tools = buildenv.tools_image("uv", containers.image_id(debian_base_ref()))
    before = containers.image_id(tools)
    again = build_template(path, no_cache=True, quiet=True)
    assert again.outcome == "succeeded" and not again.cached_steps
    # Like the base image, the tools image is engine-owned: --no-cache leaves it as it was.
    assert containers.image_id(tools) == before
    assert "FROM " + before in again.log_path.read_text()


def test_second_build_downloads_from_the_cache(code_env_template, codestudio_home):
    first = build_template(str(code_env_template("warm")), quiet=True)
    # Another template (a cold layer cache) with one more package: only that one is downloaded.
    second = build_template(str(code_env_template("warm2", packages="[python-dateutil==2.9.0.post0, six==1.16.0]")),
                            quiet=True)
    assert first.outcome == second.outcome == "succeeded"
    log = second.log_path.read_text()
    # python-dateutil comes from the cache; only six 1.16.0 (the first build resolved the newest six) is fetched.
    assert "Installed 2 packages" in log and "Prepared 1 package" in log
    assert env_python(second.image, "-c", "import six; print(six.__version__)") == "1.16.0\n"


def test_unreachable_index_names_the_block_and_the_index(code_env_template, codestudio_home, monkeypatch):
    # The tools stage comes from the layer cache once built; build it with the real settings first.
    build_template(str(code_env_template("good")), quiet=True)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    monkeypatch.setenv("PIP_INDEX_URL", "https://someone:hunter2@index.invalid/simple")
    with pytest.raises(BuildFailed) as info:
        build_template(str(code_env_template("bad-index", packages="[six==1.15.0]")), quiet=True)
    message = str(info.value)
    assert "blocks[0] (type: codeenv)" in message
    assert "package indexes: https://***@index.invalid/simple" in message
    assert "hunter2" not in message and "hunter2" not in info.value.log_path.read_text()


def test_two_concurrent_builds_share_the_cache(code_env_template, codestudio_home):
    import json
    import subprocess
    import sys
    from pathlib import Path

    cli = str(Path(sys.executable).with_name("codestudio"))
    paths = [code_env_template(name) for name in ("left", "right")]
    procs = [subprocess.Popen([cli, "template", "build", "--json", str(p)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=os.environ.copy()) for p in paths]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    for result in results:
        assert any(line.startswith("six==") for line in freeze(result["image"]))
    # One cache in the data dir served both.
    assert len(list((codestudio_home / "cache" / "build").glob("buildah-cache*/codestudio-uv"))) == 1


def test_a_damaged_cache_entry_is_downloaded_again_not_baked_in(code_env_template, codestudio_home):
    build_template(str(code_env_template("fill", packages="[six==1.16.0]")), quiet=True)
    cached = [p for p in (codestudio_home / "cache" / "build").rglob("six.py") if p.is_file()]
    assert cached, "six.py is not in uv's cache"
    for path in cached:
        path.write_text("raise SystemExit('damaged cache entry')\n")
    result = build_template(str(code_env_template("reuse", packages="[six==1.16.0]")), quiet=True)
    log = result.log_path.read_text()
    assert "damaged files from the download cache in: six" in log
    assert env_python(result.image, "-c", "import six; print(six.__version__)") == "1.16.0\n"
    # The fresh download replaced the damaged entry in the cache too.
    assert all("damaged" not in p.read_text() for p in (codestudio_home / "cache" / "build").rglob("six.py"))


def test_a_damaged_cached_pip_is_installed_again_not_baked_in(code_env_template, codestudio_home):
    # The interpreter's own pip and setuptools, which every venv gets, come from the cache too.
    build_template(str(code_env_template("seed")), quiet=True)
    cached = [p for p in (codestudio_home / "cache" / "build").rglob("pip/__init__.py") if p.is_file()]
    assert cached, "pip is not in uv's cache"
    for path in cached:
        path.write_text("raise SystemExit('damaged cache entry')\n")
    result = build_template(str(code_env_template("seed-again")), quiet=True)
    assert "damaged files from the download cache in: pip; unpacking them again" in result.log_path.read_text()
    assert env_python(result.image, "-m", "pip", "--version").startswith("pip ")
    assert all("damaged" not in p.read_text() for p in (codestudio_home / "cache" / "build").rglob("pip/__init__.py"))


def test_an_image_with_its_own_pip_conf_is_installed_with_pip(tmp_path, debian_base, image_cleanup, codestudio_home):
    run = uuid.uuid4().hex[:8]
    template_id = f"test-py-pipconf-{run}"
    image_cleanup(template_id)
    path = tmp_path / "pipconf.yaml"
    path.write_text(
        f"id: {template_id}\nblocks:\n"
        "  - type: dockerfile\n    run_as_root: true\n    statements: |\n"
        "      RUN printf '[global]\\ndisable-pip-version-check = true\\n' > /etc/pip.conf\n"
        f"  - type: codeenv\n    name: py-{run}\n    packages: [six==1.16.0]\n"
    )
    result = build_template(str(path), quiet=True)
    log = result.log_path.read_text()
    # The template's own pip configuration applies, as it did before uv.
    assert "/etc/pip.conf in the image configures pip: installing with pip" in log
    assert "Successfully installed six-1.16.0" in log
    installer = run_in(result.image, "sh", "-c", "cat /opt/codestudio/code-envs/*/lib/python3*/site-packages/six-*.dist-info/INSTALLER")
    assert installer.strip() == "pip"
