"""What every studio transition shares: the pod set's name, the studio lock, who may act, removing pods.

Nothing here changes a studio's state; :mod:`.start`, :mod:`.stop`,
:mod:`.reconcile` and :mod:`.delete` do, each holding :func:`studio_lock`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from codestudio.access import Identity
from codestudio.errors import PermissionDenied
from codestudio.locks import file_lock
from codestudio.runtime.base import Runtime
from codestudio.runtime.current import get_runtime
from codestudio.runtime.model import Studio


def runtime_instance() -> str:
    """What makes this data dir's pods distinct from another data dir's on the same host."""
    from codestudio.home import data_dir

    return str(data_dir())


def pod_set_name(studio: Studio) -> str:
    """The name of the studio's pod set (its Deployment): unique per studio and data dir."""
    from codestudio.render import kube_name

    return kube_name(studio.project, studio.id, runtime_instance())


def studio_pod(studio: Studio, runtime: Runtime | None = None) -> str | None:
    """The name of the studio's pod if one exists (running or not)."""
    pods = (runtime or get_runtime()).pods(pod_set_name(studio))
    return pods[0].name if pods else None


def log_message(msg: str) -> None:
    from codestudio.text import printable

    # Messages carry names from studios (synced file names): escape control characters.
    print(printable(msg, keep="\n\t"), file=sys.stderr, flush=True)


def lock_path(studio_id: str) -> Path:
    from codestudio.home import data_dir

    return data_dir() / "locks" / f"studio-{studio_id}.lock"


@contextmanager
def studio_lock(studio_id: str) -> Iterator[None]:
    with file_lock(lock_path(studio_id),
                   waiting=lambda: log_message(f"waiting for another command on studio {studio_id} to finish")):
        yield


def check_actor(who: Identity, studio: Studio, what: str) -> None:
    if who.name != studio.owner and not who.is_admin:
        raise PermissionDenied(f"studio {studio.id} belongs to {studio.owner}; {who.name} may not {what} it")


def _save_logs(studio: Studio, pod: str, reason: str, runtime: Runtime) -> Path | None:
    target = studio.logs_dir / f"{time.strftime('%Y%m%dT%H%M%S')}-{reason}.log"
    return target if runtime.save_logs(pod, target) else None


def remove_pods(studio: Studio, reason: str, runtime: Runtime, *, pods=None) -> Path | None:
    """Save the logs of the studio's pods (if any), then remove them; the saved log file or None.

    ``pods``: the studio's pods if the caller just listed them (one runtime call less).
    """
    name = pod_set_name(studio)
    saved = None
    for pod in runtime.pods(name) if pods is None else pods:
        saved = _save_logs(studio, pod.name, reason, runtime) or saved
    runtime.stop(name)
    return saved
