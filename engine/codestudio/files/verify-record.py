"""codestudio build tool: check installed files against their distributions' RECORD (stdlib only).

    python verify-record.py SINCE

Run with an environment's own interpreter after an install. For every
distribution in its site-packages whose ``.dist-info`` changed at or after
SINCE (seconds since the epoch), each file RECORD lists with a hash must
have that hash. Prints the names of distributions with a file that does not
match (one per line) and exits 1 if there is any, so a damaged download
cache entry is found before it becomes part of an image.
"""

import base64
import csv
import hashlib
import os
import sys
import sysconfig


def bad_distributions(since: float) -> list[str]:
    bad = []
    paths = sysconfig.get_paths()
    for root in dict.fromkeys(paths[key] for key in ("purelib", "platlib")):  # often one folder
        if not os.path.isdir(root):
            continue
        for name in sorted(os.listdir(root)):
            info = os.path.join(root, name)
            if not name.endswith(".dist-info") or os.stat(info).st_mtime < since:
                continue
            dist = name[: -len(".dist-info")].rsplit("-", 1)[0]
            if dist not in bad and not _intact(root, os.path.join(info, "RECORD")):
                bad.append(dist)
    return bad


def _intact(root: str, record: str) -> bool:
    try:
        with open(record, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except OSError:
        return True  # no RECORD: nothing to check against
    for row in rows:
        if len(row) < 2 or not row[1].startswith("sha256="):
            continue
        path = os.path.normpath(os.path.join(root, row[0]))
        try:
            with open(path, "rb") as f:
                digest = hashlib.file_digest(f, "sha256") if hasattr(hashlib, "file_digest") else _digest(f)
        except OSError:
            return False
        if base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode() != row[1][len("sha256="):]:
            return False
    return True


def _digest(f):
    digest = hashlib.sha256()
    for chunk in iter(lambda: f.read(1 << 20), b""):
        digest.update(chunk)
    return digest


if __name__ == "__main__":
    found = bad_distributions(float(sys.argv[1]))
    for dist in found:
        print(dist)
    sys.exit(1 if found else 0)
