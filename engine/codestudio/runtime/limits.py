"""Data-dir lifecycle settings and the running-studio quotas (docs/lifecycle.md).

``<data dir>/lifecycle.json`` holds the defaults of the ``lifecycle``
block's fields (used when a template does not set them) and the quotas:
how many studios may run at once per user, per template and in total
(STARTING, RUNNING and STOPPING ones count: they hold a pod). Every field
is validated when the file is written (``codestudio lifecycle set``) and
again when it is read (a hand-edited file), naming the field; exit 2.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from codestudio.errors import RuntimeFailure, UsageError
from codestudio.quantities import duration_seconds, format_duration
from codestudio.types import Duration

FILE = "lifecycle.json"
#: How often the server's culler looks at running studios unless ``cull_interval`` says otherwise.
DEFAULT_CULL_INTERVAL = "60s"


class LifecycleSettings(BaseModel):
    """What ``codestudio lifecycle show`` prints and ``set`` changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Default ``idle_timeout`` of templates that do not set one (None: off).
    idle_timeout: Duration | None = None
    #: Default ``max_lifetime`` of templates that do not set one (None: off).
    max_lifetime: Duration | None = None
    #: How often the server checks running studios.
    cull_interval: Duration = DEFAULT_CULL_INTERVAL
    max_running_per_user: int | None = Field(default=None, ge=1, strict=True)
    max_running_per_template: int | None = Field(default=None, ge=1, strict=True)
    max_running_total: int | None = Field(default=None, ge=1, strict=True)


FIELDS = tuple(LifecycleSettings.model_fields)
QUOTA_FIELDS = ("max_running_per_user", "max_running_per_template", "max_running_total")


def settings_path(data_dir: Path | None = None) -> Path:
    from codestudio.home import data_dir as default

    return (data_dir or default()) / FILE


def _problem(exc: ValidationError, where: str) -> UsageError:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "?"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = f"unknown setting (settings: {', '.join(FIELDS)})"
        lines.append(f"{where}: field {field!r}: {message} (got {err.get('input')!r})")
    return UsageError("\n".join(lines))


def load_settings(data_dir: Path | None = None) -> LifecycleSettings:
    path = settings_path(data_dir)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return LifecycleSettings()
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: must be a JSON object of settings ({', '.join(FIELDS)})")
    try:
        return LifecycleSettings.model_validate(raw)
    except ValidationError as exc:
        raise _problem(exc, str(path)) from None


def parse_value(field: str, value: str) -> object:
    """A command-line value for ``field``: ``off`` clears it; quotas are integers."""
    if field not in FIELDS:
        raise UsageError(f"unknown setting {field!r}; settings: {', '.join(FIELDS)}")
    if value.strip().lower() in ("off", "none", ""):
        return None
    if field in QUOTA_FIELDS:
        try:
            return int(value)
        except ValueError:
            raise UsageError(f"field {field!r}: {value!r} is not a whole number") from None
    return value


def set_settings(who, changes: dict[str, str], *, data_dir: Path | None = None) -> LifecycleSettings:
    """``codestudio lifecycle set FIELD=VALUE ...`` (admins): validate all, then write atomically."""
    from codestudio.access import require_admin

    require_admin(who, "change the lifecycle settings")
    current = load_settings(data_dir).model_dump()
    for field, value in changes.items():
        current[field] = parse_value(field, value)
    if current.get("cull_interval") is None:
        current["cull_interval"] = DEFAULT_CULL_INTERVAL
    try:
        new = LifecycleSettings.model_validate(current)
    except ValidationError as exc:
        raise _problem(exc, "lifecycle set") from None
    path = settings_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(new.model_dump(), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return new


def describe(settings: LifecycleSettings) -> dict:
    """The settings for ``lifecycle show``: ``off`` for what is not set."""
    return {k: ("off" if v is None else v) for k, v in settings.model_dump().items()}


# --------------------------------------------------------------------------
# Effective policy of a studio


def effective_policy(state, settings: LifecycleSettings) -> dict[str, int | None]:
    """``{"idle_timeout": seconds or None, "max_lifetime": ...}``: the template's, else the data dir's default."""
    out: dict[str, int | None] = {}
    for field in ("idle_timeout", "max_lifetime"):
        value = getattr(state.lifecycle, field) or getattr(settings, field)
        out[field] = duration_seconds(value) if value else None
    return out


# --------------------------------------------------------------------------
# Quotas


#: The webapp states that hold their replicas' places (pods run or are being started/removed).
WEBAPP_ACTIVE_STATES = ("STARTING", "RUNNING", "UPDATING", "STOPPING")


def _holders(store, *, skip_studio: str | None = None, skip_webapp: tuple[str, str] | None = None) -> list:
    """What holds a place now: active studios (1 each) and active webapps (their replica count each)."""
    from types import SimpleNamespace

    from codestudio.runtime.model import ACTIVE_STATES

    placeholders = ", ".join("?" for _ in ACTIVE_STATES)
    with store.connect() as conn:
        studios = conn.execute(f"SELECT id, project, owner, template_id, state FROM studios WHERE state IN ({placeholders}) "
                               "AND id != ? ORDER BY project, id",
                               (*[str(s) for s in ACTIVE_STATES], skip_studio or "")).fetchall()
        webapps = conn.execute("SELECT project, id, owner, template_id, state, replicas FROM webapps WHERE state IN "
                               f"({', '.join('?' for _ in WEBAPP_ACTIVE_STATES)}) ORDER BY project, id",
                               WEBAPP_ACTIVE_STATES).fetchall()
    out = [SimpleNamespace(owner=r["owner"], template_id=r["template_id"], weight=1,
                           label=f"{r['project']}/{r['id']} ({r['owner']}, {r['state']})") for r in studios]
    out += [SimpleNamespace(owner=r["owner"], template_id=r["template_id"], weight=max(int(r["replicas"]), 1),
                            label=f"webapp {r['project']}/{r['id']} ({r['owner']}, {r['state']}, "
                                  f"{r['replicas']} replica{'s' if r['replicas'] != 1 else ''})")
            for r in webapps if skip_webapp != (r["project"], r["id"])]
    return out


def _enforce(what: str, owner: str, template_id: str, count: int, holders: list, settings: LifecycleSettings,
             hint: str) -> None:
    limits = [(settings.max_running_per_user, "max_running_per_user", f"user {owner}", lambda h: h.owner == owner),
              (settings.max_running_per_template, "max_running_per_template", f"template {template_id}",
               lambda h: h.template_id == template_id),
              (settings.max_running_total, "max_running_total", "this codestudio", lambda h: True)]
    for limit, field, scope, counts in limits:
        if limit is None:
            continue
        holding = [h for h in holders if counts(h)]
        used = sum(h.weight for h in holding)
        if used + count > limit:
            studios = sum(1 for h in holding if not h.label.startswith("webapp "))
            replicas = used - studios
            held = f"{studios} running studio{'s' if studios != 1 else ''}"
            if replicas:
                held += f" and {replicas} webapp replica{'s' if replicas != 1 else ''}"
            listed = ", ".join(h.label for h in holding[:10]) or "nothing"
            more = f" and {len(holding) - 10} more" if len(holding) > 10 else ""
            raise QuotaReached(
                f"cannot {what}: {scope} already has {held}, the limit {field} = {limit} (codestudio lifecycle show; "
                f"a studio counts 1, a webapp its replica count); running: {listed}{more}. {hint}")


_HINT = "Stop one first: codestudio studio stop STUDIO, or codestudio webapp stop|scale WEBAPP"


def check_quotas(studio, store, settings: LifecycleSettings | None = None) -> None:
    """Refuse to start ``studio`` when a running quota is reached (RuntimeFailure, exit 1).

    Studios count 1 each, webapps their replica count (each replica is a
    pod using the machine). The message names the quota and what holds it.
    Call it under :func:`quota_lock` together with the state change to
    STARTING, so two starts cannot both take the last place.
    """
    settings = settings or load_settings()
    if all(getattr(settings, f) is None for f in QUOTA_FIELDS):
        return
    _enforce(f"start studio {studio.id}", studio.owner, studio.template_id, 1, _holders(store, skip_studio=studio.id),
             settings, _HINT)


def check_webapp_quotas(project: str, webapp_id: str, owner: str, template_id: str, replicas: int, store, *,
                        verb: str = "start", settings: LifecycleSettings | None = None) -> None:
    """Refuse (QuotaReached, exit 1) when ``replicas`` replicas of this webapp would pass a running quota.

    The webapp's own current places do not count (a scale asks for its new
    total, a start or update for its replica count).
    """
    settings = settings or load_settings()
    if all(getattr(settings, f) is None for f in QUOTA_FIELDS):
        return
    what = f"{verb} webapp {project}/{webapp_id} ({replicas} replica{'s' if replicas != 1 else ''})"
    _enforce(what, owner, template_id, replicas, _holders(store, skip_webapp=(project, webapp_id)), settings, _HINT)


class QuotaReached(RuntimeFailure):
    """Starting would exceed a running-studio quota (exit 1)."""


def quota_lock():
    """One start at a time checks the quotas and takes its place (across processes)."""
    from codestudio.home import data_dir
    from codestudio.locks import file_lock

    return file_lock(data_dir() / "locks" / "quotas.lock")


__all__ = ["LifecycleSettings", "QuotaReached", "check_quotas", "check_webapp_quotas", "effective_policy", "format_duration", "load_settings",
           "quota_lock", "set_settings"]
