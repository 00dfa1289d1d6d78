"""End-to-end: webapps on real podman (replicas, prefixes, probes, replacement, rolling update).

One small template on the real base image (a stdlib HTTP server that only
answers under its ``DKU_CODE_STUDIO_BROWSER_PATH_<port>`` and reports its
pod name, its browser path, its command argument and the snapshot file it
serves), published from a studio's versioned zone. Requests go to each
replica's guard port with its guard secret, as the gateway sends them.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

RUN = uuid.uuid4().hex[:6]
SERVER = '''\
import json, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
PORT = int(sys.argv[1])
BASE = os.environ["DKU_CODE_STUDIO_BROWSER_PATH_%d" % PORT]
ZONE = "/home/codestudio/workspace/code_studio-versioned/app/"

def read(name):
    try:
        return open(ZONE + name).read().strip()
    except OSError:
        return None

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if not self.path.startswith(BASE + "/"):
            self.send_error(404, "outside " + BASE)
            return
        if self.path == BASE + "/health":
            suffix = read("fail-health-suffix")
            if suffix and os.environ["K8S_POD_NAME"].endswith(suffix):
                self.send_error(503, "unhealthy on purpose")
                return
        data = {"path": self.path, "pod": os.environ.get("K8S_POD_NAME"),
                "browser_path": os.environ.get("DKU_CODE_STUDIO_BROWSER_PATH"), "arg": sys.argv[2],
                "version": read("version.txt")}
        body = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

ThreadingHTTPServer(("0.0.0.0", PORT), H).serve_forever()
'''

TEMPLATE = f"""\
id: wa-e2e-{RUN}
permissions:
  all: true
blocks:
  - type: dockerfile
    statements: |
      COPY server.py /opt/app/server.py
    resources: [server.py]
  - type: entrypoint
    label: App
    command: [python3, /opt/app/server.py, "8080", "${{DKU_CODE_STUDIO_BROWSER_PATH}}"]
    port: 8080
    launch_in_webapp: true
    proxied_subpath: $request_uri
  - type: entrypoint
    label: Studio only
    command: [sleep, infinity]
  - type: starter-files
    zone: code_studio-versioned
    files: {{app/version.txt: "v1\\n"}}
  - type: kubernetes
    readiness_url: "${{baseUrl}}/health"
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory, debian_base):
    from codestudio import containers

    home = tmp_path_factory.mktemp("webapps-home")
    folder = tmp_path_factory.mktemp("webapps-template")
    (folder / "server.py").write_text(SERVER)
    (folder / "template.yaml").write_text(TEMPLATE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CODESTUDIO_HOME", str(home))
        mp.setenv("CODESTUDIO_GATEWAY_PORT", str(_free_port()))
        mp.delenv("CODESTUDIO_USER", raising=False)
        from codestudio.access import identify
        from codestudio.projects import create_project
        from codestudio.runtime import studios as rts
        from codestudio.templates_store import add_template

        who = identify()
        add_template(who, folder / "template.yaml")
        create_project(who, "WA")
        studio = rts.create_studio(who, "WA", "source", f"wa-e2e-{RUN}")
        try:
            yield type("Env", (), {"who": who, "studio": studio, "template": f"wa-e2e-{RUN}", "folder": folder,
                                   "home": home})
        finally:
            from codestudio.webapps import delete, list_webapps

            for w in list_webapps(who, all_users=True):
                delete(who, w["webapp"])
            rts._gateway().stop()
            for ref in containers.image_refs(f"localhost/codestudio/wa-e2e-{RUN}"):
                containers.remove_image(ref)


@pytest.fixture(autouse=True)
def _env(env, monkeypatch):
    monkeypatch.setenv("CODESTUDIO_HOME", str(env.home))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _zone(env) -> Path:
    from codestudio.sync import zone_dir

    return zone_dir("code_studio-versioned", studio_id=env.studio.id, project_key="WA", user=env.studio.owner)


def _replicas(key: str):
    from codestudio.store import Store
    from codestudio.webapps import records

    return records.replicas_of(Store.default(), records.get_webapp(key, store=Store.default()))


def _get(replica, rest: str = "/x", timeout: float = 10) -> tuple[int, dict | str]:
    """GET a path under a replica's (a row's) own prefix, through its guard, as the gateway does."""
    host, port = replica.endpoints[8080]
    return _get_at(replica.webapp_id, replica.pod, host, port, replica.guard_secret, rest, timeout)


def _get_at(webapp_id: str, pod: str, host: str, port: int, secret: str, rest: str = "/x",
            timeout: float = 10) -> tuple[int, dict | str]:
    url = f"http://{host}:{port}/web-apps-backends/WA/{webapp_id}_{pod}/8080{rest}"
    req = urllib.request.Request(url, headers={"X-Codestudio-Guard": secret})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _container_id(pod: str) -> str:
    from codestudio import containers

    return containers.podman("container", "inspect", "--format", "{{.Id}}", f"{pod}-studio").stdout.strip()


def test_each_replica_answers_at_its_own_prefix_with_its_own_pod_name(env):
    from codestudio.sync.zones import head
    from codestudio.webapps import publish, status

    w = publish(env.who, "WA", "app", env.template, replicas=2, from_studio=env.studio.id, quiet=True)
    assert w.state == "RUNNING" and w.snapshot_commit == head(_zone(env))
    replicas = _replicas(w.key)
    assert len(replicas) == 2 and len({r.pod for r in replicas}) == 2
    for r in replicas:
        assert r.state == "ready"
        status_code, data = _get(r)
        prefix = f"/web-apps-backends/WA/app_{r.pod}"
        assert status_code == 200, data
        # The runner put the pod's own name into the env and into the command argument.
        assert data["pod"] == r.pod and data["browser_path"] == prefix and data["arg"] == prefix
        assert data["path"] == prefix + "/8080/x"
        assert data["version"] == "v1"  # the studio's snapshot
    # Only launch_in_webapp entrypoints run.
    from codestudio.runtime.local import exec_run

    listing = ("import glob; print('\\n'.join(open(f, 'rb').read().replace(b'\\0', b' ').decode() "
               "for f in glob.glob('/proc/[0-9]*/cmdline')))")
    ps = exec_run(f"{replicas[0].pod}-studio", ["python3", "-c", listing]).stdout
    assert "server.py" in ps and "sleep infinity" not in ps
    assert [x["state"] for x in status(env.who, w.key)["replicas_detail"]] == ["ready", "ready"]


def test_killed_replica_is_replaced_and_the_other_keeps_running(env):
    from codestudio import containers
    from codestudio.webapps import status

    before = _replicas("WA/app")
    keep, kill = before
    keep_id = _container_id(keep.pod)
    containers.podman("kill", f"{kill.pod}-studio")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        info = status(env.who, "WA/app")
        pods = {x["pod"]: x["state"] for x in info["replicas_detail"]}
        if kill.pod not in pods and len(pods) == 2 and all(s == "ready" for s in pods.values()):
            break
        time.sleep(1)
    else:
        raise AssertionError(f"the killed replica was not replaced: {info['replicas_detail']}")
    after = _replicas("WA/app")
    assert keep.pod in {r.pod for r in after} and _container_id(keep.pod) == keep_id  # untouched
    new = next(r for r in after if r.pod != keep.pod)
    status_code, data = _get(new)
    assert status_code == 200 and data["pod"] == new.pod and data["version"] == "v1"


def test_update_rolls_onto_the_new_snapshot_without_a_failed_request(env):
    """Requests go only to replicas the gateway rows list as ready, as nginx would; none may fail."""
    from codestudio.webapps import update
    from codestudio.webapps.routes import webapp_routes

    (_zone(env) / "app" / "version.txt").write_text("v2\n")
    results: list[tuple[str, object]] = []
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            routes = [w for w in webapp_routes() if w.webapp_id == "app"]
            ready = [r for r in routes[0].replicas if r.ready] if routes else []
            if not ready:
                results.append(("no ready replica", None))
                continue
            for replica in ready:
                [p] = replica.ports
                try:
                    code, data = _get_at("app", replica.pod_name, p.upstream_host, p.upstream_port,
                                         replica.guard_secret, timeout=5)
                except OSError as exc:
                    code, data = 0, str(exc)
                results.append(("ok" if code == 200 else f"HTTP {code}", data))
            time.sleep(0.02)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        w = update(env.who, "WA/app", quiet=True)
    finally:
        stop.set()
        thread.join(30)
    failures = [r for r in results if r[0] != "ok"]
    assert len(results) > 20 and not failures, failures[:5]
    versions = [d["version"] for s, d in results if s == "ok"]
    assert versions[0] == "v1" and versions[-1] == "v2"
    after = _replicas(w.key)
    assert w.generation == 2 and len(after) == 2 and all(r.generation == 2 for r in after)
    for r in after:
        assert _get(r)[1]["version"] == "v2"


def test_replica_whose_probe_never_passes_gets_no_traffic_and_says_why(env):
    from codestudio.webapps import publish, status
    from codestudio.webapps.routes import webapp_routes

    # The second replica's pod name ends in -r1-pod-0: the server refuses its health check.
    (_zone(env) / "app" / "fail-health-suffix").write_text("-r1-pod-0\n")
    try:
        w = publish(env.who, "WA", "half", env.template, replicas=2, from_studio=env.studio.id, timeout=8, quiet=True)
    finally:
        (_zone(env) / "app" / "fail-health-suffix").unlink()
    info = status(env.who, w.key)
    [bad] = [x for x in info["replicas_detail"] if x["pod"].endswith("-r1-pod-0")]
    assert bad["state"] == "not-ready" and not bad["routed"], bad
    assert "HTTP 503" in bad["reason"] and "never passed within 8s" in bad["reason"]
    [good] = [x for x in info["replicas_detail"] if not x["pod"].endswith("-r1-pod-0")]
    assert good["state"] == "ready"
    [routes] = [r for r in webapp_routes() if r.webapp_id == "half"]
    assert {r.pod_name: r.ready for r in routes.replicas} == {x["pod"]: x["pod"] == good["pod"]
                                                              for x in info["replicas_detail"]}
    assert [r.pod_name for r in routes.ready_replicas] == [good["pod"]]
