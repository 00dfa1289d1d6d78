#!/usr/bin/env python3
"""codestudio vs the devcontainers CLI building the same image, side by side, in one process.

The image: JupyterLab 4.6.6 in its own venv plus one code env with ``six``
registered as a kernel, on the codestudio base image, with the same storage
driver (both tools use the host's container storage). codestudio builds the
template (uv, download cache, parallel stages); the devcontainers CLI (from
npm, installed into a cached prefix) builds a Dockerfile doing the same with
pip, through podman (``--docker-path podman``), with the host CA bundle lent
to its RUN steps as codestudio does.

Cases, each the median of ``--rounds`` rounds (the order of the tools
rotates between rounds):

- cold: no layer cache (``--no-cache``) and no download cache
  (``codestudio cache clear``; the Dockerfile's pip uses ``--no-cache-dir``);
- add one package to the code env (``idna``), after a warm build;
- no change.

A third column is the floor under both: plain ``buildah bud --layers`` of
the fewest steps that make the same environments with uv (one RUN per venv,
the kernelspec written in the code env's RUN, uv's cache on a host folder,
nothing else: no pip in the venvs, no checks of the installed files, no
runner, no labels), with the build tools image's uv. Its ratio to the
devcontainers CLI is the best any buildah-based builder can reach here; the
codestudio/floor ratio is what codestudio adds on top.

Then the data-science example (VS Code + JupyterLab + Streamlit on a code
env) built cold by codestudio with its independent blocks as parallel
stages (``build: {parallel_stages: true}``) and serially (``false``, the
default), unless
``--no-data-science``.

A codestudio build returns once buildah has tagged the image; buildah then
removes its step containers in the background. That clean-up is waited for
(untimed) before the next build, so that no tool pays for another's.

``--timeline`` prints, after the table, the per-step timeline of the last
cold codestudio build (from its ``timeline.txt``: each buildah line with the
seconds since buildah started), condensed to steps, uv's summary lines and
the end.

``--small`` replaces JupyterLab by nothing (only the code env with six and
ipykernel) and skips the data-science case: a quick check that the script
works. Needs root, buildah, podman, npm and PyPI. Uses a temporary data dir;
removes the images it built.

    python bench/builds.py --rounds 3
    python bench/builds.py --rounds 1 --small
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEVCONTAINERS_VERSION = "0.89.0"
REPO = Path(__file__).resolve().parents[1]
def env_name(name: str) -> str:
    """The code env's name (so its path), the round's own: the add-one-package case must not be
    answered by a layer an earlier round or run left in the machine's layer cache."""
    return "py-" + name.rsplit("-", 2)[-2] + "-" + name.rsplit("-", 1)[-1]


def kernel_json(env: str) -> str:
    return json.dumps({"argv": [f"/opt/codestudio/code-envs/{env}/bin/python", "-m", "ipykernel_launcher", "-f",
                                "{connection_file}"], "display_name": env, "language": "python"})


def template_text(template_id: str, packages: list[str], small: bool, serial: bool = False) -> str:
    env = env_name(template_id)
    blocks = "" if small else "  - type: jupyterlab\n"
    if small:
        packages = [*packages, "ipykernel"]
    build = "build:\n  parallel_stages: false\n" if serial else ""
    return (f"id: {template_id}\n{build}blocks:\n{blocks}"
            f"  - type: codeenv\n    name: {env}\n    packages: [{', '.join(packages)}]\n")


FLOOR_SCRIPT = """\
set -e
export UV_PYTHON_DOWNLOADS=never UV_NO_PROGRESS=1 UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_SYSTEM_CERTS=1 \\
    UV_NO_CONFIG=1 UV_CACHE_DIR=/var/cache/bench-uv
prefix=$1; shift
python3 -m venv --without-pip "$prefix"
/opt/codestudio-build/uv/bin/uv pip install --python "$prefix/bin/python" "$@"
"""


def floor_dockerfile_text(env: str, packages: list[str], small: bool) -> str:
    run = "RUN --mount=type=bind,from=tools,source=/opt/codestudio-build,target=/opt/codestudio-build sh /tmp/uv-env.sh"
    lines = ["ARG BASE", "ARG TOOLS", "FROM ${TOOLS} AS tools", "FROM ${BASE}", "USER root",
             "COPY uv-env.sh /tmp/uv-env.sh"]
    if not small:
        lines.append(f"{run} /opt/codestudio/jupyterlab jupyterlab==4.6.6")
    kernel = ("" if small else f" && mkdir -p /opt/codestudio/jupyterlab/share/jupyter/kernels/{env} && "
              f"echo '{kernel_json(env)}' > /opt/codestudio/jupyterlab/share/jupyter/kernels/{env}/kernel.json")
    lines.append(f"{run} /opt/codestudio/code-envs/{env} {' '.join(packages)} ipykernel{kernel}")
    return "\n".join(lines) + "\n"


def dockerfile_text(env: str, base: str, packages: list[str], small: bool) -> str:
    lines = [f"FROM {base}", "ARG PIP_CERT=/etc/ssl/certs/ca-certificates.crt", "USER root"]
    if not small:
        lines.append("RUN python3 -m venv /opt/codestudio/jupyterlab && /opt/codestudio/jupyterlab/bin/pip install "
                     "--no-cache-dir --disable-pip-version-check jupyterlab==4.6.6")
    lines.append(f"RUN python3 -m venv /opt/codestudio/code-envs/{env} && /opt/codestudio/code-envs/{env}/bin/pip install "
                 f"--no-cache-dir --disable-pip-version-check {' '.join(packages)} ipykernel")
    if not small:
        lines.append(f"RUN mkdir -p /opt/codestudio/jupyterlab/share/jupyter/kernels/{env} && "
                     f"echo '{kernel_json(env)}' > /opt/codestudio/jupyterlab/share/jupyter/kernels/{env}/kernel.json")
    lines.append("USER codestudio")
    return "\n".join(lines) + "\n"


def wait_for_cleanup(result: dict, timeout: float = 300) -> None:
    """Wait until buildah, which removes its step containers after codestudio returned, has exited.

    Not timed: the next tool's build would otherwise wait on the storage locks
    that clean-up holds, and pay for codestudio's work.
    """
    if not result.get("cleaning_up") or not result.get("log_path"):
        return
    log = Path(result["log_path"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "# exit status" in log.read_text(encoding="utf-8", errors="replace")[-400:]:
            return
        time.sleep(0.1)
    sys.exit(f"buildah did not finish cleaning up after {timeout:.0f} s: {log}")


def devcontainers_cli(cache: Path) -> Path:
    """The devcontainers CLI from npm, installed once into ``cache``."""
    binary = cache / "node_modules" / ".bin" / "devcontainer"
    if not binary.exists():
        subprocess.run(["npm", "install", "--prefix", str(cache), "--no-audit", "--no-fund",
                        f"@devcontainers/cli@{DEVCONTAINERS_VERSION}"], check=True, capture_output=True)
    return binary


class Tools:
    def __init__(self, work: Path, small: bool):
        from codestudio import containers
        from codestudio.images import build_base

        self.containers = containers
        self.work = work
        self.small = small
        self.base = build_base(quiet=True).image
        self.cli = str(Path(sys.executable).with_name("codestudio"))
        self.devcontainer = devcontainers_cli(Path(tempfile.gettempdir()) / "codestudio-bench-devcontainers")
        self.env = containers.tool_env()  # podman with the engine's containers.conf, as codestudio runs it
        self.images: list[str] = []
        self.last_cold: Path | None = None

    # codestudio --------------------------------------------------------
    def codestudio(self, template_id: str, packages: list[str], *, cold: bool, serial: bool = False) -> float:
        path = self.work / f"{template_id}.yaml"
        path.write_text(template_text(template_id, packages, self.small, serial))
        if cold:
            subprocess.run([self.cli, "cache", "clear"], check=True, capture_output=True)
        argv = [self.cli, "template", "build", "--json", *(["--no-cache"] if cold else []), str(path)]
        start = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"codestudio build failed:\n{proc.stderr[-3000:]}")
        self.images.append(f"localhost/codestudio/{template_id}")
        result = json.loads(proc.stdout)
        if cold:
            self.last_cold = Path(result["log_path"]).with_name("timeline.txt")
        wait_for_cleanup(result)
        return elapsed

    # devcontainers CLI ---------------------------------------------------
    def devcontainers(self, name: str, packages: list[str], *, cold: bool) -> float:
        folder = self.work / name
        (folder / ".devcontainer").mkdir(parents=True, exist_ok=True)
        (folder / ".devcontainer" / "Dockerfile").write_text(dockerfile_text(env_name(name), self.base, packages, self.small))
        options = ["--isolation", "chroot", "--pull=never"]
        ca = self.containers.host_ca_bundle()
        if ca is not None:
            options += ["-v", f"{ca}:/etc/ssl/certs/ca-certificates.crt:ro"]
        (folder / ".devcontainer" / "devcontainer.json").write_text(json.dumps(
            {"name": name, "build": {"dockerfile": "Dockerfile", "options": options}}, indent=1))
        image = f"localhost/bench-devcontainers/{name}:latest"
        argv = [str(self.devcontainer), "build", "--workspace-folder", str(folder), "--docker-path", "podman",
                "--buildkit", "never", "--image-name", image, *(["--no-cache"] if cold else [])]
        start = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, env=self.env)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"devcontainers build failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        self.images.append(image)
        return elapsed

    # the floor: plain buildah, fewest steps, uv ----------------------------
    def floor(self, name: str, packages: list[str], *, cold: bool) -> float:
        from codestudio import buildenv

        folder = self.work / f"floor-{name}"
        folder.mkdir(exist_ok=True)
        (folder / "uv-env.sh").write_text(FLOOR_SCRIPT)
        (folder / "Dockerfile").write_text(floor_dockerfile_text(env_name(name), packages, self.small))
        cache = self.work / "floor-uv-cache"
        if cold:
            shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(exist_ok=True)
        base_id = self.containers.image_id(self.base)
        tools_id = self.containers.image_id(buildenv.tools_image("uv", base_id))
        if not tools_id:
            sys.exit("the build tools image is missing: the first codestudio build makes it")
        image = f"localhost/bench-floor/{name}:latest"
        argv = ["buildah", "bud", "--layers", "--isolation", "chroot", "--pull=never",
                "--build-arg", f"BASE={base_id}", "--build-arg", f"TOOLS={tools_id}",
                "-v", f"{cache}:/var/cache/bench-uv", "-t", image, *(["--no-cache"] if cold else [])]
        ca = self.containers.host_ca_bundle()
        if ca is not None:
            argv += ["-v", f"{ca}:/etc/ssl/certs/ca-certificates.crt:ro"]
        start = time.perf_counter()
        proc = subprocess.run([*argv, "-f", str(folder / "Dockerfile"), str(folder)], capture_output=True, text=True,
                              env=self.env)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"floor build failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        self.images.append(image)
        return elapsed

    def cleanup(self) -> None:
        for ref in self.images:
            repo = ref.rsplit(":", 1)[0] if ref.count(":") else ref
            for tagged in self.containers.image_refs(repo):
                self.containers.remove_image(tagged)


TOOLS = ("codestudio", "devcontainers", "floor")


def side_by_side(tools: Tools, rounds: int) -> list[dict]:
    times: dict[tuple[str, str], list[float]] = {}
    for r in range(rounds):
        # The first codestudio build makes the build tools image the floor uses: codestudio goes
        # first in round 1; after that the order rotates.
        order = TOOLS[r % 3:] + TOOLS[:r % 3]
        name = f"bench-builds-{os.getpid()}-{r}"
        for case, packages, cold in (("cold", ["six"], True), ("add one package", ["six", "idna"], False),
                                     ("no change", ["six", "idna"], False)):
            for tool in order:
                build = {"codestudio": tools.codestudio, "devcontainers": tools.devcontainers,
                         "floor": tools.floor}[tool]
                seconds = build(name, packages, cold=cold)
                times.setdefault((case, tool), []).append(seconds)
                print(f"  round {r + 1} {case:16} {tool:14} {seconds:7.1f} s", file=sys.stderr, flush=True)
    rows = []
    for case in ("cold", "add one package", "no change"):
        ours, theirs, floor = (statistics.median(times[(case, tool)]) for tool in TOOLS)
        rows.append({"case": case, "codestudio_s": round(ours, 2), "devcontainers_s": round(theirs, 2),
                     "ratio": round(ours / theirs, 2) if theirs else None, "floor_s": round(floor, 2),
                     "floor_ratio": round(floor / theirs, 2) if theirs else None,
                     "vs_floor": round(ours / floor, 2) if floor else None, "rounds": rounds})
    return rows


def data_science(tools: Tools, rounds: int) -> list[dict]:
    source = (REPO / "examples" / "data-science.yaml").read_text()
    times: dict[str, list[float]] = {"parallel stages": [], "serial": []}
    for r in range(rounds):
        order = ["parallel stages", "serial"] if r % 2 == 0 else ["serial", "parallel stages"]
        for mode in order:
            template_id = f"bench-ds-{'par' if mode == 'parallel stages' else 'ser'}-{os.getpid()}"
            text = source.replace("id: data-science", f"id: {template_id}", 1)
            flag = "false" if mode == "serial" else "true"
            text = text.replace("blocks:", f"build:\n  parallel_stages: {flag}\nblocks:", 1)
            path = tools.work / f"{template_id}.yaml"
            path.write_text(text)
            subprocess.run([tools.cli, "cache", "clear"], check=True, capture_output=True)
            start = time.perf_counter()
            proc = subprocess.run([tools.cli, "template", "build", "--json", "--no-cache", str(path)],
                                  capture_output=True, text=True)
            seconds = time.perf_counter() - start
            if proc.returncode != 0:
                sys.exit(f"data-science build failed:\n{proc.stderr[-3000:]}")
            wait_for_cleanup(json.loads(proc.stdout))
            tools.images.append(f"localhost/codestudio/{template_id}")
            times[mode].append(seconds)
            print(f"  round {r + 1} data-science {mode:16} {seconds:7.1f} s", file=sys.stderr, flush=True)
    serial = statistics.median(times["serial"])
    return [{"case": f"data-science cold, {mode}", "seconds": round(statistics.median(t), 2),
             "vs serial": round(statistics.median(t) / serial, 2), "rounds": rounds} for mode, t in times.items()]


TIMELINE_WORDS = ("STEP ", "COMMIT", "# tagged", "# exit status", "Resolved ", "Prepared ", "Installed ", "Bytecode compiled",
                  "codestudio:")


def timeline(path: Path) -> list[str]:
    """The lines of a build's ``timeline.txt`` that show where the time goes."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if any(word in line for word in TIMELINE_WORDS):
            lines.append(line if len(line) <= 130 else line[:129] + "…")
    return lines


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small", action="store_true", help="a code env only (no JupyterLab), no data-science case")
    parser.add_argument("--no-data-science", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--timeline", action="store_true", help="print the last cold codestudio build's timeline")
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory(prefix="bench-builds-")
    os.environ["CODESTUDIO_HOME"] = str(Path(tmp.name) / "home")
    from codestudio import containers

    containers.require_tools("buildah", "podman")
    if shutil.which("npm") is None:
        sys.exit("npm is needed for the devcontainers CLI: apt-get install -y npm")
    tools = Tools(Path(tmp.name), args.small)
    load_before = load()
    try:
        rows = side_by_side(tools, args.rounds)
        ds = [] if args.small or args.no_data_science else data_science(tools, args.rounds)
    finally:
        tools.cleanup()
    result = {"side_by_side": rows, "data_science": ds, "load_before": load_before, "load_after": load(),
              "small": args.small}
    if args.timeline and tools.last_cold is not None and tools.last_cold.exists():
        result["timeline"] = timeline(tools.last_cold)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"\ncodestudio vs devcontainers CLI {DEVCONTAINERS_VERSION} ({'small: code env only' if args.small else 'JupyterLab + code env'}),"
          f" medians of {args.rounds} round(s); load average before {load_before}, after {result['load_after']}")
    print(f"{'case':18} {'codestudio s':>13} {'devcontainers s':>16} {'ratio':>7} {'floor s':>8}"
          f" {'floor ratio':>12} {'codestudio/floor':>17}")
    for row in rows:
        print(f"{row['case']:18} {row['codestudio_s']:13.1f} {row['devcontainers_s']:16.1f} {row['ratio']:7.2f}"
              f" {row['floor_s']:8.1f} {row['floor_ratio']:12.2f} {row['vs_floor']:17.2f}")
    if ds:
        print(f"\n{'case':36} {'seconds':>8} {'vs serial':>10}")
        for row in ds:
            print(f"{row['case']:36} {row['seconds']:8.1f} {row['vs serial']:10.2f}")
    if result.get("timeline"):
        print("\nlast cold codestudio build (seconds since buildah started):")
        print("\n".join(result["timeline"]))


if __name__ == "__main__":
    main()
