"""``codestudio doctor``: compare the state DB with what the runtime runs, and repair.

Always (like every command that reads studio state): each studio's state is
reconciled (:func:`~codestudio.runtime.lifecycle.reconcile`), and what was
fixed is reported. With ``fix``: pod sets carrying this data dir's
codestudio labels that no studio owns (or whose studio is stopped) are
removed, their logs kept in ``<data dir>/orphans/``; a gateway that should
serve running studios but is stopped is started. Zone files are never
touched.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from codestudio.access import Identity, require_admin
from codestudio.locks import is_locked
from codestudio.runtime.current import get_runtime
from codestudio.runtime.lifecycle import lock_path, pod_set_name, reconcile
from codestudio.runtime.model import FAILED, RUNNING, STARTING, STOPPED
from codestudio.runtime.records import all_studios
from codestudio.runtime import routes
from codestudio.store import Store


@dataclass
class Finding:
    """One thing doctor found: ``fixed`` says whether it is repaired now."""

    what: str
    subject: str
    detail: str
    fixed: bool

    def to_dict(self) -> dict:
        return asdict(self)


def doctor(who: Identity, *, fix: bool = False, store: Store | None = None) -> list[Finding]:
    """Reconcile every studio and look for orphan pods and a missing gateway (admins only)."""
    require_admin(who, "run doctor")
    store = store or Store.default()
    runtime = get_runtime()
    findings: list[Finding] = []
    studios = all_studios(store)
    podsets = {ps.name: ps for ps in runtime.list()}
    for studio in studios:
        before = studio.state
        if before in (STOPPED, FAILED):
            continue
        if is_locked(lock_path(studio.id)):
            continue  # a live command is moving it; its state is true
        after = reconcile(studio, store=store, runtime=runtime,
                          pods=list(podsets[pod_set_name(studio)].pods) if pod_set_name(studio) in podsets else [])
        if after.state != before:
            findings.append(Finding("studio", studio.id, f"{before} -> {after.state}: {after.message}", True))
    # Orphans: pods no studio owns, or whose studio is stopped (nothing should run).
    owners = {pod_set_name(s): s for s in all_studios(store)}
    for podset in runtime.list():
        name = podset.name
        owner = owners.get(name)
        if owner is not None and (owner.state not in (STOPPED, FAILED) or is_locked(lock_path(owner.id))):
            continue
        pods = ", ".join(p.name for p in podset.pods) or "no pods"
        why = "no studio owns it" if owner is None else f"its studio {owner.id} is {owner.state}"
        detail = f"{pods} ({why})"
        if fix:
            _remove_orphan(runtime, podset)
            detail += "; removed, logs kept in the data dir's orphans/ folder"
        findings.append(Finding("orphan pod set", name, detail, fix))
    # The gateway: running studios are only reachable while nginx runs.
    live = [s for s in all_studios(store) if s.state in (RUNNING, STARTING)]
    gw = routes.gateway()
    if live and gw.pid() is None:
        detail = f"stopped while {len(live)} studio(s) run"
        if fix:
            gw.apply()
            detail += "; started"
        findings.append(Finding("gateway", "nginx", detail, fix))
    return findings


def _remove_orphan(runtime, podset) -> None:
    from codestudio.home import data_dir

    folder = data_dir() / "orphans" / podset.name
    for pod in podset.pods:
        runtime.save_logs(pod.name, folder / f"{time.strftime('%Y%m%dT%H%M%S')}-{pod.name}.log")
    runtime.stop(podset.name)
