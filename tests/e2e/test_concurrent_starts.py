"""End-to-end: many studios started at once, a stop that lets the runner exit by itself, and
starts and stops racing on one studio (issue 15 item 4), with real podman and nginx.

The studios run on the real base image (the busybox base has no Python for
the runner). Timings are measured by bench/runtime.py, never asserted here:
these tests pin what the faster paths must keep true.
"""

from __future__ import annotations

import socket
import threading
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.e2e

RUN = uuid.uuid4().hex[:6]
TEMPLATE = """\
id: {id}
base_image: {base}
permissions: {{all: true}}
blocks:
  - type: entrypoint
    label: Files
    command: [python3, -m, http.server, "8080", --bind, 0.0.0.0]
    port: 8080
    proxied_subpath: /
  - type: file-sync
    mappings:
      - {{zone: code_studio-versioned}}
"""
COUNT = 10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def env(tmp_path, debian_base, codestudio_home, monkeypatch, image_cleanup):
    monkeypatch.setenv("CODESTUDIO_GATEWAY_PORT", str(_free_port()))
    monkeypatch.delenv("CODESTUDIO_USER", raising=False)
    from codestudio.access import identify
    from codestudio.projects import create_project
    from codestudio.runtime import studios as rts
    from codestudio.templates_store import add_template, build_template

    template_id = f"starts-e2e-{RUN}"
    image_cleanup(template_id)
    (tmp_path / "t.yaml").write_text(TEMPLATE.format(id=template_id, base=debian_base))
    who = identify()
    stored, _ = add_template(who, tmp_path / "t.yaml")
    build_template(stored.id, quiet=True)
    create_project(who, "MANY")
    try:
        yield {"who": who, "rts": rts, "template": stored.id}
    finally:
        for left in rts.list_studios(all_users=True, reconciled=False):
            rts.delete_studio(who, left.id, force=True, purge=True)
        rts._gateway().stop()


def _through_gateway(rts, studio) -> int:
    """GET the studio's root through the gateway with its owner's cookie: the HTTP status."""
    routes = rts.studio_routes_of(studio)
    port = rts._gateway().settings.port
    req = urllib.request.Request(f"http://127.0.0.1:{port}{routes.prefix}8080/",
                                 headers={"Cookie": f"cs_session={routes.cookie_value}"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=20) as resp:
        return resp.status


def test_ten_concurrent_starts_all_run_on_distinct_ports_with_their_routes(env):
    from codestudio.runtime import local

    rts, who = env["rts"], env["who"]
    ids = [rts.create_studio(who, "MANY", f"s{i}", env["template"]).id for i in range(COUNT)]
    with ThreadPoolExecutor(max_workers=COUNT) as pool:
        started = list(pool.map(lambda sid: rts.start_studio(who, sid, timeout=180, quiet=True), ids))
    assert [s.state for s in started] == ["RUNNING"] * COUNT
    ports = [rts.get_studio(sid).ports[8080] for sid in ids]
    assert len(set(ports)) == COUNT
    # Every studio has its own pod, its routes in the live gateway config, and answers through it.
    assert sorted(r.studio_id for r in rts.running_studio_routes()) == sorted(ids)
    conf = rts._gateway().conf_path.read_text()
    assert all(f"/code-studios/MANY/{sid}/" in conf for sid in ids)
    assert [_through_gateway(rts, rts.get_studio(sid)) for sid in ids] == [200] * COUNT
    assert all(local.pod_exists(local.pod_name(rts.pod_set_name(s))) for s in started)
    with ThreadPoolExecutor(max_workers=COUNT) as pool:
        stopped = list(pool.map(lambda sid: rts.stop_studio(who, sid, quiet=True), ids))
    assert [s.state for s in stopped] == ["STOPPED"] * COUNT
    assert rts.running_studio_routes() == [] and "/code-studios/MANY/" not in rts._gateway().conf_path.read_text()
    assert not any(local.pod_exists(local.pod_name(rts.pod_set_name(s))) for s in started)


def test_a_stopped_runner_exits_by_itself_within_its_grace(env):
    """The stop sends SIGTERM and waits: the runner stops its entrypoint and exits 0.

    Read from podman's events once the container is gone (``podman kube down``
    and ``pod rm -f`` killed it with SIGKILL: status 137).
    """
    import time

    from codestudio import containers
    from codestudio.runtime import local

    rts, who = env["rts"], env["who"]
    s = rts.start_studio(who, rts.create_studio(who, "MANY", "graceful", env["template"]).id, timeout=180, quiet=True)
    ctr = local.container_name(rts.pod_set_name(s))
    since = str(int(time.time()) - 5)
    assert rts.stop_studio(who, s.id, quiet=True).state == "STOPPED"
    assert not local.pod_exists(local.pod_name(rts.pod_set_name(s)))
    died = containers.podman("events", "--stream=false", "--since", since, "--filter", f"container={ctr}",
                             "--filter", "event=died", "--format", "{{.ContainerExitCode}}").stdout.split()
    assert died == ["0"], f"the runner did not exit by itself (exit statuses {died})"


def test_starts_and_stops_racing_on_one_studio_stay_consistent(env):
    """Whatever order the studio lock gives them, the end state is true: RUNNING with one pod and
    its routes, or STOPPED with neither, and the ports it reserved are freed when it stops."""
    from codestudio.runtime import local
    from codestudio.runtime.current import get_runtime

    rts, who = env["rts"], env["who"]
    s = rts.create_studio(who, "MANY", "raced", env["template"])
    name = rts.pod_set_name(s)
    errors = []

    def call(fn):
        try:
            fn(who, s.id, quiet=True)
        except Exception as exc:  # noqa: BLE001 - collected and shown below
            errors.append(exc)

    for round_ in range(3):
        threads = [threading.Thread(target=call, args=(fn,))
                   for fn in (rts.start_studio, rts.stop_studio, rts.start_studio, rts.stop_studio, rts.start_studio)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        now = rts.get_studio(s.id)
        pods = get_runtime().pods(name)
        routed = [r.studio_id for r in rts.running_studio_routes()]
        if now.state == "RUNNING":
            assert len(pods) == 1 and pods[0].running and routed == [s.id]
            assert {e.port for e in pods[0].endpoints.values()} == set(now.ports.values())
            assert _through_gateway(rts, now) == 200
        else:
            assert now.state == "STOPPED" and pods == [] and routed == [] and now.ports == {}
            assert local.LocalRuntime()._reserved_ports() == set()
    rts.stop_studio(who, s.id, quiet=True)
    assert get_runtime().pods(name) == [] and local.LocalRuntime()._reserved_ports() == set()
