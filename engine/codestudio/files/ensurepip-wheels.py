"""codestudio build tool: the wheels ``python -m venv`` would install (stdlib only).

    python ensurepip-wheels.py

Run with the interpreter that creates an environment. Prints the ``uv pip
install`` arguments that install the wheels its ``ensurepip`` bundles (pip,
and setuptools where it still does) from their folder, one per line:
``--find-links=FOLDER`` then ``NAME==VERSION``: exactly the files and
versions ``python -m venv`` installs, as plain (not direct-URL)
installs, as ensurepip makes them. Exits 0; exits 1 when they cannot be
found (an ``ensurepip`` of another shape, or none), so that the caller falls
back to ``python -m venv``.
"""

import os
import sys


def arguments() -> list[str]:
    import ensurepip

    get = getattr(ensurepip, "_get_packages", None)
    if get is None:
        return []
    folders, requirements = [], []
    for name, package in sorted(get().items()):
        path = getattr(package, "wheel_path", None)
        if path is None and getattr(package, "wheel_name", None):
            path = os.path.join(os.path.dirname(ensurepip.__file__), "_bundled", package.wheel_name)
        version = getattr(package, "version", None)
        if not path or not version or not os.path.isfile(path) \
                or not os.path.basename(path).startswith(f"{name}-{version}-"):
            return []
        folder = os.path.dirname(path)
        if folder not in folders:
            folders.append(folder)
        requirements.append(f"{name}=={version}")
    if not requirements or any(not f or any(c.isspace() for c in f) for f in folders):
        return []
    return [f"--find-links={f}" for f in folders] + requirements


if __name__ == "__main__":
    try:
        found = arguments()
    except Exception:  # any other shape of ensurepip: the caller uses python -m venv
        found = []
    for word in found:
        print(word)
    sys.exit(0 if found else 1)
