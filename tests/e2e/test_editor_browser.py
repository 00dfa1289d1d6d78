"""The template editor in a real browser (Debian's chromium + chromedriver, Selenium), over a real server process.

One module-wide data dir and server (``codestudio server`` in a subprocess)
with the held-out third-party block ``codestudio-hello`` installed with pip
(on the server's ``PYTHONPATH`` only: the editor has no code for it).

- Forms, without containers: a New template with its id checked as typed;
  the hello block's generated form; invalid input (port 70000, an
  entrypoint label with a newline, a ``!`` exclusion) shown at its field,
  the build refused until fixed; move, duplicate, remove; uploads refused
  (``..``, above the size limit) with nothing stored; two tabs editing at
  once (the second save refused, its edits kept in the page); a block type
  from another installation shown, kept and not buildable.
- The admin's flow by clicks, with real buildah, podman and nginx: create
  ``jupyter-lab-template``, add the JupyterLab block, build (the layers of
  the JupyterLab image other tests build are reused), grant it to a group;
  then a member creates a studio from it, starts it and opens JupyterLab.
- A code env above, then below, the JupyterLab block: its kernel is
  registered in both orders (``/api/kernelspecs`` through the studio).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

import test_server_browser as B  # noqa: E402  (tests/e2e is on pytest's pythonpath)
from test_server_browser import browser  # noqa: E402,F401  (the chromium fixture)

By, WebDriverWait, Select = B.By, B.WebDriverWait, B.Select
RUN = uuid.uuid4().hex[:6]
REPO = Path(__file__).resolve().parents[2]

# A block of another installation: installed only for the CLI that adds the template.
ELSEWHERE = '''\
from codestudio import hookimpl
from codestudio.blockapi import Block, BlockParams, Run


class P(BlockParams):
    colour: str = "blue"


class ElsewhereBlock(Block):
    Params = P
    summary = "A block this server does not have"

    @hookimpl
    def contribute_dockerfile(self, block, state):
        return [Run(script="true")]
'''

# A block whose help text holds markup: the editor must show it as text.
MARKUP = '''\
from pydantic import Field

from codestudio import hookimpl
from codestudio.blockapi import Block, BlockParams, Run


class P(BlockParams):
    shade: str = Field(default="", description="Shown <b>as text</b> & <img src=x onerror=alert(1)>",
                       examples=["<i>teal</i>"])


class MarkupBlock(Block):
    Params = P
    summary = "A block whose help text holds markup"

    @hookimpl
    def contribute_dockerfile(self, block, state):
        return [Run(script="true")]
'''


def _package(root: Path, name: str, entry: str, source: str) -> Path:
    module = name.replace("-", "_")
    (root / module).mkdir(parents=True)
    (root / module / "__init__.py").write_text(source)
    (root / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{name}"
        version = "0.0.1"
        [project.entry-points."codestudio.blocks"]
        {entry}
        [tool.setuptools]
        packages = ["{module}"]
        """))
    return root


def _pip_target(src: Path, target: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(src)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def ed(tmp_path_factory):
    work = tmp_path_factory.mktemp("editor")
    home = work / "home"
    home.mkdir()
    site = work / "site"
    # The held-out third-party block, installed with pip from a copy (setuptools writes next to the sources).
    hello = work / "codestudio-hello"
    import shutil

    shutil.copytree(REPO / "tests" / "fixtures" / "codestudio-hello", hello)
    _pip_target(hello, site)
    _pip_target(_package(work / "codestudio-markup", "codestudio-markup", 'markup = "codestudio_markup:MarkupBlock"',
                         MARKUP), site)
    other = work / "codestudio-elsewhere"
    (other / "codestudio_elsewhere").mkdir(parents=True)
    (other / "codestudio_elsewhere" / "__init__.py").write_text(ELSEWHERE)
    (other / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "codestudio-elsewhere"
        version = "0.0.1"
        [project.entry-points."codestudio.blocks"]
        elsewhere = "codestudio_elsewhere:ElsewhereBlock"
        [tool.setuptools]
        packages = ["codestudio_elsewhere"]
        """))
    other_site = work / "other-site"
    _pip_target(other, other_site)

    gateway_port, ui_port = B._free_port(), B._free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("CODESTUDIO_USER", "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")}
    env.update(CODESTUDIO_HOME=str(home), CODESTUDIO_GATEWAY_PORT=str(gateway_port), CODESTUDIO_START_TIMEOUT="300",
               NO_PROXY="*", no_proxy="*", PYTHONPATH=os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")])))
    log = home / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "codestudio", "server", "--port", str(ui_port),
                                 "--content-url", f"http://127.0.0.1:{gateway_port}"],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    e = B.Env(home, gateway_port, ui_port, log, proc, "", env)
    e.other_env = dict(env, PYTHONPATH=os.pathsep.join([str(other_site), env["PYTHONPATH"]]))
    e.built = []
    try:
        for _ in range(100):
            try:
                if B._http("GET", f"{e.ui}/api/v1/openapi.json")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            raise AssertionError(f"server did not come up:\n{e.log_text()}")
        e.admin = json.loads(e.cli("admin", "whoami", "--json").stdout)["user"]
        yield e
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        listed = e.cli("studio", "list", "--all", "--json", check=False).stdout
        for row in json.loads(listed or "[]"):
            e.cli("studio", "delete", row["id"], "--force", check=False)
        e.cli("gateway", "stop", check=False)
        from codestudio import containers

        for tid in e.built:  # never jupyter-lab-template: its image is the one other tests share
            for ref in containers.image_refs(f"localhost/codestudio/{tid}"):
                containers.remove_image(ref)


# --------------------------------------------------------------------------- page helpers


def _editor(d, ed, template_id: str) -> None:
    d.get(f"{ed.ui}/admin/templates/{template_id}")
    d.refresh()  # a fresh page even when the browser was on one of its tabs (only the #fragment differs)
    _tab(d, "definition")
    WebDriverWait(d, 30).until(lambda drv: drv.find_elements(By.CSS_SELECTOR, "[data-editor][data-ready]"))


def _create(d, ed, template_id: str, label: str = "") -> None:
    d.get(f"{ed.ui}/admin/templates")
    d.find_element(By.ID, "new-id").send_keys(template_id)
    if label:
        d.find_element(By.ID, "new-label").send_keys(label)
    d.find_element(By.ID, "create-template-button").click()
    WebDriverWait(d, 30).until(lambda drv: drv.find_elements(By.CSS_SELECTOR, "[data-editor][data-ready]"))


def _add_block(d, block_type: str):
    d.find_element(By.ID, "add-block").click()
    d.find_element(By.CSS_SELECTOR, f'[data-add-type="{block_type}"]').click()
    return d.find_elements(By.CSS_SELECTOR, "#blocks li.block")[-1]


def _field(d, path: str):
    return d.find_element(By.CSS_SELECTOR, f'#panel-definition [data-path="{path}"]')


def _input(d, path: str):
    return d.find_element(By.CSS_SELECTOR, f'#panel-definition [data-path="{path}"] [data-path-input="{path}"]')


def _note(d, path: str) -> str:
    return _field(d, path).find_element(By.CSS_SELECTOR, ":scope > .problem-note").get_attribute("textContent")


def _save(d) -> str:
    root = d.find_element(By.CSS_SELECTOR, "[data-editor]")
    before = root.get_attribute("data-saved")
    d.find_element(By.ID, "save").click()
    WebDriverWait(d, 60).until(lambda drv: root.get_attribute("data-saved") != before)
    return d.find_element(By.ID, "save-status").text


def _tab(d, name: str) -> None:
    d.find_element(By.ID, f"tab-{name}").click()


def _build(d) -> str:
    _tab(d, "build")
    d.find_element(By.ID, "build").click()
    log = B._wait_text(d, By.ID, "buildlog", r"\ndone$|FAILED", 1200)
    assert "FAILED" not in log, log
    return log


def _stored(ed, template_id: str, token: str, **query) -> str:
    q = "&".join(f"{k}={v}" for k, v in query.items())
    status, text = B._http("GET", f"{ed.ui}/api/v1/templates/{template_id}/yaml?{q}",
                           headers={"Authorization": f"Bearer {token}"})
    assert status == 200, text
    return text


# --------------------------------------------------------------------------- forms (no containers)


def test_forms_third_party_problems_at_fields_uploads_tabs_and_other_installations(ed, browser, tmp_path):
    d = browser
    token = ed.token(ed.admin)
    B._sign_in(d, ed.link(ed.admin))
    d.get(f"{ed.ui}/admin/templates")
    # The id is checked as it is typed.
    d.find_element(By.ID, "new-id").send_keys("Forms_1")
    assert "lowercase" in d.find_element(By.ID, "new-id-problem").text
    d.find_element(By.ID, "new-id").clear()
    tid = f"forms-{RUN}"
    _create(d, ed, tid, label="Forms <b>bold</b>")
    assert d.find_element(By.ID, "t-label").text == "Forms <b>bold</b>"  # shown as text, never as HTML
    assert not d.find_elements(By.CSS_SELECTOR, "#t-label b")

    # "Add a block" lists every installed type, grouped, with summary and distribution.
    d.find_element(By.ID, "add-block").click()
    groups = {g.get_attribute("data-group"): g.text for g in d.find_elements(By.CSS_SELECTOR, "#block-menu ul.block-types")}
    assert "jupyterlab" in groups["standard"] and "codestudio-jupyterlab" in groups["standard"]
    assert "entrypoint" in groups["advanced"] and "hello" in groups["other"] and "codestudio-hello 1.2.3" in groups["other"]
    d.find_element(By.ID, "add-block").click()

    # The held-out third-party block: its form comes from its schema alone.
    hello = _add_block(d, "hello")
    assert "Say hello at build time" in hello.text and "codestudio-hello" in hello.text
    for name in ("greeting", "port", "fail"):
        _field(d, f"b0.{name}")
    assert _input(d, "b0.greeting").get_attribute("placeholder") == "default: hello"
    assert "default: 8765" in _field(d, "b0.port").text
    _input(d, "b0.greeting").send_keys("bonjour")

    # Invalid input at three fields.
    _add_block(d, "entrypoint")
    _input(d, "b1.label").send_keys("two\nlines")
    command = _field(d, "b1.command")
    command.find_element(By.CSS_SELECTOR, "button.add-row").click()
    _input(d, "b1.command.0").send_keys("sleep")
    _field(d, "b1.command").find_element(By.CSS_SELECTOR, "button.add-row").click()
    _input(d, "b1.command.1").send_keys("1000")
    _input(d, "b1.port").send_keys("70000")
    _add_block(d, "file-sync")
    _field(d, "b2.mappings").find_element(By.CSS_SELECTOR, "button.add-row").click()
    Select(_input(d, "b2.mappings.0.zone")).select_by_visible_text("code_studio-versioned")
    _field(d, "b2.exclusions").find_element(By.CSS_SELECTOR, "button.add-row").click()
    _input(d, "b2.exclusions.0").send_keys("!keep.pyc")
    said = _save(d)
    assert "draft" in said and "3 problem" in said, (said, d.find_element(By.ID, "problems").text)
    assert "65535" in _note(d, "b1.port")
    assert "newline" in _note(d, "b1.label")
    assert "'!'" in _note(d, "b2.exclusions")
    assert "has-problem" in _field(d, "b1.port").get_attribute("class")
    assert "port: 70000" in _stored(ed, tid, token, draft="true")
    assert "blocks: []" in _stored(ed, tid, token)  # the latest version is unchanged
    _tab(d, "build")
    assert d.find_element(By.ID, "build").get_attribute("disabled") is not None
    assert "problem" in d.find_element(By.ID, "build-blocked").text
    status, body = ed.api("POST", f"/api/v1/templates/{tid}/build", token)
    assert status == 422 and "draft" in body["error"]["message"]

    # Fixed at the fields: a new version, buildable.
    _tab(d, "definition")
    _input(d, "b1.port").clear()
    _input(d, "b1.port").send_keys("8090")
    _input(d, "b1.label").clear()
    _input(d, "b1.label").send_keys("Sleeper")
    _input(d, "b2.exclusions.0").clear()
    _input(d, "b2.exclusions.0").send_keys("*.pyc")
    said = _save(d)
    assert "Saved as version 2" in said, said
    stored = _stored(ed, tid, token)
    assert "greeting: bonjour" in stored and "port: 8090" in stored and "*.pyc" in stored and "!keep" not in stored
    _tab(d, "build")
    assert d.find_element(By.ID, "build").get_attribute("disabled") is None
    _tab(d, "yaml")
    d.refresh()
    assert "greeting: bonjour" in d.find_element(By.ID, "yaml").text  # the YAML tab shows what is stored

    # Move, duplicate, remove.
    _tab(d, "definition")
    WebDriverWait(d, 30).until(lambda drv: drv.find_elements(By.CSS_SELECTOR, "[data-editor][data-ready]"))
    d.find_element(By.CSS_SELECTOR, "#block-0 button.duplicate").click()
    d.find_element(By.CSS_SELECTOR, "#block-1 button.move-down").click()  # the copy goes below the entrypoint
    d.find_element(By.CSS_SELECTOR, "#block-3 button.remove").click()  # file-sync
    assert [b.get_attribute("data-type") for b in d.find_elements(By.CSS_SELECTOR, "#blocks li.block")] == ["hello", "entrypoint", "hello"]
    said = _save(d)
    assert "draft" in said  # the copy's port 8765 is taken by the first hello: at the copy's port field
    assert "8765" in _note(d, "b2.port") or "8765" in d.find_element(By.ID, "problems").text
    _input(d, "b2.port").send_keys("8766")
    assert "Saved as version 3" in _save(d)
    assert _stored(ed, tid, token).count("type: hello") == 2 and "file-sync" not in _stored(ed, tid, token)

    # Uploads: '..' and too large are refused with a message; nothing stored.
    small = tmp_path / "extra.crt"
    small.write_text("CERT\n")
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * ((10 << 20) + 1))
    d.find_element(By.ID, "file-input").send_keys(str(small))
    d.find_element(By.ID, "file-name").send_keys("../evil.crt")
    d.find_element(By.ID, "file-upload").click()
    assert "'..'" in B._wait_text(d, By.ID, "file-error", "Not uploaded", 20)
    d.find_element(By.ID, "file-name").clear()
    d.find_element(By.ID, "file-input").send_keys(str(big))
    d.find_element(By.ID, "file-upload").click()
    assert "limited" in B._wait_text(d, By.ID, "file-error", "Not uploaded: .*limited", 60)
    assert ed.api("GET", f"/api/v1/templates/{tid}/files", token)[1] == []
    d.find_element(By.ID, "file-input").send_keys(str(small))
    d.find_element(By.ID, "file-name").send_keys("files/extra.crt")
    d.find_element(By.ID, "file-upload").click()
    B._wait_text(d, By.ID, "files", "files/extra.crt", 20)

    # Two tabs at once: the second save is refused, its edits stay in its page, nothing is lost.
    first = d.current_window_handle
    d.switch_to.new_window("tab")
    _editor(d, ed, tid)
    _input(d, "h.description").send_keys("from the other tab")
    assert "Saved as version 4" in _save(d)
    d.close()
    d.switch_to.window(first)
    _input(d, "h.label").send_keys(" edited")
    said = _save(d)
    assert "changed since you opened it" in said, said
    assert _input(d, "h.label").get_attribute("value") == "Forms <b>bold</b> edited"
    stored = _stored(ed, tid, token)
    assert "from the other tab" in stored and "edited" not in stored

    # A template from another installation: its block type is not installed here.
    other = tmp_path / "other.yaml"
    oid = f"elsewhere-{RUN}"
    other.write_text(f"id: {oid}\nblocks:\n  - type: elsewhere   # from the other installation\n    colour: red\n")
    proc = subprocess.run([sys.executable, "-m", "codestudio", "template", "add", str(other)], capture_output=True,
                          text=True, env=ed.other_env)
    assert proc.returncode == 0, proc.stderr
    _editor(d, ed, oid)
    block = d.find_element(By.CSS_SELECTOR, "#block-0.unknown")
    assert "not installed" in block.text and '"colour": "red"' in block.text
    _input(d, "h.label").send_keys("Edited here")
    said = _save(d)
    assert "draft" in said and "elsewhere" in d.find_element(By.ID, "problems").text
    note = d.find_element(By.CSS_SELECTOR, "#block-0.unknown .block-problems").get_attribute("textContent")
    assert "elsewhere" in note, note
    draft = _stored(ed, oid, token, draft="true")
    assert "  - type: elsewhere   # from the other installation\n    colour: red\n" in draft  # kept as it was
    assert "label: Edited here" in draft
    _tab(d, "build")
    assert d.find_element(By.ID, "build").get_attribute("disabled") is not None


def test_help_text_from_the_schemas_linked_to_its_inputs_and_shown_as_text(ed, browser):
    """Each field shows its schema description and examples: a standard block's, an advanced block's
    (examples as placeholders), the held-out third-party block's (only the label it inherits is
    described), and a description holding markup, shown as text."""
    from codestudio.blockapi import BlockParams
    from codestudio_advanced.kubernetes import KubernetesParams
    from codestudio_jupyterlab import JupyterLabParams

    d = browser
    B._sign_in(d, ed.link(ed.admin))
    _create(d, ed, f"help-{RUN}")
    for block_type in ("jupyterlab", "kubernetes", "hello", "markup"):
        _add_block(d, block_type)

    def help_of(path: str) -> dict:
        # The notes the input's aria-describedby names, by class, as the page's text.
        return d.execute_script("""
            const field = document.querySelector(`#panel-definition [data-path="${arguments[0]}"]`);
            const input = field.querySelector(`[data-path-input="${arguments[0]}"]`) || field.querySelector(':scope > [role=group]');
            const out = {};
            for (const id of (input.getAttribute('aria-describedby') || '').split(' ').filter(Boolean)) {
              const n = document.getElementById(id);
              out[n.className] = n.textContent;
            }
            out.all = Array.from(field.querySelectorAll(':scope > small')).map((n) => n.className);
            out.html = Array.from(field.querySelectorAll(':scope > small')).map((n) => n.innerHTML).join(' ');
            out.markup = field.querySelectorAll(':scope > small b, :scope > small img, :scope > small i').length;
            return out;""", path)

    # A standard block: the description of its model's field, its default, tied to the input.
    port = help_of("b0.port")
    assert port["help"] == JupyterLabParams.model_fields["port"].description
    assert port["default"] == "default: 8888" and port["all"] == ["help", "default"]
    packages = help_of("b0.packages")  # a list: the group carries the help; its rows' placeholders are examples
    assert packages["help"].startswith("Extra pip requirements") and "jupyterlab-git" in packages["examples"]
    _field(d, "b0.packages").find_element(By.CSS_SELECTOR, "button.add-row").click()
    assert _input(d, "b0.packages.0").get_attribute("placeholder") == "e.g. jupyterlab-git"

    # An advanced block: Kubernetes quantities and a probe URL, their examples as placeholders.
    cpu = help_of("b1.cpu")
    assert cpu["help"] == KubernetesParams.model_fields["cpu"].description and cpu["examples"] == "e.g. 500m · 2"
    assert _input(d, "b1.cpu").get_attribute("placeholder") == "e.g. 500m"
    assert _input(d, "b1.readiness_url").get_attribute("placeholder") == "e.g. ${baseUrl}/api/status"
    assert _input(d, "b1.gpu_resource").get_attribute("placeholder") == "default: nvidia.com/gpu"  # the default first

    # The held-out third-party block has no descriptions of its own: only the label it inherits is described.
    assert help_of("b2.label")["help"] == BlockParams.model_fields["label"].description
    assert help_of("b2.greeting")["all"] == ["default"] and "help" not in help_of("b2.greeting")
    assert help_of("b2.fail")["all"] == ["default"]  # its `#:` comment is not a description

    # Markup in a description or an example is text, never HTML.
    shade = help_of("b3.shade")
    assert shade["help"] == "Shown <b>as text</b> & <img src=x onerror=alert(1)>" and shade["markup"] == 0
    assert "&lt;b&gt;" in shade["html"] and shade["examples"] == "e.g. <i>teal</i>" and shade["all"] == ["help", "examples"]
    assert _input(d, "b3.shade").get_attribute("placeholder") == "e.g. <i>teal</i>"


# --------------------------------------------------------------------------- the admin's flow (containers)


def test_create_add_jupyterlab_build_grant_then_a_member_opens_it(ed, browser, debian_base):
    d = browser
    B._sign_in(d, ed.link(ed.admin))
    _create(d, ed, "jupyter-lab-template", label="JupyterLab")
    block = _add_block(d, "jupyterlab")
    assert "JupyterLab" in block.text
    assert "Saved as version 2" in _save(d)
    _build(d)
    result = d.find_element(By.ID, "build-result").text
    assert "localhost/codestudio/jupyter-lab-template:" in result
    # The same block parameters as the JupyterLab image other tests build: its layers are reused
    # (the whole image when its content is the same: the build is skipped).
    lab = d.find_element(By.CSS_SELECTOR, "#build-blocks li[data-block='0']")
    if "skipped" in result:
        assert "reused" in lab.text and "reused" in lab.get_attribute("class"), lab.text
    assert "succeeded" in d.find_element(By.ID, "builds").text or "skipped" in d.find_element(By.ID, "builds").text

    # General tab: grant it to a group; its member creates a studio in a project and opens JupyterLab.
    _tab(d, "general")
    d.find_element(By.ID, "grant-group").send_keys("lab-users")
    d.find_element(By.CSS_SELECTOR, "#grant-form button").click()
    B._wait_text(d, By.ID, "grants", "lab-users", 20)
    ed.cli("admin", "group", "add", "lab-users", "carol")
    ed.cli("project", "create", "EDLAB")
    ed.cli("project", "grant", "EDLAB", "--group", "lab-users")
    d.find_element(By.ID, "signout").click()
    WebDriverWait(d, 20).until(B.EC.url_contains("/signin"))
    B._sign_in(d, ed.link("carol"))
    form = d.find_element(By.ID, "create-form")
    Select(form.find_element(By.NAME, "project")).select_by_value("EDLAB")
    form.find_element(By.NAME, "name").send_keys("lab")
    Select(form.find_element(By.NAME, "template")).select_by_value("jupyter-lab-template")
    d.find_element(By.ID, "create").click()
    B._wait_text(d, By.CSS_SELECTOR, '[data-state-of="lab"]', "^STOPPED$", 30)
    d.find_element(By.CSS_SELECTOR, '#studio-lab button[data-api$="/start"]').click()
    B._wait_text(d, By.CSS_SELECTOR, '[data-state-of="lab"]', "^RUNNING$", 600)
    d.find_element(By.LINK_TEXT, "lab").click()
    ui_window = d.current_window_handle
    d.find_element(By.ID, "tab-8888").click()
    WebDriverWait(d, 20).until(lambda drv: len(drv.window_handles) == 2)
    d.switch_to.window([h for h in d.window_handles if h != ui_window][0])
    WebDriverWait(d, 120).until(lambda drv: "JupyterLab" in drv.title)
    assert d.current_url.startswith(f"{ed.content}/code-studios/EDLAB/lab/8888/")
    d.close()
    d.switch_to.window(ui_window)
    d.find_element(By.ID, "stop").click()
    B._wait_text(d, By.ID, "state", "^STOPPED$", 120)

    # The admin's General tab lists the studio.
    d.find_element(By.ID, "signout").click()
    WebDriverWait(d, 20).until(B.EC.url_contains("/signin"))
    B._sign_in(d, ed.link(ed.admin))
    d.get(f"{ed.ui}/admin/templates/jupyter-lab-template#general")
    assert "EDLAB/lab" in d.find_element(By.ID, "studios").text


def _kernels(d, ed, token: str, studio: str) -> dict:
    """The studio's kernelspecs, read in the browser through the gateway as the studio's owner."""
    status, link = ed.api("GET", f"/api/v1/studios/{studio}/open?port=8888", token)
    assert status == 200, link
    d.get(link["url"])
    WebDriverWait(d, 120).until(lambda drv: "JupyterLab" in drv.title)
    d.get(f"{ed.content}/code-studios/EDK/{studio}/8888/api/kernelspecs")
    return json.loads(d.find_element(By.TAG_NAME, "pre").text)


def _start(ed, token: str, studio: str) -> None:
    status, job = ed.api("POST", f"/api/v1/studios/{studio}/start", token)
    assert status == 202, job
    done = ed.wait_job(job["id"], token, timeout=900)
    assert done["state"] == "succeeded", done


def _stop(ed, token: str, studio: str) -> None:
    status, job = ed.api("POST", f"/api/v1/studios/{studio}/stop", token)
    assert status == 202, job
    assert ed.wait_job(job["id"], token, timeout=300)["state"] == "succeeded"


def test_code_env_above_and_below_jupyterlab_keeps_its_kernel(ed, browser, debian_base):
    d = browser
    token = ed.token(ed.admin)
    tid = f"ed-kernels-{RUN}"
    ed.built.append(tid)
    B._sign_in(d, ed.link(ed.admin))
    _create(d, ed, tid)
    # The same code env as the JupyterLab e2e image's first one (its layers may be cached).
    _add_block(d, "codeenv")
    _input(d, "b0.name").send_keys("before")
    _input(d, "b0.label").send_keys("Before env")
    _add_block(d, "jupyterlab")
    assert "Saved as version 2" in _save(d)
    _build(d)
    ed.cli("project", "create", "EDK", check=False)
    status, made = ed.api("POST", "/api/v1/studios", token, {"project": "EDK", "name": "kern", "template": tid})
    assert status == 201, made
    _start(ed, token, "kern")
    window = d.current_window_handle
    d.switch_to.new_window("tab")
    specs = _kernels(d, ed, token, "kern")
    assert specs["kernelspecs"]["before"]["spec"]["display_name"] == "Before env", specs
    d.close()
    d.switch_to.window(window)
    _stop(ed, token, "kern")

    # Below JupyterLab now: moved with the editor's buttons, rebuilt, the kernel still there.
    _editor(d, ed, tid)
    d.find_element(By.CSS_SELECTOR, "#block-0 button.move-down").click()
    assert [b.get_attribute("data-type") for b in d.find_elements(By.CSS_SELECTOR, "#blocks li.block")] == ["jupyterlab", "codeenv"]
    assert "Saved as version 3" in _save(d)
    stored = _stored(ed, tid, token)
    assert stored.index("type: jupyterlab") < stored.index("type: codeenv")
    _build(d)
    _start(ed, token, "kern")
    d.switch_to.new_window("tab")
    specs = _kernels(d, ed, token, "kern")
    assert specs["kernelspecs"]["before"]["spec"]["display_name"] == "Before env", specs
    d.close()
    d.switch_to.window(window)
    _stop(ed, token, "kern")
