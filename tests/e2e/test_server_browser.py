"""The web UI in a real browser (Debian's chromium + chromedriver, Selenium), over a real server process.

One module-wide data dir: the server (``codestudio server`` in a subprocess),
the gateway (nginx), studios in podman on the real Debian base image. As a
user: sign in with a link, create a studio, start it and watch RUNNING, open
its tab (whose page tries to use the UI's API with the viewer's session and
must fail), run an action, synchronise after an edit, stop. As an admin:
upload a template with an error and see it at its line, fix it, build it
with the live log, grant it to a group, and find it offered to a member.
Also: the server and the CLI starting and stopping the same studio at once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def _pod(studio) -> str:
    """The studio's pod under the local runtime."""
    from codestudio.runtime import local
    from codestudio.runtime.studios import pod_set_name

    return local.pod_name(pod_set_name(studio))


def _ctr(studio) -> str:
    return _pod(studio) + "-studio"

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

RUN = uuid.uuid4().hex[:6]
CHROMEDRIVER = "/usr/bin/chromedriver"

PAGE = """\
<!doctype html>
<html><head><title>studio page</title></head><body>
<h1 id="hello">studio page</h1>
<pre id="result">running</pre>
<script>
(async () => {
  const out = [];
  try {
    const r = await fetch("__UI__/api/v1/studios", {credentials: "include"});
    out.push("read: status " + r.status + " " + (await r.text()).slice(0, 200));
  } catch (e) { out.push("read: " + e.name); }
  try {
    await fetch("__UI__/api/v1/studios/__STUDIO__/stop", {method: "POST", credentials: "include", mode: "no-cors",
                 headers: {"Content-Type": "text/plain"}, body: "stop"});
    out.push("post: sent");
  } catch (e) { out.push("post: " + e.name); }
  document.getElementById("result").textContent = out.join("\\n") + "\\ndone";
})();
</script></body></html>
"""

TEMPLATE = """\
id: {id}
label: Web page
base_image: {base}
permissions:
  groups: [team]
blocks:
  - type: dockerfile
    label: page
    run_as_root: true
    statements: |
      COPY page /opt/page
    resources: [page]
  - type: entrypoint
    label: Page
    command: [python3, -m, http.server, "8080", --bind, 0.0.0.0, --directory, /opt/page]
    port: 8080
    expose_html: true
    proxied_subpath: /
  - type: action
    name: hello
    label: Say hello
    command: echo "hello from the action as $(id -un)"
    wait: true
  - type: starter-files
    zone: code_studio-versioned
    files: {{notes/README.md: "Start here\\n"}}
  - type: file-sync
    mappings:
      - {{zone: code_studio-versioned}}
"""

# An admin's upload: line 8 has the bad port.
UPLOAD = """\
id: {id}
label: Uploaded
base_image: {base}
blocks:
  - type: entrypoint
    label: Sleeper
    command: [python3, -m, http.server, "8090"]
    port: 70000
"""
BAD_LINE = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(method: str, url: str, *, headers: dict | None = None, body: bytes | None = None) -> tuple[int, dict | str]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=30) as resp:
            status, text = resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


class Env:
    def __init__(self, home: Path, gateway_port: int, ui_port: int, log: Path, proc: subprocess.Popen, template_id: str,
                 env: dict):
        self.home, self.gateway_port, self.ui_port, self.log, self.proc = home, gateway_port, ui_port, log, proc
        self.template_id, self.env = template_id, env
        self.ui = f"http://localhost:{ui_port}"
        self.content = f"http://127.0.0.1:{gateway_port}"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "codestudio", *args], capture_output=True, text=True, timeout=600,
                              env=self.env)
        if check and proc.returncode != 0:
            raise AssertionError(f"codestudio {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def link(self, user: str) -> str:
        return self.cli("--user", user, "login").stdout.strip().splitlines()[-1]

    def token(self, user: str) -> str:
        return self.cli("--user", user, "token", "create", f"e2e-{uuid.uuid4().hex[:4]}").stdout.strip().splitlines()[-1]

    def api(self, method: str, path: str, token: str, body: dict | None = None):
        headers = {"Authorization": f"Bearer {token}"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        return _http(method, f"{self.ui}{path}", headers=headers, body=data)

    def wait_job(self, job_id: str, token: str, timeout: float = 300) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            _, job = self.api("GET", f"/api/v1/jobs/{job_id}", token)
            if job["state"] in ("succeeded", "failed"):
                return job
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} still running after {timeout}s")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def srv(tmp_path_factory, debian_base):
    home = tmp_path_factory.mktemp("server-home")
    folder = tmp_path_factory.mktemp("server-template")
    gateway_port, ui_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("CODESTUDIO_USER", "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")}
    env.update(CODESTUDIO_HOME=str(home), CODESTUDIO_GATEWAY_PORT=str(gateway_port), CODESTUDIO_START_TIMEOUT="120",
               NO_PROXY="*", no_proxy="*")
    template_id = f"srv-web-{RUN}"
    (folder / "page").mkdir()
    (folder / "page" / "index.html").write_text(PAGE.replace("__UI__", f"http://localhost:{ui_port}").replace("__STUDIO__", "web"))
    (folder / "template.yaml").write_text(TEMPLATE.format(id=template_id, base=debian_base))
    log = home / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "codestudio", "server", "--port", str(ui_port),
                                 "--content-url", f"http://127.0.0.1:{gateway_port}"],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    e = Env(home, gateway_port, ui_port, log, proc, template_id, env)
    try:
        for _ in range(100):
            try:
                if _http("GET", f"{e.ui}/api/v1/openapi.json")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            raise AssertionError(f"server did not come up:\n{e.log_text()}")
        e.cli("template", "add", str(folder / "template.yaml"))
        # The example as shipped; its image is usually left by test_blocks_jupyterlab (then the build is a no-op).
        e.cli("template", "add", str(Path(__file__).resolve().parents[2] / "examples" / "jupyter-lab-template.yaml"))
        e.cli("admin", "group", "add", "team", "alice")
        for key in ("P1", "P2"):  # studios live in projects their owners are members of
            e.cli("project", "create", key)
            e.cli("project", "grant", key, "--group", "team")
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

        for tid in (template_id, f"srv-up-{RUN}", f"srv-cc-{RUN}"):
            proc2 = containers.buildah("images", "--format", "{{.Name}}:{{.Tag}}", f"localhost/codestudio/{tid}", check=False)
            for ref in sorted(set(proc2.stdout.split())):
                containers.remove_image(ref)


@pytest.fixture
def browser():
    if not Path(CHROMEDRIVER).exists() or not shutil.which("chromium"):
        pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                "--no-proxy-server"):
        options.add_argument(arg)
    options.binary_location = shutil.which("chromium")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _sign_in(driver, link: str) -> None:
    driver.get(link)
    driver.find_element(By.ID, "signin").click()
    WebDriverWait(driver, 20).until(EC.presence_of_element_located((By.ID, "me")))


def _wait_text(driver, by, what, pattern: str, timeout: float = 240) -> str:
    def found(d):
        try:
            text = d.find_element(by, what).text
        except Exception:
            return False
        return text if re.search(pattern, text) else False

    return WebDriverWait(driver, timeout, poll_frequency=0.3).until(found)


def test_user_flow_and_origin_isolation(srv, browser, monkeypatch):
    d = browser
    _sign_in(d, srv.link("alice"))
    assert d.find_element(By.ID, "me").text == "alice"
    cookie = d.get_cookie("cs_ui_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    # Create from the offered template.
    form = d.find_element(By.ID, "create-form")
    Select(form.find_element(By.NAME, "project")).select_by_value("P1")  # only projects alice is a member of
    assert {o.get_attribute("value") for o in form.find_elements(By.CSS_SELECTOR, "#project-select option")} == {"P1", "P2", ""}
    form.find_element(By.NAME, "name").send_keys("web")
    Select(form.find_element(By.NAME, "template")).select_by_value(srv.template_id)
    d.find_element(By.ID, "create").click()
    _wait_text(d, By.CSS_SELECTOR, '[data-state-of="web"]', "^STOPPED$", 30)

    # Start it and watch the state go live to RUNNING.
    d.find_element(By.CSS_SELECTOR, '#studio-web button[data-api$="/start"]').click()
    _wait_text(d, By.ID, "job-web", "job ")
    _wait_text(d, By.CSS_SELECTOR, '[data-state-of="web"]', "^RUNNING$")
    log = _wait_text(d, By.ID, "job-web", "done", 60)
    assert "job" in log

    # The studio page, its tab in a new browser tab on the content origin.
    d.find_element(By.LINK_TEXT, "web").click()
    _wait_text(d, By.ID, "state", "RUNNING", 20)
    ui_window = d.current_window_handle
    d.find_element(By.ID, "tab-8080").click()
    WebDriverWait(d, 20).until(lambda drv: len(drv.window_handles) == 2)
    d.switch_to.window([h for h in d.window_handles if h != ui_window][0])
    result = _wait_text(d, By.ID, "result", "done", 30)
    assert d.current_url.startswith(f"{srv.content}/code-studios/P1/web/8080/")
    assert d.find_element(By.ID, "hello").text == "studio page"
    # The studio's script could not read the API (the browser blocked the cross-origin answer) ...
    assert "read: TypeError" in result, result
    assert "post: sent" in result, result
    d.close()
    d.switch_to.window(ui_window)
    # ... because its requests reached the server without the UI's cookie (SameSite=Strict, another site):
    # both were refused as not signed in, and the studio still runs.
    server_log = srv.log_text()
    assert re.search(r'"GET /api/v1/studios HTTP/1.1" 401', server_log), server_log[-3000:]
    assert re.search(r'"POST /api/v1/studios/web/stop HTTP/1.1" 401', server_log), server_log[-3000:]
    token = srv.token("alice")
    assert srv.api("GET", "/api/v1/studios/web", token)[1]["state"] == "RUNNING"
    # Even with the viewer's cookie, a POST without the page's CSRF token, or from the content origin, is refused.
    jar = f"cs_ui_session={cookie['value']}"
    status, body = _http("POST", f"{srv.ui}/api/v1/studios/web/stop", headers={"Cookie": jar})
    assert status == 403 and body["error"]["code"] == "csrf_missing"
    csrf = d.find_element(By.CSS_SELECTOR, 'meta[name="csrf-token"]').get_attribute("content")
    status, body = _http("POST", f"{srv.ui}/api/v1/studios/web/stop",
                         headers={"Cookie": jar, "X-CSRF-Token": csrf, "Origin": srv.content})
    assert status == 403 and body["error"]["code"] == "csrf_origin"
    assert srv.api("GET", "/api/v1/studios/web", token)[1]["state"] == "RUNNING"
    # The UI origin serves no studio content.
    assert _http("GET", f"{srv.ui}/code-studios/P1/web/8080/")[0] == 404

    # An action with its output.
    d.find_element(By.ID, "action-btn-hello").click()
    out = _wait_text(d, By.ID, "action-hello", "exit status", 60)
    assert "hello from the action as codestudio" in out and "exit status 0" in out

    # Edit in the studio, press Synchronise, find the file on the server.
    status = srv.api("GET", "/api/v1/studios/web", token)[1]
    zone = Path(status["zones"][0]["server"])
    target = status["zones"][0]["target"]
    from codestudio.runtime import local

    studio = _studio(srv, monkeypatch, "web")
    subprocess.run(local.exec_command(_ctr(studio), ["sh", "-c", f"echo edited > {target}/edited.txt"]), check=True,
                   env=_podman_env())
    d.find_element(By.ID, "sync").click()
    _wait_text(d, By.ID, "filelog", "done|FAILED", 60)
    assert (zone / "edited.txt").read_text() == "edited\n"

    # Logs: tail, then follow (server-sent events from `podman logs -f`).
    d.find_element(By.CSS_SELECTOR, "button[data-tail]").click()
    _wait_text(d, By.ID, "logview", r"\S", 20)
    d.execute_script("document.getElementById('logview').textContent = ''")
    d.find_element(By.CSS_SELECTOR, "button[data-follow-logs]").click()
    _wait_text(d, By.ID, "logview", r"\S", 30)

    # Stop.
    d.find_element(By.ID, "stop").click()
    _wait_text(d, By.ID, "state", "^STOPPED$", 120)


def _studio(srv, monkeypatch, sid: str):
    """The engine's record of a studio in the server's data dir (for its container and pod names)."""
    monkeypatch.setenv("CODESTUDIO_HOME", str(srv.home))
    from codestudio.runtime import studios as rt

    return rt.get_studio(sid)


def _podman_env() -> dict:
    from codestudio.containers import podman_env

    return podman_env()


def test_jupyterlab_example_from_the_ui(srv, browser):
    d = browser
    _sign_in(d, srv.link("alice"))
    form = d.find_element(By.ID, "create-form")
    Select(form.find_element(By.NAME, "project")).select_by_value("")  # a new project, alice its owner
    form.find_element(By.ID, "new-project").send_keys("JL")
    form.find_element(By.NAME, "name").send_keys("lab")
    Select(form.find_element(By.NAME, "template")).select_by_value("jupyter-lab-template")
    d.find_element(By.ID, "create").click()
    _wait_text(d, By.CSS_SELECTOR, '[data-state-of="lab"]', "^STOPPED$", 30)
    d.find_element(By.CSS_SELECTOR, '#studio-lab button[data-api$="/start"]').click()
    _wait_text(d, By.CSS_SELECTOR, '[data-state-of="lab"]', "^RUNNING$", 600)
    d.find_element(By.LINK_TEXT, "lab").click()
    ui_window = d.current_window_handle
    tab = d.find_element(By.ID, "tab-8888")
    assert tab.text.startswith("JupyterLab")
    tab.click()
    WebDriverWait(d, 20).until(lambda drv: len(drv.window_handles) == 2)
    d.switch_to.window([h for h in d.window_handles if h != ui_window][0])
    WebDriverWait(d, 120).until(lambda drv: "JupyterLab" in drv.title)
    assert d.current_url.startswith(f"{srv.content}/code-studios/JL/lab/8888/")
    d.close()
    d.switch_to.window(ui_window)
    d.find_element(By.ID, "stop").click()
    _wait_text(d, By.ID, "state", "^STOPPED$", 120)


def test_admin_upload_fix_build_grant_and_member_sees_it(srv, browser):
    d = browser
    base = json.loads(srv.cli("base", "show", "--json").stdout)["image"]
    template_id = f"srv-up-{RUN}"
    bad = UPLOAD.format(id=template_id, base=base)
    assert bad.splitlines()[BAD_LINE - 1].strip() == "port: 70000"
    admin = json.loads(srv.cli("admin", "whoami", "--json").stdout)["user"]
    _sign_in(d, srv.link(admin))
    d.get(f"{srv.ui}/admin/templates")
    d.find_element(By.ID, "upload-text").send_keys(bad)
    d.find_element(By.ID, "upload").click()
    WebDriverWait(d, 20).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#upload-view li.problem")))
    problems = d.find_elements(By.CSS_SELECTOR, "#upload-view li.problem")
    assert [p.get_attribute("id") for p in problems] == [f"U{BAD_LINE}"]
    assert "port" in problems[0].find_element(By.CLASS_NAME, "problem-note").text
    assert template_id not in srv.cli("template", "list", "--json").stdout

    box = d.find_element(By.ID, "upload-text")
    box.clear()
    box.send_keys(bad.replace("70000", "8090"))
    d.find_element(By.ID, "upload").click()
    WebDriverWait(d, 20).until(EC.url_contains(f"/admin/templates/{template_id}"))
    d.find_element(By.ID, "tab-yaml").click()
    assert "port: 8090" in d.find_element(By.ID, "yaml").text

    d.find_element(By.ID, "tab-build").click()
    d.find_element(By.ID, "build").click()
    log = _wait_text(d, By.ID, "buildlog", r"\ndone$|FAILED", 300)
    assert "FAILED" not in log and "step" in log, log
    assert d.find_element(By.ID, "buildlog").get_attribute("data-state") == "succeeded"
    d.refresh()
    assert "succeeded" in d.find_element(By.ID, "builds").text  # the page opens on the tab it was left on

    d.find_element(By.ID, "tab-general").click()
    d.find_element(By.ID, "grant-group").send_keys("team2")
    d.find_element(By.CSS_SELECTOR, "#grant-form button").click()
    _wait_text(d, By.ID, "grants", "team2", 20)
    d.get(f"{srv.ui}/admin/users")
    form = d.find_element(By.ID, "member-form")
    form.find_element(By.NAME, "group").send_keys("team2")
    form.find_element(By.NAME, "user").send_keys("bob")
    form.find_element(By.TAG_NAME, "button").click()
    _wait_text(d, By.TAG_NAME, "main", "bob", 20)

    d.find_element(By.ID, "signout").click()
    WebDriverWait(d, 20).until(EC.url_contains("/signin"))
    _sign_in(d, srv.link("bob"))
    offered = [o.get_attribute("value") for o in d.find_elements(By.CSS_SELECTOR, "#create-form select option")]
    assert template_id in offered and srv.template_id not in offered  # granted to team2, not to team


def test_server_and_cli_start_and_stop_the_same_studio_at_once(srv, monkeypatch):
    token = srv.token("alice")
    status, made = srv.api("POST", "/api/v1/studios", token, {"project": "P2", "name": "both", "template": srv.template_id})
    assert status == 201, made
    sid = made["id"]
    results: dict = {}

    def cli_start():
        results["cli"] = srv.cli("--user", "alice", "studio", "start", sid, check=False)

    t = threading.Thread(target=cli_start)
    t.start()
    status, job = srv.api("POST", f"/api/v1/studios/{sid}/start", token)
    assert status == 202
    done = srv.wait_job(job["id"], token)
    t.join(300)
    assert done["state"] == "succeeded", done
    assert results["cli"].returncode == 0, results["cli"].stderr
    assert srv.api("GET", f"/api/v1/studios/{sid}", token)[1]["state"] == "RUNNING"
    from codestudio.runtime import local

    studio = _studio(srv, monkeypatch, sid)
    assert local.container_running(_ctr(studio))
    # No doubled work: whichever came second waited for the first and found it running.
    _, full = srv.api("GET", f"/api/v1/jobs/{job['id']}", token)
    said = "\n".join(full["lines"]) + results["cli"].stderr
    assert said.count("is already running") == 1, said

    t = threading.Thread(target=lambda: results.__setitem__("cli_stop", srv.cli("--user", "alice", "studio", "stop", sid, "-q", check=False)))
    t.start()
    status, job = srv.api("POST", f"/api/v1/studios/{sid}/stop", token)
    done = srv.wait_job(job["id"], token)
    t.join(300)
    assert done["state"] == "succeeded", done
    assert results["cli_stop"].returncode == 0, results["cli_stop"].stderr
    assert srv.api("GET", f"/api/v1/studios/{sid}", token)[1]["state"] == "STOPPED"
    assert not local.pod_exists(_pod(studio))
