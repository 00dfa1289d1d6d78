#!/usr/bin/env python3
"""The standard blocks on the default base: image size, build time, start-to-ready.

For each block, a template holding just that block (``codeenv`` with one
small package; RStudio only when ``CODESTUDIO_RSTUDIO_DEB`` names its
``.deb``) is built on the codestudio base image and, for IDEs, started as a
studio behind the gateway. One table:

- image size, and what the block adds to the base image;
- build time: with ``--cold`` every layer is rebuilt (``--no-cache``);
  otherwise buildah's layer cache is used and the column shows the time of
  the block's steps that ran (``cached`` when none did), with the duration of
  the template's first build in this data dir's build history when there is
  one (set ``CODESTUDIO_HOME`` to keep a data dir across runs);
- start -> RUNNING: wall time of ``studio start`` for an existing image
  (pod creation, file push, gateway, then the block's own readiness probe
  passing), median of ``--starts`` runs. bench/runtime.py measures the
  runtime's share of it (server listening -> RUNNING) on a tiny server.

Then the layering claim of the blocks (docs/blocks.md): a template with
JupyterLab first and a code env after it is built, the code env's package
changed and built again; the second build must take every JupyterLab step
from the cache (the script exits 1 otherwise).

Needs root, buildah, podman, nginx and PyPI/npm access for cold builds.
The code-server install compiles native modules: a few minutes cold.

    python bench/blocks.py [--cold] [--blocks codeenv,jupyterlab,vscode,streamlit,rstudio] [--starts 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

TEMPLATES = {
    "codeenv": "  - type: codeenv\n    name: py\n    packages: [requests]\n",
    "jupyterlab": "  - type: jupyterlab\n",
    "vscode": "  - type: vscode\n",
    "streamlit": "  - type: streamlit\n",
    "rstudio": "  - type: rstudio\n    deb: rstudio-server.deb\n",
}
IDES = ("jupyterlab", "vscode", "streamlit", "rstudio")
LAYERS_TEMPLATE = "  - type: jupyterlab\n  - type: codeenv\n    name: ml\n    packages: [{package}]\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write(folder: Path, template_id: str, blocks: str) -> Path:
    path = folder / f"{template_id}.yaml"
    path.write_text(f"id: {template_id}\npermissions:\n  all: true\nblocks:\n{blocks}")
    return path


def _size(ref: str) -> int:
    from codestudio import containers

    return int(containers.podman("image", "inspect", "--format", "{{.Size}}", ref).stdout.strip())


def _block_steps(path: Path, block_index: int) -> list[int]:
    from codestudio.render import render_template

    return [s.number for s in render_template(path).steps if s.block_index == block_index]


def _first_build_seconds(template_id: str, this_build: int) -> float | None:
    """Duration of the template's first real build in this data dir's history, if it is not this one."""
    from codestudio.images import list_builds

    done = [b for b in list_builds(template_id)
            if b["outcome"] == "succeeded" and b["ended_at"] and b["id"] != this_build]
    if not done:
        return None
    first = min(done, key=lambda b: b["started_at"])
    return first["ended_at"] - first["started_at"]


def _build_row(name: str, path: Path, *, cold: bool, base_size: int) -> dict:
    from codestudio.templates_store import build_template

    template_id = path.stem
    t0 = time.perf_counter()
    result = build_template(str(path), no_cache=cold, quiet=True)
    wall = time.perf_counter() - t0
    own = _block_steps(path, 0)
    ran = [n for n in own if n in result.step_seconds and n not in result.cached_steps]
    if cold:
        build = f"{wall:.1f} s cold"
    elif result.outcome == "skipped":
        build = "image existed"
    elif ran:
        build = f"{sum(result.step_seconds[n] for n in ran):.1f} s ({len(ran)}/{len(own)} block steps ran)"
    else:
        build = "cached"
    first = _first_build_seconds(template_id, result.build_id)
    if not cold and first is not None:
        build += f"; first build here {first:.1f} s"
    size = _size(result.image)
    return {"block": name, "image": result.image, "size": size, "adds": size - base_size, "build": build, "ready": ""}


def _start_times(who, template_id: str, runs: int) -> list[float]:
    from codestudio.projects import ensure_project
    from codestudio.runtime import studios as rts

    ensure_project(who, "BENCH")
    studio = rts.create_studio(who, "BENCH", f"{template_id}-ready", template_id)
    times = []
    try:
        for _ in range(runs):
            t0 = time.perf_counter()
            rts.start_studio(who, studio.id, timeout=600, quiet=True)
            times.append(time.perf_counter() - t0)
            rts.stop_studio(who, studio.id, quiet=True)
    finally:
        rts.delete_studio(who, studio.id, force=True)
    return times


def _layering(folder: Path) -> tuple[str, bool]:
    """Build JupyterLab + code env, change the env, rebuild: are JupyterLab's steps all cached?"""
    from codestudio.templates_store import build_template

    path = folder / "bench-blocks-layers.yaml"
    path.write_text("id: bench-blocks-layers\nblocks:\n" + LAYERS_TEMPLATE.format(package="six==1.16.0"))
    build_template(str(path), quiet=True)
    path.write_text("id: bench-blocks-layers\nblocks:\n" + LAYERS_TEMPLATE.format(package="six==1.17.0"))
    t0 = time.perf_counter()
    second = build_template(str(path), quiet=True)
    wall = time.perf_counter() - t0
    lab_steps = _block_steps(path, 0)
    env_steps = _block_steps(path, 1)
    ok = second.outcome == "succeeded" and set(lab_steps) <= set(second.cached_steps) and not set(env_steps) <= set(second.cached_steps)
    note = (f"rebuild after a code env change: {wall:.1f} s, JupyterLab steps {lab_steps} "
            f"{'all cached' if set(lab_steps) <= set(second.cached_steps) else 'REBUILT'}, "
            f"code env steps ran: {sorted(set(env_steps) - set(second.cached_steps))}")
    return note, ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold", action="store_true", help="rebuild every layer (--no-cache): real cold build times")
    parser.add_argument("--blocks", default=",".join(TEMPLATES), help="comma-separated block types")
    parser.add_argument("--starts", type=int, default=1, help="studio starts measured per IDE")
    parser.add_argument("--keep-images", action="store_true", help="keep the bench templates' images")
    args = parser.parse_args()
    wanted = [b for b in args.blocks.split(",") if b]
    unknown = set(wanted) - set(TEMPLATES)
    if unknown:
        parser.error(f"unknown block(s): {', '.join(sorted(unknown))}")

    tmp = None
    if not os.environ.get("CODESTUDIO_HOME"):
        tmp = tempfile.TemporaryDirectory(prefix="bench-blocks-")
        os.environ["CODESTUDIO_HOME"] = tmp.name
    os.environ.setdefault("CODESTUDIO_GATEWAY_PORT", str(_free_port()))

    from codestudio import containers
    from codestudio.access import identify
    from codestudio.images import build_base
    from codestudio.runtime import studios as rts
    from codestudio.templates_store import add_template

    who = identify()
    base = build_base(quiet=True)
    base_size = _size(base.image)
    rows: list[dict] = []
    notes: list[str] = []
    ok = True
    built: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="bench-blocks-templates-"))
    try:
        for name in wanted:
            template_id = f"bench-block-{name}"
            if name == "rstudio":
                deb = os.environ.get("CODESTUDIO_RSTUDIO_DEB")
                if not deb or not Path(deb).is_file():
                    rows.append({"block": name, "size": None, "adds": None, "build": "not measured: set CODESTUDIO_RSTUDIO_DEB to its .deb", "ready": ""})
                    continue
                shutil.copy(deb, folder / "rstudio-server.deb")
            path = _write(folder, template_id, TEMPLATES[name])
            add_template(who, path)
            row = _build_row(name, path, cold=args.cold, base_size=base_size)
            built.append(template_id)
            if name in IDES:
                times = _start_times(who, template_id, args.starts)
                row["ready"] = f"{statistics.median(times):.1f} s" + (f" (min {min(times):.1f})" if len(times) > 1 else "")
            rows.append(row)
            print(f"  {name}: done", file=sys.stderr, flush=True)
        note, layering_ok = _layering(folder)
        built.append("bench-blocks-layers")
        notes.append(("layering (JupyterLab, then a code env)", note))
        ok = ok and layering_ok
    finally:
        rts._gateway().stop()
        if not args.keep_images:
            for template_id in built:
                for ref in containers.image_refs(f"localhost/codestudio/{template_id}"):
                    containers.remove_image(ref)
        shutil.rmtree(folder, ignore_errors=True)
        if tmp:
            tmp.cleanup()

    def mb(n):
        return "" if n is None else f"{n / 1e6:.0f} MB"

    print(f"base image {base.image}: {base_size / 1e6:.0f} MB")
    header = ("block", "image size", "adds to base", "build", "start -> RUNNING")
    table = [header] + [(r["block"], mb(r["size"]), mb(r["adds"]), r["build"], r["ready"]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for key, note in notes:
        print(f"{key}: {note}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
