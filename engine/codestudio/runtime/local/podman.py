"""The local runtime's container operations: run a played manifest, remove pods, exec, logs.

Every call goes through :mod:`codestudio.containers` (the engine's
containers.conf: runc, cgroupfs, ulimits); the arguments of ``podman run``
come from :mod:`.adapt`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

from codestudio import containers
from codestudio.errors import RuntimeFailure
from codestudio.runtime.local.adapt import env_file_text, pod_name, run_args


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by this user only (it may hold a guard secret)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(text)


def fast_yaml():
    """PyYAML and its libyaml (C) loader and dumper where present: 5-7x faster than the pure-Python ones."""
    import yaml

    return yaml, getattr(yaml, "CSafeLoader", yaml.SafeLoader), getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def play(manifest_path: Path, *, docs: list[dict] | None = None, timeout: float = 300) -> None:
    """Run the pod of the adapted manifest at ``manifest_path``; on failure nothing it created is left behind.

    ``docs``: the manifest as just written there (saves reading it back).
    Its env goes through ``<manifest>.env`` (0600, removed again once podman
    has read it: podman keeps the values in its root-only container config).
    """
    containers.require_tools("slirp4netns")  # podman only recommends it; the network depends on it
    if docs is None:
        yaml, loader, _ = fast_yaml()
        docs = [d for d in yaml.load_all(manifest_path.read_text(), Loader=loader) if d]
    env_file = manifest_path.with_suffix(".env")
    write_private(env_file, env_file_text(docs))
    try:
        proc = containers.podman(*run_args(docs, env_file=env_file), check=False, timeout=timeout)
    finally:
        env_file.unlink(missing_ok=True)
    if proc.returncode != 0:
        down(manifest_path)
        raise RuntimeFailure(f"podman run failed:\n{proc.stderr.strip()}")


def down(manifest_path: Path | None, pod: str | None = None, *, grace: float = 10) -> None:
    """Remove the studio's pod (named ``pod``, or after ``manifest_path``): :func:`remove_pods`."""
    pod = pod or (pod_name(Path(manifest_path).stem) if manifest_path is not None else None)
    if pod:
        remove_pods([pod], grace=grace)


def remove_pods(pods: list[str], *, grace: float = 10, in_pods: Iterable[str] = ()) -> None:
    """Stop ``pods`` (SIGTERM, SIGKILL after ``grace`` seconds), then remove them; missing ones are skipped.

    The runner stops its entrypoints and exits by itself within its own grace
    (docs/runner.md), so a stop usually takes a fraction of a second.
    ``in_pods``: those of ``pods`` that are real podman pods (played by
    ``kube play`` before the local runtime ran containers): their pods go too.
    One ``podman rm --force --time GRACE`` per call: for a container it sends
    SIGTERM and waits the grace (measured on podman 4.3: 0.36 s against
    0.57 s for ``stop`` then ``rm``); ``pod rm -f`` and ``kube down`` of a
    running pod kill with no grace at all (docs/runtimes.md).
    """
    if not pods:
        return
    names = [f"{pod}-studio" for pod in pods]
    containers.podman("rm", "--ignore", "--force", "--time", str(max(0, round(grace))), *names, check=False,
                      timeout=grace + 120)
    legacy = [pod for pod in pods if pod in set(in_pods)]
    if legacy:
        containers.podman("pod", "rm", "--ignore", "-f", *legacy, check=False, timeout=120)


def pod_exists(pod: str) -> bool:
    """Whether the pod's container exists (running or not)."""
    return containers.podman("container", "exists", f"{pod}-studio", check=False).returncode == 0


def container_running(container: str) -> bool:
    proc = containers.podman("container", "inspect", "--format", "{{.State.Running}}", container, check=False)
    return proc.returncode == 0 and proc.stdout.strip() == "true"


def save_logs(container: str, target: Path) -> bool:
    """Write the container's logs to ``target``; False if there is no such container."""
    target.parent.mkdir(parents=True, exist_ok=True)
    argv = containers.podman_command("logs", container)
    with open(target, "wb") as out:
        proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=containers.podman_env())
    if proc.returncode != 0:
        target.unlink(missing_ok=True)
        return False
    return True


def logs_command(container: str, *, follow: bool = False, tail: int | None = None) -> list[str]:
    args = ["logs"]
    if follow:
        args.append("--follow")
    if tail is not None:
        args += ["--tail", str(tail)]
    return containers.podman_command(*args, container)


def exec_command(container: str, argv: list[str], *, user: str | None = "codestudio", detach: bool = False,
                 interactive: bool = False) -> list[str]:
    args = ["exec"]
    if detach:
        args.append("--detach")
    if interactive:
        args.append("--interactive")
    if user:
        args += ["--user", user]
    return containers.podman_command(*args, container, *argv)


def exec_run(container: str, argv: list[str], *, user: str | None = "codestudio", timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(exec_command(container, argv, user=user), capture_output=True, text=True,
                          env=containers.podman_env(), timeout=timeout)


def leftover_pods(prefix: str = "cs-") -> list[str]:
    """Pods whose name starts with ``prefix`` (tests and ``doctor``-style checks)."""
    proc = containers.podman("ps", "-a", "--format", "{{.Names}}", check=False)
    return [n.removesuffix("-studio") for n in proc.stdout.split() if n.startswith(prefix) and n.endswith("-pod-0-studio")]
