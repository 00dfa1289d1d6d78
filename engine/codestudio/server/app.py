"""The ASGI application: state, authentication dependency, error handlers, and :func:`serve`."""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from codestudio.server.auth import ApiError, server_secret
from codestudio.server.errors import describe, job_error
from codestudio.server.jobs import Jobs
from codestudio.server.settings import ServerSettings
from codestudio.store import Store

log = logging.getLogger("codestudio.server")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-src http: https:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")


@dataclass
class AppState:
    settings: ServerSettings
    data_dir: Path
    store: Store
    jobs: Jobs
    secret: bytes
    start_timeout: float = 300.0
    poll_interval: float = 1.0
    _gateway_base: str | None = field(default=None, repr=False)

    def gateway_base(self) -> str:
        if self._gateway_base is None:
            from codestudio.gateway.process import Gateway

            self._gateway_base = Gateway(self.data_dir).settings.base_url
        return self._gateway_base

    def uploads_dir(self) -> Path:
        path = self.data_dir / "uploads"
        path.mkdir(mode=0o700, exist_ok=True)
        return path


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def create_app(settings: ServerSettings | None = None, *, data_dir: Path | None = None,
               start_timeout: float | None = None, poll_interval: float = 1.0, culler: bool = True) -> FastAPI:
    """The app; with ``culler`` it also runs the studio culler every ``cull_interval`` and the webapp
    supervisor (:mod:`codestudio.webapps.supervise`) while it serves."""
    from codestudio.home import data_dir as default_data_dir

    data_dir = data_dir or default_data_dir()
    settings = settings or ServerSettings.load(data_dir)
    from codestudio import access

    # Proxy mode: identities are the SSO proxy's, not host accounts; their OS groups never count.
    access.use_os_groups(settings.auth != "proxy")
    store = Store(data_dir / "state.db")
    jobs = Jobs(data_dir / "jobs", workers=settings.jobs, error_of=job_error)
    if start_timeout is None:
        env = os.environ.get("CODESTUDIO_START_TIMEOUT")
        start_timeout = float(env) if env else 300.0
    state = AppState(settings, data_dir, store, jobs, server_secret(data_dir), start_timeout, poll_interval)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        jobs.install_capture()  # job output is captured only while serving
        stop_culler = _start_culler(store) if culler else None
        stop_supervisor = _start_webapp_supervisor(store) if culler else None
        try:
            yield
        finally:
            if stop_culler is not None:
                stop_culler()
            if stop_supervisor is not None:
                stop_supervisor()
            jobs.shutdown()

    app = FastAPI(
        lifespan=lifespan,
        title="codestudio",
        version=_version(),
        description="The codestudio REST API: studios, their files and actions, templates, jobs. "
        "Authenticate with a personal API token (Authorization: Bearer cst_...) or a web session.",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # Swagger UI would load scripts from a CDN onto the UI origin
        redoc_url=None,
    )
    app.state.cs = state

    @app.exception_handler(Exception)
    async def _any(request: Request, exc: Exception):
        status, body = describe(exc)
        return _error_response(request, status, body, state)

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError):
        status, body = describe(exc)
        return _error_response(request, status, body, state)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return _error_response(request, 400, {"code": "malformed_json", "message": "the request body is not valid JSON"}, state)
        fields = [{"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")} for e in errors]
        message = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return _error_response(request, 422, {"code": "invalid_request", "message": message, "fields": fields}, state)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error_response(request, exc.status_code, {"code": code, "message": str(exc.detail)}, state)

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        response = await call_next(request)
        # The UI never runs inside another site's frame, and sends no referrer to studios.
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if request.url.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        elif response.headers.get("content-type", "").startswith("text/html"):
            # Pages run only their own script; studio tabs may be framed from the content origin.
            response.headers.setdefault("Content-Security-Policy", CSP)
        return response

    from codestudio.server.api import make_router
    from codestudio.server.ui import mount_ui

    from codestudio.server.editor_api import make_editor_router

    app.include_router(make_router(state))
    app.include_router(make_editor_router(state))
    mount_ui(app, state)

    return app


def _start_culler(store: Store):
    """Run :func:`codestudio.runtime.culler.serve_forever` in a thread; returns what stops it."""
    import threading

    from codestudio.runtime.culler import serve_forever

    stop = threading.Event()
    thread = threading.Thread(target=serve_forever, args=(stop,), kwargs={"store": store}, name="culler", daemon=True)
    thread.start()

    def stop_it() -> None:
        stop.set()
        thread.join(timeout=30)  # a stop in progress finishes (files pulled) before the server exits

    return stop_it


def _start_webapp_supervisor(store: Store):
    """Run :func:`codestudio.webapps.supervise` in a thread (dead replicas replaced, probes); returns what stops it."""
    import threading

    from codestudio.webapps.supervise import supervise

    stop = threading.Event()
    thread = threading.Thread(target=supervise, kwargs={"stop": stop, "store": store}, name="webapps", daemon=True)
    thread.start()

    def stop_it() -> None:
        stop.set()
        thread.join(timeout=30)

    return stop_it


def _error_response(request: Request, status: int, body: dict, state: AppState):
    headers = {"Retry-After": str(body["retry_after"])} if "retry_after" in body else None
    if _wants_json(request):
        return JSONResponse({"error": body}, status_code=status, headers=headers)
    from codestudio.server.ui import error_page

    return error_page(request, state, status, body, headers=headers)


def _version() -> str:
    from codestudio import __version__

    return __version__


def serve(settings: ServerSettings, *, data_dir: Path, log_level: str = "info") -> None:
    """Run the server in the foreground (uvicorn) until interrupted."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings, data_dir=data_dir)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=log_level, proxy_headers=False,
                timeout_graceful_shutdown=3)
