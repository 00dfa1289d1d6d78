"""Which :class:`~codestudio.runtime.base.Runtime` this process drives.

:func:`get_runtime` is the one place that picks it, from the data dir's
runtime setting (``<data dir>/runtime.json``, ``codestudio runtime set``):
the local (podman) runtime by default, the Kubernetes runtime when set.
Unit tests install a fake with :func:`use_runtime`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from codestudio.runtime.base import Runtime

_override: Runtime | None = None
#: One Kubernetes runtime per (data dir, setting) in a process: it holds the API client.
_cache: dict[tuple, Runtime] = {}


def get_runtime() -> Runtime:
    """The runtime of this data dir."""
    if _override is not None:
        return _override
    from codestudio.home import data_dir
    from codestudio.runtime.kubernetes.settings import load

    home = data_dir()
    settings = load(home)
    if settings.runtime == "kubernetes":
        key = (str(home), settings)
        if key not in _cache:
            from codestudio.runtime.kubernetes.runtime import KubernetesRuntime

            _cache[key] = KubernetesRuntime(settings, data_dir=home)
        return _cache[key]
    from codestudio.runtime.local import LocalRuntime

    return LocalRuntime(home)


@contextmanager
def use_runtime(runtime: Runtime) -> Iterator[Runtime]:
    """Drive every lifecycle call in the block with ``runtime`` (tests)."""
    global _override
    previous, _override = _override, runtime
    try:
        yield runtime
    finally:
        _override = previous
