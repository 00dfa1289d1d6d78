"""The template editor's API without containers: create, open, save (versions and drafts), field-located
problems, optimistic concurrency, uploads, YAML round trip, build refused while the draft has problems.

Runs the real ASGI app (FastAPI's TestClient) on a per-test data dir, as tests/test_server.py does.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from codestudio import access, signin  # noqa: E402
from codestudio import template_editing as te  # noqa: E402

UI = "http://localhost:8801"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

CLI_TEMPLATE = """\
# Added from the CLI: comments, key order and flow style must survive an edit.
id: cli-t
label: From the CLI   # trailing comment
description: an entrypoint and a sync
blocks:
  # the web server
  - type: entrypoint
    label: Web
    command: [python3, -m, http.server, "8080"]
    port: 8080
    expose_html: true
  - type: file-sync
    mappings:
      - {zone: code_studio-versioned}
    exclusions: ["*.pyc"]   # compiled files
  - type: dockerfile
    statements: |
      RUN echo one
      RUN echo two
"""


class Srv:
    """The app on a data dir, and signed-in clients (as in tests/test_server.py)."""

    def __init__(self, home: Path):
        from codestudio.server.app import create_app
        from codestudio.server.settings import ServerSettings
        from codestudio.store import Store

        self.home = home
        self.store = Store(home / "state.db")
        self.root = access.identify(store=self.store)  # the OS user: first admin
        self.app = create_app(ServerSettings(content_url="http://127.0.0.1:8800"), data_dir=home, poll_interval=0.05)

    def signed_in(self, user: str) -> TestClient:
        c = TestClient(self.app, base_url=UI, raise_server_exceptions=False)
        key = signin.new_link_key(self.root, user, ttl=600, store=self.store)[1]
        assert c.post("/signin", data={"key": key}, follow_redirects=False).status_code == 303
        page = c.get("/").text
        c.headers["X-CSRF-Token"] = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
        return c


@pytest.fixture
def srv(codestudio_home):
    s = Srv(codestudio_home)
    s.app.state.cs.jobs.install_capture()
    try:
        yield s
    finally:
        s.app.state.cs.jobs.shutdown()


@pytest.fixture
def admin(srv):
    return srv.signed_in(srv.root.name)


def _err(r) -> dict:
    return r.json()["error"]


def _changed_lines(before: str, after: str) -> list[str]:
    return [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
            if not line.startswith(("---", "+++", "@@"))]


def _cli_add(srv, write_template, text=CLI_TEMPLATE):
    from codestudio.templates_store import add_template

    return add_template(srv.root, write_template(text))[0]


def _save(client, tid, opened, document=None, origins=None):
    body = {"revision": opened["revision"], "document": document or opened["document"],
            "origins": origins if origins is not None else opened["origins"]}
    return client.put(f"/api/v1/templates/{tid}/editor", json=body)


# --------------------------------------------------------------------------- block types, create


def test_block_types_have_schema_summary_distribution_and_group(admin):
    rows = {r["type"]: r for r in admin.get("/api/v1/blocks").json()}
    assert rows["jupyterlab"]["group"] == "standard" and rows["jupyterlab"]["distribution"] == "codestudio-jupyterlab"
    assert rows["entrypoint"]["group"] == "advanced" and rows["entrypoint"]["summary"]
    assert rows["jupyterlab"]["schema"]["properties"]["port"]["default"] == 8888


def test_create_checks_the_id_and_stores_version_1(srv, admin):
    r = admin.post("/api/v1/templates/create", json={"id": "Bad_Id"})
    assert r.status_code == 422 and _err(r)["field"] == "id"
    r = admin.post("/api/v1/templates/create", json={"id": "ok-t", "label": "OK", "base_image": "not an image!"})
    assert r.status_code == 422 and any(p["field"] == "base_image" for p in _err(r)["problems"])
    assert admin.get("/api/v1/templates").json() == []
    r = admin.post("/api/v1/templates/create", json={"id": "ok-t", "label": "OK", "description": "made in the UI"})
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 1 and r.json()["document"]["label"] == "OK"
    stored = admin.get("/api/v1/templates/ok-t/yaml").text
    assert stored == "id: ok-t\nlabel: OK\ndescription: made in the UI\nblocks: []\n"
    r = admin.post("/api/v1/templates/create", json={"id": "ok-t"})
    assert r.status_code == 409 and "already exists" in _err(r)["message"] and _err(r)["field"] == "id"
    alice = srv.signed_in("alice")
    assert alice.post("/api/v1/templates/create", json={"id": "x-t"}).status_code == 403


# --------------------------------------------------------------------------- save: versions, drafts, problems


def test_save_valid_makes_a_version_invalid_a_draft_located_at_block_and_field(srv, admin):
    admin.post("/api/v1/templates/create", json={"id": "ed-t"})
    opened = admin.get("/api/v1/templates/ed-t/editor").json()
    doc = dict(opened["document"], blocks=[{"type": "jupyterlab"}])
    r = _save(admin, "ed-t", opened, doc, [None])
    assert r.status_code == 200 and r.json()["saved"] == "version" and r.json()["version"] == 2, r.text
    opened = admin.get("/api/v1/templates/ed-t/editor").json()
    assert opened["document"]["blocks"] == [{"type": "jupyterlab"}] and opened["origins"] == [0]

    bad = dict(opened["document"], blocks=[
        {"type": "jupyterlab"},
        {"type": "entrypoint", "label": "two\nlines", "command": ["sleep", "1"], "port": 70000},
        {"type": "file-sync", "mappings": [{"zone": "code_studio-versioned"}], "exclusions": ["*.pyc", "!keep.pyc"]},
    ])
    r = _save(admin, "ed-t", opened, bad, [0, None, None])
    assert r.status_code == 200 and r.json()["saved"] == "draft"
    located = {(p["block"], p["type"], p["field"]) for p in r.json()["problems"]}
    assert {(1, "entrypoint", "port"), (1, "entrypoint", "label"), (2, "file-sync", "exclusions")} <= located
    # Nothing new was stored as a version; the draft is what the editor opens, and building is refused.
    assert admin.get("/api/v1/templates/ed-t").json()["version"] == 2
    opened = admin.get("/api/v1/templates/ed-t/editor").json()
    assert opened["draft"] and len(opened["document"]["blocks"]) == 3 and opened["problems"]
    assert "70000" in admin.get("/api/v1/templates/ed-t/yaml?draft=true").text
    r = admin.post("/api/v1/templates/ed-t/build")
    assert r.status_code == 422 and _err(r)["code"] == "template_invalid" and "draft" in _err(r)["message"]
    from codestudio.errors import TemplateError
    from codestudio.templates_store import build_template

    with pytest.raises(TemplateError, match="draft"):  # `codestudio template build ed-t` too, before any build work
        build_template("ed-t")
    # Fixed: a new version, the draft gone.
    fixed = opened["document"]
    fixed["blocks"][1].update(label="Two", port=8090)
    fixed["blocks"][2]["exclusions"] = ["*.pyc"]
    r = _save(admin, "ed-t", opened, fixed)
    assert r.json()["saved"] == "version" and r.json()["version"] == 3, r.text
    assert not admin.get("/api/v1/templates/ed-t/editor").json()["draft"]


def test_unknown_block_type_is_kept_shown_and_not_buildable(srv, admin, write_template):
    """A template from an installation that has a block type this one lacks."""
    _cli_add(srv, write_template, "id: other-t\nblocks:\n  - type: jupyterlab\n")
    opened = admin.get("/api/v1/templates/other-t/editor").json()
    doc = dict(opened["document"], blocks=[{"type": "jupyterlab"}, {"type": "not-here", "greeting": "hi", "n": 3}])
    r = _save(admin, "other-t", opened, doc, [0, None])
    assert r.json()["saved"] == "draft"
    assert any(p["block"] == 1 and p["field"] == "type" and "not-here" in p["message"] for p in r.json()["problems"])
    opened = admin.get("/api/v1/templates/other-t/editor").json()
    assert opened["document"]["blocks"][1] == {"type": "not-here", "greeting": "hi", "n": 3}  # not lost
    # Editing something else keeps the unknown block as it is.
    opened["document"]["label"] = "Edited"
    r = _save(admin, "other-t", opened)
    assert r.json()["saved"] == "draft" and "greeting: hi" in r.json()["yaml"] and "label: Edited" in r.json()["yaml"]
    assert admin.post("/api/v1/templates/other-t/build").status_code == 422


# --------------------------------------------------------------------------- concurrency


def test_second_tab_save_is_refused_changed_since_you_opened_it(admin, srv):
    admin.post("/api/v1/templates/create", json={"id": "cc-t"})
    tab1 = admin.get("/api/v1/templates/cc-t/editor").json()
    tab2 = admin.get("/api/v1/templates/cc-t/editor").json()
    r = _save(admin, "cc-t", tab1, dict(tab1["document"], label="from tab 1"))
    assert r.json()["saved"] == "version"
    r = _save(admin, "cc-t", tab2, dict(tab2["document"], label="from tab 2"))
    assert r.status_code == 409 and _err(r)["code"] == "changed_since_opened"
    assert "changed since you opened it" in _err(r)["message"]
    stored = admin.get("/api/v1/templates/cc-t/yaml").text
    assert "from tab 1" in stored and "from tab 2" not in stored
    # The refused tab still has its document; after reopening, its edit saves.
    tab2b = admin.get("/api/v1/templates/cc-t/editor").json()
    assert _save(admin, "cc-t", tab2b, dict(tab2b["document"], label="from tab 2")).json()["saved"] == "version"
    # If-Match must agree with the body's revision.
    r = admin.put("/api/v1/templates/cc-t/editor", json={"revision": "x", "document": {}},
                  headers={"If-Match": '"y"'})
    assert r.status_code == 422


def test_a_cli_add_in_between_is_a_conflict_too(srv, admin, write_template):
    _cli_add(srv, write_template)
    opened = admin.get("/api/v1/templates/cli-t/editor").json()
    _cli_add(srv, write_template, CLI_TEMPLATE.replace("From the CLI", "CLI v2"))
    r = _save(admin, "cli-t", opened, dict(opened["document"], label="mine"))
    assert r.status_code == 409


# --------------------------------------------------------------------------- YAML round trip


def test_cli_template_saves_back_unchanged_except_the_edit(srv, admin, write_template):
    _cli_add(srv, write_template)
    opened = admin.get("/api/v1/templates/cli-t/editor").json()
    assert opened["yaml"] == CLI_TEMPLATE
    # No edit: the same version (same bytes).
    r = _save(admin, "cli-t", opened)
    assert r.json()["version"] == 1 and not r.json()["new_version"]
    doc = opened["document"]
    doc["blocks"][0]["port"] = 8081
    doc["blocks"][0]["command"][3] = "8081"
    r = _save(admin, "cli-t", opened, doc)
    assert r.json()["version"] == 2, r.text
    stored = admin.get("/api/v1/templates/cli-t/yaml?version=2").text
    assert _changed_lines(CLI_TEMPLATE, stored) == [
        '-    command: [python3, -m, http.server, "8080"]', '-    port: 8080',
        '+    command: [python3, -m, http.server, "8081"]', '+    port: 8081']
    # Reorder, duplicate and remove: untouched blocks keep their text, comments and flow style.
    opened = admin.get("/api/v1/templates/cli-t/editor").json()
    blocks = opened["document"]["blocks"]
    doc = dict(opened["document"], blocks=[blocks[2], blocks[1], blocks[2]])
    r = _save(admin, "cli-t", opened, doc, [2, 1, 2])
    assert r.json()["saved"] == "version", r.text
    text = r.json()["yaml"]
    assert text.startswith("# Added from the CLI") and "label: From the CLI   # trailing comment" in text
    assert text.count("    statements: |\n      RUN echo one\n      RUN echo two\n") == 2
    assert '      - {zone: code_studio-versioned}\n    exclusions: ["*.pyc"]' in text
    assert "type: entrypoint" not in text
    # Download: exactly the stored bytes, as an attachment.
    r = admin.get("/api/v1/templates/cli-t/yaml?version=3&download=true")
    assert r.text == text and "attachment" in r.headers["content-disposition"]


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_examples_round_trip_an_edit_as_one_line(example):
    text = (EXAMPLES / example).read_text()
    doc, origins = te.document_of(text)
    assert te.apply_document(text, doc, origins) is text
    doc["label"] = "Edited label"
    after = te.apply_document(text, doc, origins)
    changed = _changed_lines(text, after)
    assert len(changed) == 2 and changed[1] == "+label: Edited label", changed


# --------------------------------------------------------------------------- uploads


def test_uploads_refuse_dotdot_absolute_and_too_large_and_store_nothing(admin, monkeypatch, codestudio_home):
    admin.post("/api/v1/templates/create", json={"id": "up-t"})
    for name in ("../evil.txt", "a/../../evil.txt", "/etc/passwd", "..", "a\\b", ".draft/x"):
        r = admin.put("/api/v1/templates/up-t/files", params={"name": name}, content=b"x")
        assert r.status_code == 422 and _err(r)["field"] == "name", (name, r.text)
    monkeypatch.setattr(te, "MAX_UPLOAD_BYTES", 1024)
    r = admin.put("/api/v1/templates/up-t/files", params={"name": "big.bin"}, content=b"x" * 1025)
    assert r.status_code == 413 and _err(r)["field"] == "file"
    assert admin.get("/api/v1/templates/up-t/files").json() == []
    assert not (codestudio_home / "evil.txt").exists() and not (codestudio_home / "templates" / "evil.txt").exists()

    r = admin.put("/api/v1/templates/up-t/files", params={"name": "files/extra.crt"}, content=b"CERT\n")
    assert r.status_code == 201
    assert admin.get("/api/v1/templates/up-t/files").json() == [{"name": "files/extra.crt", "size": 5, "where": "uploaded"}]
    opened = admin.get("/api/v1/templates/up-t/editor").json()
    doc = dict(opened["document"], blocks=[
        {"type": "dockerfile", "run_as_root": True, "statements": "COPY extra.crt /tmp/extra.crt",
         "resources": ["files/extra.crt"]},
        {"type": "starter-files", "resources": ["files/extra.crt"]},
    ])
    r = _save(admin, "up-t", opened, doc, [None, None])
    assert r.json()["saved"] == "version", r.text
    from codestudio.templates_store import get_template

    stored = get_template("up-t")
    assert (stored.path.parent / "files" / "extra.crt").read_bytes() == b"CERT\n"
    # A resource naming a file that is not there: located at the block's resources.
    opened = admin.get("/api/v1/templates/up-t/editor").json()
    opened["document"]["blocks"][0]["resources"] = ["files/missing.crt"]
    r = _save(admin, "up-t", opened)
    assert r.json()["saved"] == "draft"
    assert any(p["block"] == 0 and (p["field"] or "").startswith("resources") for p in r.json()["problems"]), r.json()


def test_bad_save_bodies_name_the_request_field(admin):
    admin.post("/api/v1/templates/create", json={"id": "bb-t"})
    opened = admin.get("/api/v1/templates/bb-t/editor").json()
    cases = [
        (dict(opened["document"], id="other"), None, "document.id"),
        (dict(opened["document"], permissions={"all": True}), None, "document.permissions"),
        (dict(opened["document"], blocks="no"), None, "document.blocks"),
        (dict(opened["document"], blocks=[{"type": "jupyterlab"}]), [0, 1], "origins"),
    ]
    for doc, origins, field in cases:
        r = admin.put("/api/v1/templates/bb-t/editor", json={"revision": opened["revision"], "document": doc,
                                                             "origins": origins})
        assert r.status_code == 422 and _err(r)["field"] == field, (field, r.text)
    assert admin.get("/api/v1/templates/bb-t").json()["version"] == 1


# --------------------------------------------------------------------------- the engine's located problems


def test_template_errors_locate_each_problem_at_block_and_field(tmp_path, blocks):
    from codestudio.errors import TemplateError

    path = tmp_path / "t.yaml"
    path.write_text("id: Bad Id\nblocks:\n  - type: file-sync\n    mappings:\n      - {zone: nowhere}\n"
                    "  - type: nope\n  - type: jupyterlab\n    port: 0\n")
    with pytest.raises(TemplateError) as info:
        from codestudio.template import load_template

        load_template(path, blocks)
    located = {(d["block"], d["type"], d["field"]) for d in info.value.details}
    assert {(None, None, "id"), (0, "file-sync", "mappings.0.zone"), (1, "nope", "type"), (2, "jupyterlab", "port")} <= located
    assert [d["message"] for d in info.value.details] == info.value.problems
    # Problems found while applying the blocks (two blocks on one port) are located too.
    path.write_text("id: ok\nblocks:\n  - type: jupyterlab\n  - type: entrypoint\n    label: x\n    command: [a]\n    port: 8888\n")
    problems = te.problems_of(path)
    assert any(p["block"] == 1 and p["type"] == "entrypoint" and p["field"] == "port" for p in problems), problems


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(port=st.integers(1, 65535), label=st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF,
                                                               blacklist_categories=("Cs",)), min_size=1, max_size=30))
def test_an_edit_changes_only_its_own_lines(port, label):
    doc, origins = te.document_of(CLI_TEMPLATE)
    doc["blocks"][0]["port"] = port
    doc["blocks"][0]["label"] = label
    after = te.apply_document(CLI_TEMPLATE, doc, origins)
    again, _ = te.document_of(after)
    assert again["blocks"][0]["port"] == port and again["blocks"][0]["label"] == label
    assert again["blocks"][1:] == te.document_of(CLI_TEMPLATE)[0]["blocks"][1:]
    changed = [line for line in _changed_lines(CLI_TEMPLATE, after) if line.startswith("+")]
    assert all(line.startswith(("+    label:", "+    port:")) or line.startswith("+     ") for line in changed), changed


@pytest.mark.parametrize("label", ["a\x85b", "ab\x85", "a\u2028b", "a\u2029b", "a\x0bb"])
def test_line_break_characters_of_yaml_are_written_escaped(label):
    # YAML reads NEL (U+0085), LS and PS as line breaks: written as they are in a quoted
    # scalar they were folded (NEL came back as a space) over two lines. The hypothesis
    # test above found it once; this pins it.
    doc, origins = te.document_of(CLI_TEMPLATE)
    doc["blocks"][0]["label"] = label
    after = te.apply_document(CLI_TEMPLATE, doc, origins)
    assert te.document_of(after)[0]["blocks"][0]["label"] == label
    changed = [line for line in _changed_lines(CLI_TEMPLATE, after) if line.startswith("+")]
    assert len(changed) == 1 and changed[0].startswith('+    label: "'), changed


def test_editor_pages_run_only_their_own_scripts_and_escape_template_text(srv, admin):
    r = admin.post("/api/v1/templates/create", json={"id": "csp-t", "label": "<script>alert(1)</script>",
                                                     "description": "a & b <i>"})
    assert r.status_code == 201, r.text
    for path in ("/admin/templates", "/admin/templates/csp-t"):
        page = admin.get(path)
        assert page.status_code == 200
        assert "script-src 'self'" in page.headers["content-security-policy"]
        scripts = re.findall(r"<script[^>]*>", page.text)
        assert scripts and all('src="/static/' in s for s in scripts), scripts
        assert "<script>alert(1)</script>" not in page.text
    page = admin.get("/admin/templates/csp-t").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "a &amp; b &lt;i&gt;" in page
    assert admin.get("/static/editor.js").status_code == 200


def test_round_trip_keeps_a_document_start_and_a_zero_offset_list_style():
    text = "---\n# about\nid: x\nlabel: a\nblocks:\n- type: jupyterlab\n- {type: codeenv, name: e}  # env\n"
    doc, origins = te.document_of(text)
    doc["label"] = "b"
    assert te.apply_document(text, doc, origins) == text.replace("label: a", "label: b")


# --------------------------------------------------------------------------- races and edge cases


def test_two_creates_of_one_id_at_once_make_one_template_and_a_409(srv, admin, monkeypatch):
    import threading

    from codestudio import templates_store

    real = templates_store.add_template
    both_checked = threading.Barrier(2, timeout=5)

    def slow_add(*args, **kw):  # both creates have passed any check made before the add
        try:
            both_checked.wait()
        except threading.BrokenBarrierError:
            pass  # the second is held by the lock: it never gets here before the first is stored
        return real(*args, **kw)

    monkeypatch.setattr(templates_store, "add_template", slow_add)
    statuses = []
    other = srv.signed_in(srv.root.name)

    def create(client):
        statuses.append(client.post("/api/v1/templates/create", json={"id": "race-t"}).status_code)

    threads = [threading.Thread(target=create, args=(c,)) for c in (admin, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [201, 409]
    assert [v["version"] for v in admin.get("/api/v1/templates").json() if v["id"] == "race-t"] == [1]
    from codestudio.templates_store import get_template

    assert get_template("race-t").version == 1


def test_a_cli_template_add_takes_the_editors_lock(srv, admin, write_template):
    import threading

    from codestudio.home import data_dir
    from codestudio.locks import file_lock

    _cli_add(srv, write_template)
    done = threading.Event()
    with file_lock(data_dir() / "locks" / "edit-cli-t.lock"):  # as a save between its revision check and its add
        t = threading.Thread(target=lambda: (_cli_add(srv, write_template,
                                                      CLI_TEMPLATE.replace("From the CLI", "CLI v2")), done.set()))
        t.start()
        assert not done.wait(1.0)  # the CLI add waits for the save
    t.join(10)
    assert done.is_set()


def test_an_upload_under_an_uploaded_file_is_a_4xx_naming_name(admin):
    admin.post("/api/v1/templates/create", json={"id": "nest-t"})
    assert admin.put("/api/v1/templates/nest-t/files", params={"name": "a"}, content=b"x").status_code == 201
    r = admin.put("/api/v1/templates/nest-t/files", params={"name": "a/b"}, content=b"y")
    assert r.status_code == 422 and _err(r)["field"] == "name" and "'a' is an uploaded file" in _err(r)["message"]
    assert [f["name"] for f in admin.get("/api/v1/templates/nest-t/files").json()] == ["a"]


def test_an_upload_with_the_csrf_token_in_a_form_body_is_never_a_500(srv, admin):
    admin.post("/api/v1/templates/create", json={"id": "form-t"})
    token = admin.headers.pop("X-CSRF-Token")
    r = admin.put("/api/v1/templates/form-t/files", params={"name": "f.txt"},
                  content=f"csrf_token={token}".encode(), headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415 and _err(r)["field"] == "file", r.text
    assert admin.get("/api/v1/templates/form-t/files").json() == []
