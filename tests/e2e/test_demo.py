"""End-to-end: ``make demo`` (codestudio.demo) needs no set-up, projects included."""

from __future__ import annotations

import socket
import uuid

import pytest

pytestmark = pytest.mark.e2e

TEMPLATE = """\
id: demo-e2e-{run}
base_image: {base}
blocks:
  - type: entrypoint
    label: Server
    command: [python3, -m, http.server, "8080"]
    port: 8080
    expose_html: true
"""


def test_demo_creates_its_project_for_the_demo_user(tmp_path, debian_base, codestudio_home, monkeypatch,
                                                      image_cleanup):
    from codestudio import demo
    from codestudio.access import identify
    from codestudio.projects import get_project
    from codestudio.runtime import studios as rts

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("CODESTUDIO_GATEWAY_PORT", str(s.getsockname()[1]))
    monkeypatch.delenv("CODESTUDIO_USER", raising=False)
    # The base image is the session's (building it again in this fresh data dir only costs time).
    import types

    import codestudio.images

    monkeypatch.setattr(codestudio.images, "build_base",
                        lambda **kw: types.SimpleNamespace(image=debian_base, outcome="skipped"))
    run = uuid.uuid4().hex[:6]
    image_cleanup(f"demo-e2e-{run}")
    (tmp_path / "t.yaml").write_text(TEMPLATE.format(run=run, base=debian_base))
    try:
        studio_id, url = demo.run(str(tmp_path / "t.yaml"), timeout=120)
        who = identify()
        project = get_project(demo.PROJECT)
        assert project.owner == who.name and project.origin == "created"
        assert rts.get_studio(studio_id).state == rts.RUNNING
        assert f"/code-studios/{demo.PROJECT}/{studio_id}/" in url
        again, _ = demo.run(str(tmp_path / "t.yaml"), timeout=120)  # idempotent, project included
        assert again == studio_id
    finally:
        for s in rts.list_studios():
            rts.delete_studio(identify(), s.id, force=True, purge=True)
        rts._gateway().stop()
