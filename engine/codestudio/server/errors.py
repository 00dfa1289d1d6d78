"""Engine exceptions -> HTTP status, stable error code, message (one table for API, pages and jobs)."""

from __future__ import annotations

import logging
import re

log = logging.getLogger("codestudio.server")
_LINE_RE = re.compile(r"^line (\d+): ")


def describe(exc: BaseException) -> tuple[int, dict]:
    """(status, {"code", "message", ...}) for any exception; unknown ones are 500 internal_error."""
    from codestudio import signin
    from codestudio.errors import (CodestudioError, NotFound, PermissionDenied, RuntimeFailure, TemplateError,
                                   UsageError)
    from codestudio.server.auth import ApiError

    if isinstance(exc, ApiError):
        return exc.status, {"code": exc.code, "message": exc.message, **exc.extra}
    if isinstance(exc, signin.RateLimited):
        return 429, {"code": exc.code, "message": str(exc), "retry_after": exc.retry_after}
    if isinstance(exc, signin.SignInFailed):
        return 401, {"code": exc.code, "message": str(exc)}
    if isinstance(exc, TemplateError):
        problems = []
        for p, detail in zip(exc.problems, exc.details):
            m = _LINE_RE.match(p)
            problems.append({**detail, "line": int(m.group(1)) if m else None, "message": p})
        return 422, {"code": "template_invalid", "message": str(exc), "problems": problems}
    from codestudio.template_editing import AlreadyExists, Conflict, EditError

    if isinstance(exc, AlreadyExists):
        return 409, {"code": "already_exists", "message": str(exc), "field": exc.field,
                     "fields": [{"field": exc.field, "message": str(exc)}]}
    if isinstance(exc, Conflict):
        return 409, {"code": "changed_since_opened", "message": str(exc)}
    if isinstance(exc, EditError):
        return 422, {"code": "invalid_request", "message": str(exc), "field": exc.field,
                     "fields": [{"field": exc.field, "message": str(exc)}]}
    if isinstance(exc, NotFound):
        return 404, {"code": "not_found", "message": str(exc)}
    if isinstance(exc, PermissionDenied):
        return 403, {"code": "forbidden", "message": str(exc)}
    if isinstance(exc, UsageError):
        return 400, {"code": "bad_request", "message": str(exc)}
    try:
        from codestudio.sync import SyncConflictError
    except ImportError:  # pragma: no cover
        SyncConflictError = ()  # type: ignore[assignment]
    if SyncConflictError and isinstance(exc, SyncConflictError):
        report = getattr(exc, "report", None)
        return 409, {"code": "sync_conflicts", "message": str(exc), "report": report.to_dict() if report else None}
    if isinstance(exc, RuntimeFailure):
        return 500, {"code": "runtime_failure", "message": str(exc)}
    if isinstance(exc, CodestudioError):
        return 500, {"code": "failed", "message": str(exc)}
    log.exception("internal error", exc_info=exc)
    return 500, {"code": "internal_error", "message": f"internal error: {type(exc).__name__} (see the server log)"}


def job_error(exc: BaseException) -> dict:
    status, body = describe(exc)
    return {**body, "status": status}
