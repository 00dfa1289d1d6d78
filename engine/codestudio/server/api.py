"""``/api/v1``: the JSON REST API. Every route authenticates, calls one engine function, returns JSON.

Long calls (start, stop, restart, sync, push, pull, actions, template builds)
return ``202`` with a job (``GET /api/v1/jobs/<id>``, followed live at
``/api/v1/jobs/<id>/events``). Errors are ``{"error": {"code", "message"}}``
with a stable code (see :mod:`codestudio.server.errors`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from codestudio.server.auth import ApiError, Caller, require_caller


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StudioCreate(_Body):
    project: str = Field(description="project key")
    name: str = Field(description="studio name (its id is made from it)")
    template: str = Field(description="template id")
    owner: str | None = Field(default=None, description="owner (admins only; default: you)")


class ZoneBody(_Body):
    zone: str | None = Field(default=None, description="one zone (default: every synced zone)")


class OwnerBody(_Body):
    owner: str


class ResolveBody(_Body):
    zone: str | None = None
    paths: list[str] = Field(default_factory=list, description="zone-relative paths (default: every open conflict)")


class GrantBody(_Body):
    group: str | None = None
    everybody: bool = False


class ProjectCreate(_Body):
    key: str = Field(description="project key")


class WebappShare(_Body):
    share: str = Field(description="owner, group:GROUP, users or public")


class ProjectGrant(_Body):
    users: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)
    role: str = Field(default="member", description="member or admin")


class TokenCreate(_Body):
    name: str


class UserBody(_Body):
    user: str


def job_response(job, created: bool) -> JSONResponse:
    return JSONResponse(job.as_dict(lines=False) | {"created": created, "url": f"/api/v1/jobs/{job.id}"}, status_code=202)


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


def make_router(app_state) -> APIRouter:  # noqa: C901 - one place lists every route
    from codestudio import access, signin
    from codestudio.runtime import studios as rt

    st = app_state
    router = APIRouter(prefix="/api/v1")
    me_dep = Depends(require_caller)

    def store():
        return st.store

    # ------------------------------------------------------------------ me, tokens, sessions

    @router.get("/me", tags=["sign-in"], summary="Who am I")
    def me(caller: Caller = me_dep) -> dict:
        return {"user": caller.user, "admin": caller.who.is_admin, "via": caller.via, "email": caller.email,
                "groups": sorted(access.groups_of(caller.user, store=store()) | set(caller.groups))}

    @router.post("/signout", tags=["sign-in"], summary="End this web session")
    def signout(caller: Caller = me_dep) -> dict:
        if caller.session_key:
            signin.end_session(caller.session_key, store=store())
        return {"signed_out": caller.via == "session"}

    @router.get("/tokens", tags=["sign-in"], summary="My API tokens (never the tokens themselves)")
    def tokens(caller: Caller = me_dep) -> list[dict]:
        return signin.list_tokens(caller.who, store=store())

    @router.post("/tokens", tags=["sign-in"], status_code=201, summary="Create an API token (shown once)")
    def token_create(body: TokenCreate, caller: Caller = me_dep) -> dict:
        row, token = signin.create_token(caller.who, body.name, store=store())
        return row | {"token": token}

    @router.delete("/tokens/{token_id}", tags=["sign-in"], summary="Revoke an API token (stops working at once)")
    def token_revoke(token_id: str, caller: Caller = me_dep) -> dict:
        signin.revoke_token(caller.who, token_id, store=store())
        return {"revoked": token_id}

    @router.get("/users/{user}/sessions", tags=["admin"], summary="Live web sessions of a user (self or admin)")
    def sessions(user: str, caller: Caller = me_dep) -> list[dict]:
        return signin.list_sessions(caller.who, user, store=store())

    @router.delete("/users/{user}/sessions", tags=["admin"], summary="End every web session of a user (self or admin)")
    def sessions_revoke(user: str, caller: Caller = me_dep) -> dict:
        return {"ended": signin.revoke_sessions(caller.who, user, store=store())}

    @router.post("/users/{user}/disable", tags=["admin"], summary="Disable a user: sessions and tokens revoked")
    def user_disable(user: str, caller: Caller = me_dep) -> dict:
        return signin.disable_user(caller.who, user, store=store())

    @router.post("/users/{user}/enable", tags=["admin"], summary="Enable a disabled user")
    def user_enable(user: str, caller: Caller = me_dep) -> dict:
        return {"enabled": signin.enable_user(caller.who, user, store=store())}

    # ------------------------------------------------------------------ projects

    from codestudio import projects

    @router.get("/projects", tags=["projects"], summary="Projects I have a role in (every project with all=true, admins)")
    def projects_list(all: bool = False, caller: Caller = me_dep) -> list[dict]:
        return projects.list_projects(caller.who, all_projects=all, store=store())

    @router.post("/projects", tags=["projects"], status_code=201, summary="Create a project (you become its owner)")
    def project_create(body: ProjectCreate, caller: Caller = me_dep) -> dict:
        project, _adopted = projects.create_project(caller.who, body.key, store=store())
        return projects.show_project(caller.who, project.key, store=store())

    @router.get("/projects/{key}", tags=["projects"], summary="A project: owner, members, studios")
    def project_get(key: str, caller: Caller = me_dep) -> dict:
        return projects.show_project(caller.who, key, store=store())

    @router.post("/projects/{key}/members", tags=["projects"], summary="Grant users or groups a role in a project")
    def project_grant(key: str, body: ProjectGrant, caller: Caller = me_dep) -> dict:
        projects.grant(caller.who, key, users=body.users, groups=body.groups, role=body.role, store=store())
        return projects.show_project(caller.who, key, store=store())

    @router.post("/projects/{key}/members/revoke", tags=["projects"], summary="Take project roles back")
    def project_revoke(key: str, body: ProjectGrant, caller: Caller = me_dep) -> dict:
        projects.revoke(caller.who, key, users=body.users, groups=body.groups, store=store())
        return projects.show_project(caller.who, key, store=store())

    # ------------------------------------------------------------------ studios

    def studio_row(s) -> dict:
        d = dataclasses.asdict(s)
        d.pop("token", None)
        d["ports"] = {str(k): v for k, v in s.ports.items()}
        return d

    def rebase(url: str, studio_id: str) -> str:
        """Studio links on the content origin (one host per studio when configured)."""
        gw = st.gateway_base()
        if url.startswith(gw):
            return st.settings.studio_base(studio_id, gw) + url[len(gw):]
        return url

    @router.get("/studios", tags=["studios"], summary="My studios (every user's with all=true, admins only)")
    def studios_list(all: bool = False, caller: Caller = me_dep) -> list[dict]:
        return [studio_row(s) for s in rt.list_studios(caller.who, all_users=all, store=store())]

    @router.post("/studios", tags=["studios"], status_code=201, summary="Create a studio (STOPPED) from a template")
    def studio_create(body: StudioCreate, caller: Caller = me_dep) -> dict:
        s = rt.create_studio(caller.who, body.project, body.name, body.template, owner=body.owner, store=store())
        return studio_row(s)

    @router.get("/studios/{studio_id}", tags=["studios"], summary="A studio: state, exposed ports, tabs, synced zones")
    def studio_get(studio_id: str, caller: Caller = me_dep) -> dict:
        status = rt.studio_status(caller.who, studio_id, store=store())
        status["landing"] = rebase(status["landing"], status["id"])
        for tab in status["tabs"]:
            tab["url"] = rebase(tab["url"], status["id"])
        status["exposed_ports"] = [t["port"] for t in status["tabs"]]
        status["jobs"] = [j.as_dict(lines=False) for j in st.jobs.list() if j.target == status["id"] and j.kind.startswith("studio.")][:10]
        return status

    @router.get("/studios/{studio_id}/open", tags=["studios"], summary="A signed link into the studio (its owner only)")
    def studio_open(studio_id: str, port: int | None = None, caller: Caller = me_dep) -> dict:
        url = rt.access_url(caller.who, studio_id, port=port, store=store())
        return {"url": rebase(url, rt.get_studio(studio_id, store=store()).id)}

    # ------------------------------------------------------------------ webapps (sharing)

    @router.get("/webapps/{project}/{name}/open", tags=["webapps"],
                summary="A link into a webapp for you, on the webapp origin (if its share admits you)")
    def webapp_open(project: str, name: str, caller: Caller = me_dep) -> dict:
        from codestudio.webapps import urls

        return urls(caller.who, f"{project}/{name}", store=store())

    @router.put("/webapps/{project}/{name}/share", tags=["webapps"],
                summary="Who may view a webapp (owner and admins); every earlier link and cookie stops working")
    def webapp_share(project: str, name: str, body: WebappShare, caller: Caller = me_dep) -> dict:
        from codestudio.webapps.sharing import set_share

        w = set_share(caller.who, f"{project}/{name}", body.share, store=store())
        return {"webapp": w.key, "share": w.share}

    def studio_job(kind: str, studio_id: str, caller: Caller, fn):
        s = rt.get_studio(studio_id, store=store())
        # Permission first, so a refused call is a 403 now rather than a failed job.
        if caller.user != s.owner and not caller.who.is_admin:
            raise ApiError(403, "forbidden", f"studio {s.id} is not yours")
        return job_response(*st.jobs.submit(kind, s.id, caller.user, fn))

    @router.post("/studios/{studio_id}/start", tags=["studios"], status_code=202, summary="Start (job)")
    def studio_start(studio_id: str, caller: Caller = me_dep):
        return studio_job("studio.start", studio_id, caller,
                          lambda job: studio_row(rt.start_studio(caller.who, studio_id, timeout=st.start_timeout, store=store())))

    @router.post("/studios/{studio_id}/stop", tags=["studios"], status_code=202, summary="Stop; files are pulled back first (job)")
    def studio_stop(studio_id: str, caller: Caller = me_dep):
        return studio_job("studio.stop", studio_id, caller,
                          lambda job: studio_row(rt.stop_studio(caller.who, studio_id, store=store())))

    @router.post("/studios/{studio_id}/restart", tags=["studios"], status_code=202, summary="Stop then start (job)")
    def studio_restart(studio_id: str, caller: Caller = me_dep):
        return studio_job("studio.restart", studio_id, caller,
                          lambda job: studio_row(rt.restart_studio(caller.who, studio_id, timeout=st.start_timeout, store=store())))

    @router.delete("/studios/{studio_id}", tags=["studios"], summary="Delete a studio (force: stop it first)")
    def studio_delete(studio_id: str, force: bool = False, purge: bool = False, caller: Caller = me_dep) -> dict:
        rt.delete_studio(caller.who, studio_id, force=force, purge=purge, store=store())
        return {"deleted": studio_id}

    @router.put("/studios/{studio_id}/owner", tags=["studios"], summary="Change the owner (stopped studios)")
    def studio_owner(studio_id: str, body: OwnerBody, caller: Caller = me_dep) -> dict:
        from codestudio.runtime.ownership import change_owner

        return studio_row(change_owner(caller.who, studio_id, body.owner, store=store()))

    def sync_job(direction: str, studio_id: str, body: ZoneBody | None, caller: Caller):
        zone = body.zone if body else None

        def run(job):
            report = rt.sync_files(caller.who, studio_id, direction, zone, store=store())
            return report.to_dict()

        return studio_job(f"studio.{direction if direction != 'both' else 'sync'}", studio_id, caller, run)

    @router.post("/studios/{studio_id}/sync", tags=["files"], status_code=202, summary="Sync files both ways (job)")
    def studio_sync(studio_id: str, body: ZoneBody | None = None, caller: Caller = me_dep):
        return sync_job("both", studio_id, body, caller)

    @router.post("/studios/{studio_id}/push", tags=["files"], status_code=202, summary="Server zones -> studio (job)")
    def studio_push(studio_id: str, body: ZoneBody | None = None, caller: Caller = me_dep):
        return sync_job("push", studio_id, body, caller)

    @router.post("/studios/{studio_id}/pull", tags=["files"], status_code=202, summary="Studio -> server zones (job)")
    def studio_pull(studio_id: str, body: ZoneBody | None = None, caller: Caller = me_dep):
        return sync_job("pull", studio_id, body, caller)

    @router.get("/studios/{studio_id}/conflicts", tags=["files"], summary="Open sync conflicts (per zone)")
    def studio_conflicts(studio_id: str, zone: str | None = None, caller: Caller = me_dep) -> list[dict]:
        return [dataclasses.asdict(c) for c in rt.studio_conflicts(caller.who, studio_id, zone, store=store())]

    @router.post("/studios/{studio_id}/conflicts/resolve", tags=["files"], summary="Mark conflicts resolved")
    def studio_resolve(studio_id: str, body: ResolveBody, caller: Caller = me_dep) -> list[dict]:
        found = rt.studio_conflicts(caller.who, studio_id, body.zone, resolve=True, paths=body.paths or None, store=store())
        return [dataclasses.asdict(c) for c in found]

    @router.get("/studios/{studio_id}/actions", tags=["actions"], summary="The studio's custom actions")
    def studio_actions(studio_id: str, caller: Caller = me_dep) -> list[dict]:
        return rt.list_actions(caller.who, studio_id, store=store())

    @router.post("/studios/{studio_id}/actions/{action}", tags=["actions"], status_code=202, summary="Run an action (job; output in its log)")
    def studio_run(studio_id: str, action: str, caller: Caller = me_dep):
        s = rt.get_studio(studio_id, store=store())
        names = {a["name"] for a in rt.list_actions(caller.who, s.id, store=store())}
        if action not in names:
            raise ApiError(404, "not_found", f"studio {s.id} has no action {action!r}; actions: {', '.join(sorted(names)) or '(none)'}")

        def run(job):
            code, waited = rt.run_action(caller.who, s.id, action, store=store(), output=lambda line: st.jobs.line(job, line))
            if waited and code != 0:
                raise ApiError(500, "action_failed", f"action {action} exited with status {code}", exit_status=code)
            return {"action": action, "exit_status": code, "waited": waited,
                    "log": None if waited else rt.detached_log_path(action)}

        return job_response(*st.jobs.submit(f"studio.action.{action}", s.id, caller.user, run))

    @router.get("/studios/{studio_id}/logs", tags=["logs"], response_class=PlainTextResponse,
                summary="The studio's output (tail); saved logs when it is not running")
    def studio_logs(studio_id: str, tail: int = Query(200, ge=1, le=100000), caller: Caller = me_dep):
        from codestudio.runtime.current import get_runtime

        pod, saved = rt.logs_target(caller.who, studio_id, store=store())
        if pod:
            data = b"".join(get_runtime().logs(pod, tail=tail))
            return PlainTextResponse(data.decode(errors="replace"))
        if saved is None:
            return PlainTextResponse("")
        lines = saved.read_text(errors="replace").splitlines()[-tail:]
        return PlainTextResponse("\n".join(lines) + ("\n" if lines else ""))

    @router.get("/studios/{studio_id}/logs/events", tags=["logs"], summary="Follow the studio's output (server-sent events)")
    async def studio_logs_follow(studio_id: str, tail: int = Query(100, ge=0, le=10000), caller: Caller = me_dep):
        from codestudio.runtime.current import get_runtime

        pod, _saved = await asyncio.to_thread(rt.logs_target, caller.who, studio_id, store=store())
        if not pod:
            raise ApiError(400, "not_running", f"studio {studio_id} has no container; read its saved logs with GET .../logs")
        # The runtime's log stream is blocking: a thread reads it into a queue.
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue(maxsize=256)
        chunks = get_runtime().logs(pod, follow=True, tail=tail)

        def pump() -> None:
            try:
                for chunk in chunks:
                    asyncio.run_coroutine_threadsafe(queue.put(chunk), loop).result()
            except Exception:  # noqa: BLE001 - the client went away (generator closed) or the runtime failed
                pass
            finally:
                asyncio.run_coroutine_threadsafe(queue.put(None), loop)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()

        async def events():
            pending = b""
            try:
                while True:
                    chunk = await queue.get()
                    if chunk is None:
                        if pending:
                            yield sse("line", pending.decode(errors="replace"))
                        yield sse("end", {})
                        return
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        yield sse("line", line.decode(errors="replace"))
            finally:
                chunks.close()

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    @router.get("/events", tags=["studios"], summary="Live state of my studios (server-sent events)")
    async def studio_events(request: Request, caller: Caller = me_dep):
        async def events():
            last: dict = {}
            while not await request.is_disconnected():
                studios = await asyncio.to_thread(rt.list_studios, caller.who, store=store())
                now = {s.id: (s.state, s.message) for s in studios}
                for s in studios:
                    if last.get(s.id) != now[s.id]:
                        yield sse("studio", {"id": s.id, "state": s.state, "message": s.message})
                for gone in set(last) - set(now):
                    yield sse("deleted", {"id": gone})
                last = now
                yield ": ping\n\n"
                await asyncio.sleep(st.poll_interval)

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    # ------------------------------------------------------------------ jobs

    def visible_job(job_id: str, caller: Caller):
        job = st.jobs.get(job_id)
        if job is None or (job.user != caller.user and not caller.who.is_admin):
            raise ApiError(404, "not_found", f"no job {job_id!r}")
        return job

    @router.get("/jobs", tags=["jobs"], summary="My recent jobs")
    def jobs_list(caller: Caller = me_dep) -> list[dict]:
        return [j.as_dict(lines=False) for j in st.jobs.list(None if caller.who.is_admin else caller.user)]

    @router.get("/jobs/{job_id}", tags=["jobs"], summary="A job: state, output lines, result or error")
    def job_get(job_id: str, since: int = Query(0, ge=0), caller: Caller = me_dep) -> dict:
        job = visible_job(job_id, caller)
        d = job.as_dict()
        d["lines"] = d["lines"][since:]
        return d

    @router.get("/jobs/{job_id}/events", tags=["jobs"], summary="Follow a job (server-sent events: line, state, end)")
    async def job_events(job_id: str, request: Request, caller: Caller = me_dep):
        job = visible_job(job_id, caller)

        async def events():
            since, state = 0, None
            while True:
                lines, current, done = st.jobs.snapshot(job, since)
                for line in lines:
                    yield sse("line", line)
                since += len(lines)
                if current != state:
                    state = current
                    yield sse("state", {"state": current})
                if done:
                    yield sse("end", job.as_dict(lines=False))
                    return
                if await request.is_disconnected():
                    return
                await asyncio.to_thread(st.jobs.wait, job, since, 1.0)

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    # ------------------------------------------------------------------ templates

    from codestudio import templates_store as ts

    @router.get("/templates", tags=["templates"], summary="Templates I may use (every template for admins)")
    def templates_list(caller: Caller = me_dep) -> list[dict]:
        rows = ts.list_templates(store=store())
        if caller.who.is_admin:
            return rows
        return [{k: r.get(k) for k in ("id", "version", "label", "description")}
                for r in rows if access.may_use_template(caller.user, r["id"], admin=False, store=store())]

    @router.get("/templates/{template_id}", tags=["templates"], summary="A template: versions, YAML, grants, builds (admins)")
    def template_get(template_id: str, version: int | None = None, caller: Caller = me_dep) -> dict:
        access.require_admin(caller.who, "read templates")
        from codestudio.images import list_builds

        d = ts.show_template(template_id, store=store())
        d["yaml"] = ts.get_template(template_id, version, store=store()).path.read_text(encoding="utf-8", errors="replace")
        d["builds"] = list_builds(template_id, store=store(), limit=20)
        return d

    @router.post("/templates", tags=["templates"], status_code=201,
                 summary="Upload a template (YAML body, or multipart field 'file'); a new version when it changed")
    async def template_upload(request: Request, caller: Caller = me_dep) -> JSONResponse:
        access.require_admin(caller.who, "add templates")
        limit = st.settings.max_upload
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit + 65536:
            raise ApiError(413, "too_large", f"template uploads are limited to {limit} bytes")
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            form = await request.form()
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise ApiError(422, "file_missing", "multipart upload needs a 'file' field with the template YAML")
            data = await upload.read(limit + 1)
        else:
            data = b""
            async for chunk in request.stream():
                data += chunk
                if len(data) > limit:
                    break
        if len(data) > limit:
            raise ApiError(413, "too_large", f"template uploads are limited to {limit} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(422, "not_text", "the upload is not UTF-8 text (a template is a YAML file)") from None
        if not text.strip():
            raise ApiError(422, "template_invalid", "the upload is empty: a template is a YAML file with at least an id",
                           problems=[{"line": None, "message": "the file is empty"}])

        def add():
            work = Path(tempfile.mkdtemp(prefix="upload-", dir=st.uploads_dir()))
            try:
                path = work / "template.yaml"
                path.write_text(text, encoding="utf-8")
                stored, new = ts.add_template(caller.who, path, store=store())
                return stored.as_dict() | {"new_version": new}
            finally:
                shutil.rmtree(work, ignore_errors=True)

        result = await asyncio.to_thread(add)
        return JSONResponse(result, status_code=201 if result["new_version"] else 200)

    @router.post("/templates/{template_id}/build", tags=["templates"], status_code=202, summary="Build a template (job, live build log)")
    def template_build(template_id: str, no_cache: bool = False, caller: Caller = me_dep):
        access.require_admin(caller.who, "build templates")
        ts.get_template(template_id, store=store())
        from codestudio.template_editing import reused_blocks
        from codestudio.templates_store import build_template, check_buildable

        check_buildable(template_id)  # now, so the refusal is a 422 rather than a failed job

        def run(job):
            result = build_template(template_id, no_cache=no_cache, store=store()).as_dict()
            return result | {"blocks": reused_blocks(template_id, result, store=store())}

        return job_response(*st.jobs.submit("template.build", template_id, caller.user, run))

    @router.get("/templates/{template_id}/builds", tags=["templates"], summary="Build history (admins)")
    def template_builds(template_id: str, limit: int = Query(50, ge=1, le=1000), caller: Caller = me_dep) -> list[dict]:
        access.require_admin(caller.who, "read build history")
        from codestudio.images import list_builds

        return list_builds(template_id, store=store(), limit=limit)

    @router.get("/templates/{template_id}/builds/{build_id}/log", tags=["templates"], response_class=PlainTextResponse,
                summary="A build's log (admins)")
    def template_build_log(template_id: str, build_id: int, caller: Caller = me_dep):
        access.require_admin(caller.who, "read build logs")
        from codestudio.images import list_builds

        for b in list_builds(template_id, store=store()):
            if b["id"] == build_id:
                path = b.get("log_path")
                if path and os.path.isfile(path):
                    return PlainTextResponse(Path(path).read_text(errors="replace"))
                return PlainTextResponse("")
        raise ApiError(404, "not_found", f"template {template_id} has no build {build_id}")

    def grant_target(body: GrantBody) -> str:
        if body.everybody == (body.group is not None):
            raise ApiError(422, "invalid_request", "give either 'group' or 'everybody': true")
        return access.EVERYBODY if body.everybody else body.group  # type: ignore[return-value]

    @router.post("/templates/{template_id}/grants", tags=["templates"], summary="Grant a template to a group or everybody")
    def template_grant(template_id: str, body: GrantBody, caller: Caller = me_dep) -> dict:
        added = ts.grant(caller.who, template_id, grant_target(body), store=store())
        return {"granted": added, "grants": access.template_grants(template_id, store=store())}

    @router.post("/templates/{template_id}/grants/revoke", tags=["templates"], summary="Take a grant back")
    def template_revoke(template_id: str, body: GrantBody, caller: Caller = me_dep) -> dict:
        removed = ts.revoke(caller.who, template_id, grant_target(body), store=store())
        return {"revoked": removed, "grants": access.template_grants(template_id, store=store())}

    @router.delete("/templates/{template_id}", tags=["templates"], summary="Remove a template (every version)")
    def template_remove(template_id: str, force: bool = False, caller: Caller = me_dep) -> dict:
        ts.remove_template(caller.who, template_id, force=force, store=store())
        return {"removed": template_id}

    # ------------------------------------------------------------------ admins and groups

    @router.get("/admins", tags=["admin"], summary="Admins")
    def admins(caller: Caller = me_dep) -> list[str]:
        access.require_admin(caller.who, "list admins")
        return access.list_admins(store=store())

    @router.post("/admins", tags=["admin"], summary="Make a user an admin")
    def admin_add(body: UserBody, caller: Caller = me_dep) -> dict:
        return {"added": access.add_admin(caller.who, body.user, store=store())}

    @router.delete("/admins/{user}", tags=["admin"], summary="Remove an admin")
    def admin_remove(user: str, caller: Caller = me_dep) -> dict:
        return {"removed": access.remove_admin(caller.who, user, store=store())}

    @router.get("/groups", tags=["admin"], summary="Group memberships")
    def groups(caller: Caller = me_dep) -> list[dict]:
        access.require_admin(caller.who, "list groups")
        return access.list_members(store=store())

    @router.post("/groups/{group}/members", tags=["admin"], summary="Add a user to a group")
    def group_add(group: str, body: UserBody, caller: Caller = me_dep) -> dict:
        return {"added": access.add_member(caller.who, group, body.user, store=store())}

    @router.delete("/groups/{group}/members/{user}", tags=["admin"], summary="Remove a user from a group")
    def group_remove(group: str, user: str, caller: Caller = me_dep) -> dict:
        return {"removed": access.remove_member(caller.who, group, user, store=store())}

    return router
