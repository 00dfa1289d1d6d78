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


def check_quotas(studio, store, settings: LifecycleSettings | None = None) -> None:
    """Refuse to start ``studio`` when a running-studio quota is reached (RuntimeFailure, exit 1).

    The message names the quota and the studios holding it. Call it under
    :func:`quota_lock` together with the state change to STARTING, so two
    starts cannot both take the last place.
    """
    from codestudio.runtime.model import ACTIVE_STATES

    settings = settings or load_settings()
    limits = [(settings.max_running_per_user, "max_running_per_user", f"user {studio.owner}",
               lambda s: s.owner == studio.owner),
              (settings.max_running_per_template, "max_running_per_template", f"template {studio.template_id}",
               lambda s: s.template_id == studio.template_id),
              (settings.max_running_total, "max_running_total", "this codestudio", lambda s: True)]
    if all(limit is None for limit, *_ in limits):
        return
    placeholders = ", ".join("?" for _ in ACTIVE_STATES)
    with store.connect() as conn:
        rows = conn.execute(f"SELECT id, project, owner, template_id, state FROM studios WHERE state IN ({placeholders}) "
                            "AND id != ? ORDER BY project, id", (*[str(s) for s in ACTIVE_STATES], studio.id)).fetchall()
    from types import SimpleNamespace

    active = [SimpleNamespace(**dict(r)) for r in rows]
    for limit, field, scope, counts in limits:
        if limit is None:
            continue
        holding = [s for s in active if counts(s)]
        if len(holding) >= limit:
            listed = ", ".join(f"{s.project}/{s.id} ({s.owner}, {s.state})" for s in holding[:10])
            more = f" and {len(holding) - 10} more" if len(holding) > 10 else ""
            raise QuotaReached(
                f"cannot start studio {studio.id}: {scope} already has {len(holding)} running studio"
                f"{'s' if len(holding) != 1 else ''}, the limit {field} = {limit} (codestudio lifecycle show); "
                f"running: {listed}{more}. Stop one first: codestudio studio stop STUDIO")


class QuotaReached(RuntimeFailure):
    """Starting would exceed a running-studio quota (exit 1)."""


def quota_lock():
    """One start at a time checks the quotas and takes its place (across processes)."""
    from codestudio.home import data_dir
    from codestudio.locks import file_lock

    return file_lock(data_dir() / "locks" / "quotas.lock")


__all__ = ["LifecycleSettings", "QuotaReached", "check_quotas", "effective_policy", "format_duration", "load_settings",
           "quota_lock", "set_settings"]
