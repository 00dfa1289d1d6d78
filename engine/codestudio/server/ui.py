"""The web UI: jinja2 pages over the engine; their buttons call ``/api/v1`` (``static/app.js``).

Pages read through the same engine functions as the API and the CLI. Every
state change goes through the API with the page's CSRF token, so the UI can
do nothing the API cannot.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from codestudio.server.auth import COOKIE, ApiError, Caller, authenticate, client_address

HERE = Path(__file__).parent


def _env():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["when"] = _when
    return env


def _when(ts) -> str:
    import datetime

    if not ts:
        return ""
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


_ENV = None


def render(request: Request, state, name: str, *, status: int = 200, caller: Caller | None = None, headers=None, **ctx) -> HTMLResponse:
    global _ENV
    if _ENV is None:
        _ENV = _env()
    html = _ENV.get_template(name).render(request=request, caller=caller, csrf=caller.csrf if caller else "", **ctx)
    return HTMLResponse(html, status_code=status, headers=headers)


def error_page(request: Request, state, status: int, body: dict, *, headers=None) -> HTMLResponse:
    caller = getattr(request.state, "caller", None)
    return render(request, state, "error.html.j2", status=status, caller=caller, headers=headers, error=body)


def _cookie(response: Response, state, key: str | None, max_age: int | None = None) -> None:
    secure = state.settings.secure_cookie
    if key is None:
        response.delete_cookie(COOKIE, path="/", secure=secure, httponly=True, samesite="strict")
        return
    response.set_cookie(COOKIE, key, max_age=max_age, path="/", secure=secure, httponly=True, samesite="strict")


def mount_ui(app: FastAPI, state) -> None:  # noqa: C901 - the page list
    from codestudio import access, signin
    from codestudio import templates_store as ts
    from codestudio.runtime import studios as rt

    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    def page_caller(request: Request) -> Caller | None:
        caller = authenticate(request, state.settings, state.store, state.secret)
        request.state.caller = caller
        return caller

    def signin_redirect() -> RedirectResponse:
        return RedirectResponse("/signin", status_code=303)

    # ------------------------------------------------------------------ sign-in

    @app.get("/signin", include_in_schema=False)
    def signin_page(request: Request, key: str | None = None):
        return render(request, state, "signin.html.j2", key=key or "", mode=state.settings.auth, error=None)

    @app.post("/signin", include_in_schema=False)
    def signin_post(request: Request, key: str = Form("")):
        origin = request.headers.get("origin")
        client = client_address(request, state.settings)
        if origin is not None and origin.lower() != state.settings.ui_origin:
            signin.record_failure(client, "cross-origin sign-in", store=state.store)
            raise ApiError(403, "csrf_origin", "sign-in from another site refused")
        try:
            session_key, session = signin.redeem_link(key.strip(), client, store=state.store)
        except signin.SignInFailed as exc:
            status = 429 if isinstance(exc, signin.RateLimited) else 401
            headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, signin.RateLimited) else None
            return render(request, state, "signin.html.j2", status=status, key="", mode=state.settings.auth,
                          error={"code": exc.code, "message": str(exc)}, headers=headers)
        response = RedirectResponse("/", status_code=303)
        _cookie(response, state, session_key, max_age=int(session.expires_at - __import__("time").time()))
        return response

    @app.post("/signout", include_in_schema=False)
    async def signout_post(request: Request):
        from codestudio.server.auth import check_csrf

        caller = page_caller(request)
        if caller is not None:
            await check_csrf(request, caller, state.settings)
            if caller.session_key:
                signin.end_session(caller.session_key, store=state.store)
        response = RedirectResponse("/signin", status_code=303)
        _cookie(response, state, None)
        return response

    # ------------------------------------------------------------------ user pages

    @app.get("/", include_in_schema=False)
    def home(request: Request):
        caller = page_caller(request)
        if caller is None:
            return signin_redirect()
        studios = rt.list_studios(caller.who, store=state.store)
        groups = [(project, list(items)) for project, items in itertools.groupby(studios, key=lambda s: s.project)]
        templates = [t for t in ts.list_templates(store=state.store)
                     if access.may_use_template(caller.user, t["id"], admin=caller.who.is_admin, store=state.store)]
        from codestudio.projects import list_projects

        member_of = [p["key"] for p in list_projects(caller.who, store=state.store)]
        return render(request, state, "studios.html.j2", caller=caller, groups=groups, templates=templates,
                      projects=member_of)

    @app.get("/studios/{studio_id}", include_in_schema=False)
    def studio_page(request: Request, studio_id: str):
        caller = page_caller(request)
        if caller is None:
            return signin_redirect()
        status = rt.studio_status(caller.who, studio_id, store=state.store)
        try:
            actions = rt.list_actions(caller.who, studio_id, store=state.store)
        except Exception:  # a template that no longer renders: the page still shows state and logs
            actions = []
        try:
            conflicts = [dataclasses.asdict(c) for c in rt.studio_conflicts(caller.who, studio_id, store=state.store)]
        except Exception:
            conflicts = []
        owner = caller.user == status["owner"]
        return render(request, state, "studio.html.j2", caller=caller, s=status, actions=actions, conflicts=conflicts,
                      owner=owner)

    @app.get("/tokens", include_in_schema=False)
    def tokens_page(request: Request):
        caller = page_caller(request)
        if caller is None:
            return signin_redirect()
        return render(request, state, "tokens.html.j2", caller=caller, tokens=signin.list_tokens(caller.who, store=state.store))

    # ------------------------------------------------------------------ admin pages

    def admin_caller(request: Request) -> Caller | None:
        caller = page_caller(request)
        if caller is not None:
            access.require_admin(caller.who, "open the admin pages")
        return caller

    @app.get("/admin/templates", include_in_schema=False)
    def admin_templates(request: Request):
        caller = admin_caller(request)
        if caller is None:
            return signin_redirect()
        return render(request, state, "admin_templates.html.j2", caller=caller, templates=ts.list_templates(store=state.store))

    @app.get("/admin/templates/{template_id}", include_in_schema=False)
    def admin_template(request: Request, template_id: str, version: int | None = None):
        caller = admin_caller(request)
        if caller is None:
            return signin_redirect()
        from codestudio.images import list_builds

        info = ts.show_template(template_id, store=state.store)
        shown = ts.get_template(template_id, version, store=state.store)
        yaml_text = shown.path.read_text(encoding="utf-8", errors="replace")
        from codestudio.template_editing import open_template

        has_draft = bool(open_template(template_id, store=state.store)["draft"])
        return render(request, state, "admin_template.html.j2", caller=caller, t=info, shown=shown.version,
                      yaml_lines=yaml_text.splitlines(), yaml_text=yaml_text, has_draft=has_draft,
                      builds=list_builds(template_id, store=state.store, limit=20))

    @app.get("/admin/users", include_in_schema=False)
    def admin_users(request: Request):
        caller = admin_caller(request)
        if caller is None:
            return signin_redirect()
        members = access.list_members(store=state.store)
        groups = [(g, [m["user"] for m in items]) for g, items in itertools.groupby(members, key=lambda m: m["group"])]
        return render(request, state, "admin_users.html.j2", caller=caller, admins=access.list_admins(store=state.store),
                      groups=groups)
