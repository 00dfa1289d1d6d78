"""files/verify-record.py: installed files checked against their RECORD, in a real (empty) venv."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import time
import venv
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "engine" / "codestudio" / "files" / "verify-record.py"


def _hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _install(site: Path, name: str, files: dict[str, bytes], recorded: dict[str, bytes] | None = None) -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    rows = []
    for rel, data in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_bytes(data)
        rows.append(f"{rel},{_hash((recorded or files).get(rel, data))},{len(data)}")
    rows.append(f"{info.name}/RECORD,,")
    (info / "RECORD").write_text("\n".join(rows) + "\n")


def test_names_each_damaged_distribution_once_and_only_those(tmp_path):
    env = tmp_path / "env"
    venv.EnvBuilder(with_pip=False).create(env)
    python = env / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    since = time.time() - 1
    _install(site, "good", {"good/__init__.py": b"x = 1\n"})
    _install(site, "bad", {"bad/__init__.py": b"damaged\n", "bad/more.py": b"fine\n"},
             recorded={"bad/__init__.py": b"original\n"})
    _install(site, "missing", {"missing/__init__.py": b"y = 2\n"})
    (site / "missing" / "__init__.py").unlink()
    proc = subprocess.run([python, SCRIPT, str(since)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stdout.split() == ["bad", "missing"]
    # Distributions installed before SINCE are not looked at.
    proc = subprocess.run([python, SCRIPT, str(time.time() + 60)], capture_output=True, text=True)
    assert (proc.returncode, proc.stdout) == (0, "")
