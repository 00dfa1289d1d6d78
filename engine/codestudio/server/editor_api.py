"""``/api/v1`` routes of the template editor: block types, create, open, save, drafts, YAML, files.

Each route calls one function of :mod:`codestudio.template_editing` (the
rules live there, shared with any other client); bad input is a 4xx naming
the request field, a save made from an outdated revision is ``409
changed_since_opened``.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from codestudio.server.auth import ApiError, Caller, require_caller


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TemplateCreate(_Body):
    id: str = Field(description="template id (slug)")
    label: str | None = None
    description: str | None = None
    base_image: str | None = Field(default=None, description="image reference (default: the codestudio base image)")


class TemplateSave(_Body):
    revision: str = Field(description="the revision the document was opened at (from GET .../editor)")
    document: dict = Field(description="label, description, base_image and blocks, as GET .../editor answers them")
    origins: list[int | None] | None = Field(
        default=None, description="for each block, its index in the opened document (null for a new block)")


def make_editor_router(app_state) -> APIRouter:
    from codestudio import access
    from codestudio import template_editing as te

    st = app_state
    router = APIRouter(prefix="/api/v1")
    me_dep = Depends(require_caller)

    @router.get("/blocks", tags=["templates"], summary="Installed block types: summary, distribution, group, JSON Schema")
    def blocks(caller: Caller = me_dep) -> list[dict]:
        return te.block_types()

    @router.post("/templates/create", tags=["templates"], status_code=201,
                 summary="Create a template with no blocks (version 1) from its id, label, description, base image")
    def template_create(body: TemplateCreate, caller: Caller = me_dep) -> dict:
        stored = te.create_template(caller.who, body.id, label=body.label, description=body.description,
                                    base_image=body.base_image, store=st.store)
        return te.open_template(stored.id, store=st.store)

    @router.get("/templates/{template_id}/editor", tags=["templates"],
                summary="A template as the editor opens it: document, revision, draft and its problems, files (admins)")
    def template_open(template_id: str, caller: Caller = me_dep) -> dict:
        access.require_admin(caller.who, "edit templates")
        return te.open_template(template_id, store=st.store)

    @router.put("/templates/{template_id}/editor", tags=["templates"],
                summary="Save: a new version when valid, else the draft with its problems; 409 if changed since opened")
    def template_save(template_id: str, body: TemplateSave, caller: Caller = me_dep,
                      if_match: str | None = Header(default=None)) -> dict:
        seen = body.revision
        if if_match is not None and if_match.strip('"') != seen:
            raise ApiError(422, "invalid_request", "If-Match and revision differ; send one revision")
        return te.save_template(caller.who, template_id, body.document, origins=body.origins, revision_seen=seen,
                                store=st.store)

    @router.delete("/templates/{template_id}/draft", tags=["templates"], summary="Discard the draft (admins)")
    def template_discard(template_id: str, caller: Caller = me_dep) -> dict:
        return {"discarded": te.discard_draft(caller.who, template_id, store=st.store)}

    @router.get("/templates/{template_id}/yaml", tags=["templates"], summary="The stored YAML, byte for byte (admins)")
    def template_yaml(template_id: str, version: int | None = Query(None, ge=1), draft: bool = False,
                      download: bool = False, caller: Caller = me_dep) -> Response:
        access.require_admin(caller.who, "read templates")
        name, data = te.stored_text(template_id, version=version, draft=draft, store=st.store)
        headers = {}
        if download:
            suffix = "-draft" if draft else f"-v{version}" if version else ""
            stem = name.rsplit(".", 1)[0] if "." in name else name
            filename = f"{template_id}{suffix}-{stem}.yaml" if stem != "template" else f"{template_id}{suffix}.yaml"
            headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        return Response(data, media_type="application/yaml", headers=headers)

    @router.get("/templates/{template_id}/files", tags=["templates"], summary="Files in the template's folder (admins)")
    def template_files(template_id: str, caller: Caller = me_dep) -> list[dict]:
        access.require_admin(caller.who, "read templates")
        return te.list_files(template_id, store=st.store)

    @router.put("/templates/{template_id}/files", tags=["templates"], status_code=201,
                summary="Upload a file (raw body) into the template's folder under ?name= (admins)")
    async def template_upload_file(template_id: str, request: Request, name: str = Query(..., max_length=255),
                                   caller: Caller = me_dep) -> JSONResponse:
        access.require_admin(caller.who, "upload template files")
        te.check_upload_name(name)
        if request.headers.get("content-type", "").startswith(("application/x-www-form-urlencoded",
                                                               "multipart/form-data")):
            # A form body is not a file (and the CSRF check may have read it already).
            raise ApiError(415, "unsupported_media_type", "file: send the file as the raw request body "
                           "(e.g. application/octet-stream) with the X-CSRF-Token header, not as a form", field="file")
        limit = te.MAX_UPLOAD_BYTES
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, "too_large", f"file: {declared} bytes; files are limited to {limit} bytes", field="file")
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > limit:
                raise ApiError(413, "too_large", f"file: files are limited to {limit} bytes", field="file")
        result = await asyncio.to_thread(te.upload_file, caller.who, template_id, name, bytes(data), store=st.store)
        return JSONResponse(result, status_code=201)

    return router
