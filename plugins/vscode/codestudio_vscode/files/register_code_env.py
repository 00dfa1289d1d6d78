"""Merge one code env into the workspace's .vscode/settings.json and launch.json.

Run at build time by the vscode block, once per code env, in whichever order
code envs are announced: each run reads what earlier runs wrote and adds or
replaces only this env's entries, so the result does not depend on order and
running it twice changes nothing.

usage: python3 register_code_env.py VSCODE_DIR NAME LABEL PYTHON
       python3 register_code_env.py VSCODE_DIR NAME LABEL --r R LIBRARY

An R env sets the R extension's interpreter (``r.rterm.linux``, ``r.rpath.linux``)
and adds its library to ``r.libPaths``; it gets no launch configuration.
"""

import json
import os
import sys

STUDIO_UID = 1000


def load(path, default):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return default


def save(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=4, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
    chown(path)


def chown(path):
    # Run as root at build time: the files belong to the studio user.
    if os.geteuid() == 0:
        os.chown(path, STUDIO_UID, STUDIO_UID)


def main_r(folder, name, label, r, library):
    os.makedirs(folder, exist_ok=True)
    chown(folder)
    settings_path = os.path.join(folder, "settings.json")
    settings = load(settings_path, {})
    settings["r.rterm.linux"] = r
    settings["r.rpath.linux"] = r
    paths = settings.setdefault("r.libPaths", [])
    if library not in paths:
        paths.append(library)
    envs = settings.setdefault("codestudio.codeEnvs", {})
    envs[name] = {"label": label, "language": "r", "r": r, "library": library}
    save(settings_path, settings)


def main(folder, name, label, python):
    os.makedirs(folder, exist_ok=True)
    chown(folder)
    settings_path = os.path.join(folder, "settings.json")
    settings = load(settings_path, {})
    # The first code env registered is the default interpreter.
    settings.setdefault("python.defaultInterpreterPath", python)
    envs = settings.setdefault("codestudio.codeEnvs", {})
    envs[name] = {"label": label, "python": python}
    # Let the Python extension discover every env as an interpreter: the
    # folder holding the env (python = <parent>/<env>/bin/python).
    parent = os.path.dirname(os.path.dirname(os.path.dirname(python)))
    settings.setdefault("python.venvPath", parent)
    folders = settings.setdefault("python.venvFolders", [])
    if parent not in folders:
        folders.append(parent)
    save(settings_path, settings)

    launch_path = os.path.join(folder, "launch.json")
    launch = load(launch_path, {"version": "0.2.0", "configurations": []})
    config_name = f"Python: current file ({label})"
    configs = [c for c in launch.get("configurations", []) if c.get("codestudioCodeEnv") != name]
    configs.append(
        {
            "name": config_name,
            "type": "debugpy",
            "request": "launch",
            "program": "${file}",
            "console": "integratedTerminal",
            "python": python,
            "justMyCode": True,
            "codestudioCodeEnv": name,
        }
    )
    launch["configurations"] = configs
    save(launch_path, launch)


if __name__ == "__main__":
    if len(sys.argv) > 4 and sys.argv[4] == "--r":
        main_r(*sys.argv[1:4], *sys.argv[5:7])
    else:
        main(*sys.argv[1:5])
