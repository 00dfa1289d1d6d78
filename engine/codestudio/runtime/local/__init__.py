"""The local runtime's podman side: adapt the Deployment, run its pod's container, remove it.

- :mod:`.adapt` -- the Deployment adapted for this machine (:data:`ADAPTATIONS`)
  and the ``podman run`` arguments of its pod
- :mod:`.podman` -- container operations: run, remove, exec, logs
- :mod:`.ports` -- free loopback ports
- :mod:`.runtime` -- :class:`~codestudio.runtime.local.runtime.LocalRuntime`

Their public names are importable from here.

Studios run from the same Deployment manifest the Kubernetes runtime applies
(:func:`codestudio.render.kubernetes_manifest`). :func:`adapt_for_podman` is
the one place where it is changed for this machine, and :func:`run_args` the
one place that turns the adapted pod into ``podman run`` arguments; every
adaptation is listed in :data:`ADAPTATIONS` and in docs/runtimes.md.

Each pod is one container (``podman run -d``), not a ``podman kube play``
pod: kube play adds an infra container and a pod to every start, which cost
0.2-0.3 s of CPU per start, most of what ten concurrent starts wait for
(measured: docs/runtimes.md). The played (adapted) manifest is still
written next to the pod set (0600), and is what :func:`play` runs.
All podman calls go through :mod:`codestudio.containers` (engine-owned
containers.conf: runc, cgroupfs, ulimits).
"""

from __future__ import annotations

from codestudio.runtime.local.adapt import (  # noqa: F401 (re-exported: the local runtime's public names)
    ADAPTATIONS,
    NETWORK,
    adapt_for_podman,
    container_name,
    env_file_text,
    pod_name,
    relabel,
    run_args,
)
from codestudio.runtime.local.podman import (  # noqa: F401 (re-exported)
    container_running,
    down,
    exec_command,
    exec_run,
    fast_yaml,
    leftover_pods,
    logs_command,
    play,
    pod_exists,
    remove_pods,
    save_logs,
    write_private,
)
from codestudio.runtime.local.ports import LOOPBACK, free_ports, ports_taken  # noqa: F401 (re-exported)
from codestudio.runtime.local.runtime import (  # noqa: F401 (re-exported)
    PLAY_ATTEMPTS,
    PODSET_LABEL,
    SPEC_FILE,
    LocalRuntime,
    instance_id,
    replica_name,
)
