"""What ``/proc`` says about nginx's master and workers, and reading nginx's logs from an offset."""

from __future__ import annotations

from pathlib import Path


def is_nginx_master(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X") and cmdline.startswith(b"nginx: master process")


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[-1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def accepting(worker: int) -> bool:
    """A worker that still takes new connections: alive and not yet shutting down."""
    try:
        cmdline = Path(f"/proc/{worker}/cmdline").read_bytes()
        state = Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X") and b"shutting down" not in cmdline


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read(65536).decode(errors="replace")
    except OSError:
        return ""


def shutting_down(worker: int) -> bool:
    try:
        return b"shutting down" in Path(f"/proc/{worker}/cmdline").read_bytes()
    except OSError:
        return False


def start_time(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def tail(path: Path, lines: int = 10) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no error log)"
