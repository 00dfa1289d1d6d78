"""Which :class:`~codestudio.runtime.base.Runtime` this process drives.

:func:`get_runtime` is the one place that picks it: the local (podman)
runtime for now; the Kubernetes runtime will be chosen here from the data
dir's ``runtime`` setting. Unit tests install a fake with :func:`use_runtime`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from codestudio.runtime.base import Runtime

_override: Runtime | None = None


def get_runtime() -> Runtime:
    """The runtime of this data dir."""
    if _override is not None:
        return _override
    from codestudio.runtime.local import LocalRuntime

    return LocalRuntime()


@contextmanager
def use_runtime(runtime: Runtime) -> Iterator[Runtime]:
    """Drive every lifecycle call in the block with ``runtime`` (tests)."""
    global _override
    previous, _override = _override, runtime
    try:
        yield runtime
    finally:
        _override = previous
