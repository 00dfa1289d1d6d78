"""What a transition needs from the studio's template: its plan, its image, its sync studio and transport."""

from __future__ import annotations

from dataclasses import dataclass

from codestudio.access import may_use_project
from codestudio.runtime.base import Runtime
from codestudio.runtime.model import Studio
from codestudio.store import Store
from codestudio.types import STUDIO_USER


@dataclass
class Plan:
    template: object
    state: object
    version: int


def plan_studio(studio: Studio, store: Store) -> Plan:
    """The studio's template (its latest stored version) applied: raises NotFound if removed."""
    from codestudio.plan import plan_template
    from codestudio.templates_store import get_template

    stored = get_template(studio.template_id, store=store)
    template, state = plan_template(stored.path)
    return Plan(template, state, stored.version)


def sync_studio_of(studio: Studio, state):
    from codestudio.sync import SyncStudio, mappings_for

    mappings, exclusions = mappings_for(state)
    return SyncStudio(studio.id, studio.project, studio.owner, tuple(mappings), tuple(exclusions))


def member_mappings(studio: Studio, sync_studio, store: Store):
    """(the sync studio without project-zone mappings its owner may not sync now, the mappings left out).

    Membership is checked at every sync, not only at start: a studio whose owner
    was revoked from the project keeps running, but never reads or writes the
    project's zones again (issue 9 item 3).
    """
    import dataclasses

    from codestudio.types import zone_scope

    if may_use_project(studio.owner, studio.project, store=store):
        return sync_studio, []
    denied = [m for m in sync_studio.mappings if zone_scope(m.zone) == "project"]
    kept = tuple(m for m in sync_studio.mappings if zone_scope(m.zone) != "project")
    return dataclasses.replace(sync_studio, mappings=kept), denied


def transport_of(pod: str, runtime: Runtime):
    """The sync transport of a studio's pod: the agent through :meth:`Runtime.exec`."""
    from codestudio.sync import ExecTransport

    return ExecTransport(runtime, pod, user=STUDIO_USER)


def ensure_image(plan: Plan, *, quiet: bool, store: Store):
    """Build (or find up to date) the image of the template's current version."""
    from codestudio.images import build_rendered
    from codestudio.render import render_state

    rendered = render_state(plan.template, plan.state)
    return build_rendered(rendered, template_version=plan.version, quiet=quiet, store=store)


def report_summary(report) -> str:
    try:
        d = report.to_dict()
    except Exception:  # noqa: BLE001
        return "done"
    if isinstance(d, dict):
        keys = [k for k in ("pushed", "pulled", "deleted", "conflicts") if k in d]
        if keys:
            return ", ".join(f"{k} {d[k] if not isinstance(d[k], list) else len(d[k])}" for k in keys)
    return "done"
