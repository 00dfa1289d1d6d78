"""A stop's files: pulled into their zones, or saved to ``<studio dir>/recovery/<UTC>/`` when they cannot be.

A stop never loses unsynced files (issue 9 item 4): :func:`pull_or_save`
for a running pod, :func:`save_stopped` for a container that died;
:class:`Unsaved` when neither worked, and the pod must stay.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from codestudio.errors import RuntimeFailure
from codestudio.runtime.base import Runtime
from codestudio.runtime.lifecycle.plans import member_mappings, plan_studio, report_summary, sync_studio_of, transport_of
from codestudio.runtime.model import Studio
from codestudio.store import Store
from codestudio.types import STUDIO_HOME, STUDIO_USER


class Unsaved(RuntimeFailure):
    """The studio's files could be neither pulled nor saved: its pod must stay."""


def pull_or_save(studio: Studio, pod: str, runtime: Runtime, store: Store, say) -> str | None:
    """Pull the running studio's files into their zones, or save them to its recovery folder.

    Returns a note for the studio's message (None when all went well);
    raises :class:`Unsaved` when the files could be neither pulled nor saved.
    """
    from codestudio.errors import CodestudioError
    from codestudio.sync import SyncConflictError, pull_on_stop

    problem, unsaved, notes = None, [], []
    try:
        plan = plan_studio(studio, store)
    except CodestudioError as exc:  # template removed or no longer planning: its mappings are unknown
        problem, unsaved = f"its template cannot be read ({_first_line(exc)}), so its files were not pulled", [STUDIO_HOME]
    else:
        sync_studio, denied = member_mappings(studio, sync_studio_of(studio, plan.state), store)
        if denied:
            # A revoked owner's files may not go into the project's zones: keep them aside instead.
            unsaved += [m.target for m in denied if not m.one_way]  # one-way targets are never pulled
            notes.append(f"{studio.owner} is no longer a member of project {studio.project}, so "
                         f"{', '.join(sorted({m.zone for m in denied}))} were not pulled")
        if sync_studio.mappings:
            try:
                report = pull_on_stop(sync_studio, transport_of(pod, runtime))
                say(f"files pulled ({report_summary(report)})")
            except SyncConflictError as exc:  # both versions are kept on the server: nothing is lost
                notes.append(f"file pull: {exc}")
                say(f"warning: file pull: {exc}")
            except Exception as exc:  # noqa: BLE001 - any other failure: the studio holds the only copy
                problem = f"the file pull failed ({_first_line(exc)})"
                unsaved += [m.target for m in sync_studio.mappings if not m.one_way]
    if problem:
        notes.insert(0, problem)
    if not unsaved:
        return "; ".join(notes) or None
    why = "; ".join(notes)
    try:
        saved = _save_recovery(studio, pod, runtime, unsaved, why)
    except Exception as exc:  # noqa: BLE001
        raise Unsaved(f"{why}, and saving its files to a recovery folder failed too ({_first_line(exc)})") from None
    note = f"{why}; its files ({', '.join(_outermost(unsaved))}) were saved to {saved} before its pod was removed"
    say(f"warning: {note}")
    return note


def save_stopped(studio: Studio, pod: str, runtime: Runtime, store: Store, say) -> str | None:
    """Save the two-way mapping targets out of a container that is no longer running (:meth:`Runtime.copy_out`)."""
    from codestudio.errors import CodestudioError

    try:
        targets = [m.target for m in sync_studio_of(studio, plan_studio(studio, store).state).mappings if not m.one_way]
    except CodestudioError:
        targets = [STUDIO_HOME]
    if not targets:
        return None
    why = "its container was no longer running, so its files could not be pulled"
    try:
        saved = _save_recovery(studio, pod, runtime, targets, why, running=False)
    except Exception as exc:  # noqa: BLE001
        raise Unsaved(f"{why}, and saving them from the stopped container failed ({_first_line(exc)})") from None
    note = f"{why}; its files ({', '.join(_outermost(targets))}) were saved to {saved} before its pod was removed"
    say(f"warning: {note}")
    return note


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _outermost(paths: list[str]) -> list[str]:
    """Container paths without those inside another of them (each archived once)."""
    out: list[str] = []
    for p in sorted({p.rstrip("/") or "/" for p in paths}):
        if not any(p == q or p.startswith(q.rstrip("/") + "/") for q in out):
            out.append(p)
    return out


#: Archives the targets that exist (relative to /) to stdout; nothing to archive is not an error.
_RECOVERY_SCRIPT = (
    'cd / || exit 1; for t do shift; if [ -e "$t" ] || [ -L "$t" ]; then set -- "$@" "$t"; fi; done; '
    '[ "$#" -gt 0 ] || exit 0; exec tar -cf - "$@"'
)


def _save_recovery(studio: Studio, pod: str, runtime: Runtime, targets: list[str], why: str, *,
                   running: bool = True) -> Path:
    """Tar ``targets`` out of the pod into ``<studio dir>/recovery/<UTC>/``.

    A running pod: one ``files.tar`` (paths relative to ``/`` inside the
    studio) made by ``tar`` through :meth:`Runtime.exec`. A stopped container:
    one ``files-<n>.tar`` per target made by :meth:`Runtime.copy_out` (targets
    that do not exist are skipped). ``recovery.json`` says why, what and when.
    Only the engine's OS user can read it (0700). Raises when saving fails; the
    partial folder is removed.
    """
    root = studio.dir / "recovery"
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder, n = root / stamp, 2
    while folder.exists():
        folder, n = root / f"{stamp}-{n}", n + 1
    folder.mkdir(mode=0o700)
    paths = _outermost(targets)

    def private(p, f):
        return os.open(p, f, 0o600)

    archives: dict[str, str] = {}
    try:
        if running:
            argv = ["sh", "-c", _RECOVERY_SCRIPT, "sh", *(p.lstrip("/") or "." for p in paths)]
            proc = runtime.exec(pod, argv, user=STUDIO_USER)
            with open(folder / "files.tar", "wb", opener=private) as out:
                shutil.copyfileobj(proc.stdout, out, 1 << 20)
            err = proc.stderr.read() if proc.stderr else b""
            code = proc.wait()
            if code != 0:
                detail = err.decode(errors="replace").strip()[-300:]
                raise RuntimeFailure(f"tar in the studio exited with status {code}: {detail or 'no output'}")
            archives = {p: "files.tar" for p in paths}
        else:
            for n, path in enumerate(paths, 1):
                name = f"files-{n}.tar"
                with open(folder / name, "wb", opener=private) as out:
                    found = runtime.copy_out(pod, path, out)
                if not found:
                    (folder / name).unlink()  # the studio never made that folder
                    continue
                archives[path] = name
        (folder / "recovery.json").write_text(json.dumps({
            "studio": studio.id, "project": studio.project, "owner": studio.owner, "why": why,
            "targets": paths, "archives": archives, "saved_at": stamp,
        }, indent=2) + "\n")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder
