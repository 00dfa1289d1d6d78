"""A Kubernetes API emulator on loopback for the Kubernetes runtime's tests, and a stand-in kubelet.

The server is kmock's :class:`kmock.KubernetesEmulator` (a maintained
Kubernetes API mock: aiohttp server, URL parsing into resource/namespace/
name/action, Kubernetes ``Status`` errors, discovery, and the reaction DSL
that tests use to inject 403/409/5xx answers). kmock 0.8 keeps objects as
plain JSON without resource versions, label selectors, server-side apply of
a missing object, watch timeouts or 410 Gone, which the engine relies on, so
:class:`ClusterEmulator` replaces its object store with one that has them:

- every change gets the next ``metadata.resourceVersion`` and goes into a
  change log; a watch from a resource version replays the log after it, and
  one older than :meth:`ClusterEmulator.compact`'s floor gets ``410 Gone``;
- list and watch filter by ``labelSelector`` (``=``, ``!=``, exists) and
  ``fieldSelector`` (``=``), and a watch ends after ``timeoutSeconds``;
- PATCH with ``application/apply-patch+yaml`` creates a missing object
  (server-side apply), other PATCHes merge (RFC 7386), ``/status`` patches
  the status; ``pods/<name>/log`` serves what :meth:`set_log` stored.

:class:`StandInKubelet` plays the controllers and the kubelet through the
same API with the official client: for each Deployment it creates a pod,
posts events (Scheduled, Pulling, Pulled, Created, Started) and marks it
ready, or plays one failure (:data:`FAILURES`); deleting a Deployment
deletes its pods.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import itertools
import json
import re
import threading
import time
import uuid
from typing import Any

import attrs
import kmock
from kmock._internal import apps

APPLY = "application/apply-patch+yaml"


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _merge(target: dict, patch: dict) -> dict:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def _get(obj: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def label_match(labels: dict, selector: str | None) -> bool:
    for term in filter(None, (t.strip() for t in (selector or "").split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def field_match(obj: dict, selector: str | None) -> bool:
    for term in filter(None, (t.strip() for t in (selector or "").split(","))):
        k, _, v = term.partition("=")
        if str(_get(obj, k.strip()) or "") != v.strip():
            return False
    return True


class ClusterEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with resource versions, selectors, server-side apply and 410 (module docstring)."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.store: dict[tuple, dict] = {}
        self.changes: dict[tuple, list[tuple[int, str, dict]]] = {}
        self.watchers: dict[tuple, set[asyncio.Queue]] = {}
        self.rv = itertools.count(100)
        self.last_rv = 99
        self.floor = 0
        self.logs: dict[tuple[str, str], str] = {}
        self.namespace_error: tuple[int, str, str] | None = None
        for spec, kind, namespaced in (
            ("apps/v1/deployments", "Deployment", True),
            ("v1/services", "Service", True),
            ("v1/secrets", "Secret", True),
            ("v1/pods", "Pod", True),
            ("v1/events", "Event", True),
            ("v1/namespaces", "Namespace", False),
            ("networking.k8s.io/v1/networkpolicies", "NetworkPolicy", True),
        ):
            self.resources[spec] = kmock.ResourceInfo(kind=kind, namespaced=namespaced)

    # --- store -------------------------------------------------------------------------------

    @staticmethod
    def _rkey(resource) -> tuple:
        return (resource.group or "", resource.version, resource.plural)

    def _bump(self, rkey: tuple, kind: str, obj: dict) -> None:
        rv = next(self.rv)
        self.last_rv = rv
        obj.setdefault("metadata", {})["resourceVersion"] = str(rv)
        snapshot = copy.deepcopy(obj)
        self.changes.setdefault(rkey, []).append((rv, kind, snapshot))
        for q in list(self.watchers.get(rkey, ())):
            q.put_nowait((rv, kind, snapshot))

    def put(self, rkey: tuple, namespace: str | None, obj: dict, *, create: bool) -> dict:
        name = obj["metadata"]["name"]
        key = (rkey, namespace, name)
        meta = obj["metadata"]
        if namespace is not None:
            meta["namespace"] = namespace
        if create:
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", _now())
            meta["generation"] = 1
        self.store[key] = obj
        self._bump(rkey, "ADDED" if create else "MODIFIED", obj)
        return obj

    def remove(self, rkey: tuple, namespace: str | None, name: str) -> dict | None:
        obj = self.store.pop((rkey, namespace, name), None)
        if obj is not None:
            self._bump(rkey, "DELETED", obj)
        return obj

    def items(self, rkey: tuple, namespace: str | None, labels: str | None = None, fields: str | None = None):
        for (rk, ns, _), obj in sorted(self.store.items(), key=lambda kv: str(kv[0])):
            if rk == rkey and (namespace is None or ns == namespace) \
                    and label_match(obj["metadata"].get("labels") or {}, labels) and field_match(obj, fields):
                yield obj

    # --- request handling ----------------------------------------------------------------------

    async def _handle(self, request):
        # kmock 0.8 parses /api/v1/namespaces/<name> as a namespace, not as the Namespace object:
        # reads of a Namespace are served here (tests set namespace_error to make them fail).
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)", request.url.path)
        if m and str(request.method.value) == "GET":
            import aiohttp.web

            if self.namespace_error is not None:
                code, reason, message = self.namespace_error
            elif (("", "v1", "namespaces"), None, m.group(1)) in self.store:
                return aiohttp.web.json_response(self.store[(("", "v1", "namespaces"), None, m.group(1))])
            else:
                code, reason, message = 404, "NotFound", f'namespaces "{m.group(1)}" not found'
            return aiohttp.web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
                                              "reason": reason, "message": message}, status=code)
        # Skip kmock's own object tracking: this store (below) replaces it. Reactions added
        # by tests (403, 409, 5xx) still come first, so an injected error changes nothing.
        return await apps.RawHandler._handle(self, request)

    def _data(self, request) -> Any:
        if request.data is not None:
            return request.data
        return json.loads(request.body or b"null")

    async def _serve_list(self, request):
        rkey = self._rkey(request.resource)
        items = [copy.deepcopy(o) for o in self.items(rkey, request.namespace, request.params.get("labelSelector"),
                                                        request.params.get("fieldSelector"))]
        limit = int(request.params.get("limit") or 0)
        if limit:
            items = items[:limit]
        return {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": str(self.last_rv)}, "items": items}

    async def _serve_watch(self, request):
        yield b""
        rkey = self._rkey(request.resource)
        labels, fields = request.params.get("labelSelector"), request.params.get("fieldSelector")
        timeout = float(request.params.get("timeoutSeconds") or 3600)
        since = request.params.get("resourceVersion")
        deadline = time.monotonic() + timeout
        queue: asyncio.Queue = asyncio.Queue()
        self.watchers.setdefault(rkey, set()).add(queue)

        def wanted(obj: dict) -> bool:
            meta = obj.get("metadata", {})
            return ((request.namespace is None or meta.get("namespace") == request.namespace)
                    and label_match(meta.get("labels") or {}, labels) and field_match(obj, fields))

        try:
            if since and since != "0":
                if int(since) < self.floor:
                    yield {"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                                       "code": 410, "reason": "Expired",
                                                       "message": f"too old resource version: {since} ({self.floor})"}}
                    return
                for rv, kind, obj in list(self.changes.get(rkey, [])):
                    if rv > int(since) and wanted(obj):
                        yield {"type": kind, "object": obj}
            else:
                for obj in list(self.items(rkey, request.namespace, labels, fields)):
                    yield {"type": "ADDED", "object": copy.deepcopy(obj)}
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                try:
                    rv, kind, obj = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    return
                if kind == "END":
                    return
                if since and since != "0" and rv <= int(since):
                    continue
                if wanted(obj):
                    yield {"type": kind, "object": obj}
        finally:
            self.watchers[rkey].discard(queue)

    async def _serve_fetch(self, request):
        if request.subresource == "log":
            text = self.logs.get((request.namespace, request.name))
            if text is None:
                raise kmock.KubernetesError(400, "BadRequest", f"container studio in pod {request.name} has no logs")
            return text.encode()
        obj = self.store.get((self._rkey(request.resource), request.namespace, request.name))
        if obj is None:
            raise kmock.KubernetesError(404, "NotFound", f"{request.resource.plural} \"{request.name}\" not found")
        return copy.deepcopy(obj)

    async def _serve_create(self, request):
        rkey = self._rkey(request.resource)
        obj = copy.deepcopy(self._data(request))
        name = obj.get("metadata", {}).get("name")
        if (rkey, request.namespace, name) in self.store:
            raise kmock.KubernetesError(409, "AlreadyExists", f"{request.resource.plural} \"{name}\" already exists")
        return copy.deepcopy(self.put(rkey, request.namespace, obj, create=True))

    async def _serve_update(self, request):
        rkey = self._rkey(request.resource)
        key = (rkey, request.namespace, request.name)
        data = self._data(request)
        content_type = request.headers.get("Content-Type", "")
        current = self.store.get(key)
        if content_type.startswith(APPLY):
            if request.params.get("fieldManager") in (None, ""):
                raise kmock.KubernetesError(400, "BadRequest", "fieldManager is required for apply patch")
            obj = copy.deepcopy(data)
            obj["metadata"]["name"] = request.name
            if current is None:
                return copy.deepcopy(self.put(rkey, request.namespace, obj, create=True))
            for keep in ("uid", "creationTimestamp"):
                obj["metadata"][keep] = current["metadata"].get(keep)
            obj["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
            if "status" in current:
                obj["status"] = current["status"]
            return copy.deepcopy(self.put(rkey, request.namespace, obj, create=False))
        if current is None:
            raise kmock.KubernetesError(404, "NotFound", f"{request.resource.plural} \"{request.name}\" not found")
        obj = copy.deepcopy(current)
        if request.subresource == "status":
            data = {"status": data.get("status", {})}
        _merge(obj, data)
        return copy.deepcopy(self.put(rkey, request.namespace, obj, create=False))

    async def _serve_delete(self, request):
        obj = self.remove(self._rkey(request.resource), request.namespace, request.name)
        if obj is None:
            raise kmock.KubernetesError(404, "NotFound", f"{request.resource.plural} \"{request.name}\" not found")
        obj = copy.deepcopy(obj)
        obj["metadata"]["deletionTimestamp"] = _now()
        return obj

    # --- test controls (call through EmulatorServer.run) -----------------------------------------

    def compact(self) -> None:
        """Forget every change so far: a watch from an older resource version gets 410 Gone."""
        self.floor = self.last_rv + 1
        self.changes.clear()

    def end_watches(self) -> None:
        """End every open watch stream (as an API server does when its watch times out)."""
        for queues in self.watchers.values():
            for q in list(queues):
                q.put_nowait((0, "END", {}))


class EmulatorServer:
    """:class:`ClusterEmulator` served on loopback from a thread with its own event loop."""

    def __init__(self):
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.emulator: ClusterEmulator | None = None
        self.url = ""
        self._thread = threading.Thread(target=self._main, name="k8s-emulator", daemon=True)

    def _main(self) -> None:
        self.loop = asyncio.new_event_loop()

        async def serve():
            self._stop = asyncio.Event()
            async with ClusterEmulator() as handler, apps.Server(handler) as server:
                self.emulator = handler
                self.url = str(server.url).rstrip("/")
                self._ready.set()
                await self._stop.wait()

        self.loop.run_until_complete(serve())

    def __enter__(self) -> EmulatorServer:
        self._thread.start()
        if not self._ready.wait(20):
            raise RuntimeError("the emulator did not start")
        return self

    def __exit__(self, *exc) -> None:
        assert self.loop is not None and self._stop is not None
        self.loop.call_soon_threadsafe(self.emulator.end_watches)
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(20)

    def run(self, fn, *args, **kwargs):
        """Call ``fn(*args, **kwargs)`` in the emulator's loop and return its result."""
        assert self.loop is not None

        async def call():
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(20)

    def react(self, criteria: tuple, payload) -> Any:
        """Add a kmock reaction (``emu.react(("patch", kmock.resource("apps/v1/deployments")), err)``)."""
        return self.run(lambda: self.emulator[criteria] << payload)

    def objects(self, plural: str, namespace: str | None = None) -> list[dict]:
        def pick():
            return [copy.deepcopy(o) for (rk, ns, _), o in self.emulator.store.items()
                    if rk[2] == plural and (namespace is None or ns == namespace)]

        return self.run(pick)

    def kubeconfig(self, path, *, context: str = "emu", namespace: str = "studios") -> str:
        import yaml

        doc = {
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": "emu", "cluster": {"server": self.url}}],
            "users": [{"name": "emu-user", "user": {"token": "not-a-real-token-7f3a"}}],
            "contexts": [{"name": context, "context": {"cluster": "emu", "user": "emu-user", "namespace": namespace}}],
        }
        path.write_text(yaml.safe_dump(doc))
        return str(path)


# --------------------------------------------------------------------------------------------
# The stand-in kubelet

#: What :class:`StandInKubelet` can play instead of a healthy start.
FAILURES = ("ErrImagePull", "ImagePullBackOff", "CrashLoopBackOff", "CreateContainerConfigError", "Unschedulable",
            "NeverReady")


class StandInKubelet:
    """Moves pods of Deployments through phases and posts events, through the API (module docstring).

    :param failure: one of :data:`FAILURES`, or None for a healthy start.
    :param ready: mark the pod Ready (False: running but never ready).
    """

    def __init__(self, server: EmulatorServer, namespace: str = "studios", *, failure: str | None = None,
                 delay: float = 0.01, pod_ip: str = "10.0.0.7", service_ip: str | None = None):
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = server.url
        self.api = client.ApiClient(cfg)
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.server = server
        self.namespace = namespace
        self.failure = failure
        self.delay = delay
        self.pod_ip = pod_ip
        self.service_ip = service_ip
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stand-in-kubelet", daemon=True)
        self.pods: dict[str, str] = {}  # deployment -> its first pod
        self.replicas: dict[str, list[str]] = {}  # deployment -> its pods, oldest first
        self._serial = 0
        self._created: set[str] = set()
        self.events_posted: list[str] = []
        #: pod -> {"running": t, "ready": t}: when (time.monotonic()) the kubelet reported each.
        self.marks: dict[str, dict[str, float]] = {}

    def __enter__(self) -> StandInKubelet:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)
        self.api.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                deployments = {d["metadata"]["name"]: d for d in self.server.objects("deployments", self.namespace)}
                for name, dep in deployments.items():
                    want = int(dep["spec"].get("replicas", 1))
                    mine = self.replicas.setdefault(name, [])
                    existing = {p["metadata"]["name"] for p in self.server.objects("pods", self.namespace)}
                    mine[:] = [p for p in mine if p in existing or p not in self._created]  # deleted: replace it
                    while len(mine) < want:  # the ReplicaSet controller's part: a pod per missing replica
                        pod = f"{name}-6d9f7c8b5-x{self._serial}q2z"
                        self._serial += 1
                        mine.append(pod)
                        self.pods.setdefault(name, pod)
                        threading.Thread(target=self._run_pod_quietly, args=(dep, pod), daemon=True).start()
                    if len(mine) > want:  # the lowest pod-deletion-cost goes first, then the newest
                        for pod in self._victims(mine, len(mine) - want):
                            mine.remove(pod)
                            self.server.run(self.server.emulator.remove, ("", "v1", "pods"), self.namespace, pod)
                if self.service_ip:  # the Service controller's part: a cluster address
                    for svc in self.server.objects("services", self.namespace):
                        if not svc["spec"].get("clusterIP"):
                            self.core.patch_namespaced_service(svc["metadata"]["name"], self.namespace,
                                                               {"spec": {"clusterIP": self.service_ip}})
                for name in [n for n in self.replicas if n not in deployments]:
                    self.pods.pop(name, None)
                    for pod in self.replicas.pop(name):
                        self.server.run(self.server.emulator.remove, ("", "v1", "pods"), self.namespace, pod)
            except Exception:  # noqa: BLE001 - the emulator is shutting down
                pass
            self._stop.wait(0.02)

    def _victims(self, pods: list[str], count: int) -> list[str]:
        def cost(pod: str) -> int:
            obj = next((p for p in self.server.objects("pods", self.namespace) if p["metadata"]["name"] == pod), {})
            notes = (obj.get("metadata") or {}).get("annotations") or {}
            return int(notes.get("controller.kubernetes.io/pod-deletion-cost", "0"))

        order = sorted(range(len(pods)), key=lambda i: (cost(pods[i]), -i))
        return [pods[i] for i in order[:count]]

    def pod_ip_of(self, pod: str) -> str:
        """The first pod of the kubelet gets ``pod_ip``, the next ones the addresses after it."""
        base, last = self.pod_ip.rsplit(".", 1)
        return f"{base}.{int(last) + int(pod.rsplit('-x', 1)[1][:-3])}"

    def event(self, pod: str, reason: str, message: str, type_: str = "Normal") -> None:
        self.events_posted.append(reason)
        self.core.create_namespaced_event(self.namespace, {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{pod}.{uuid.uuid4().hex[:12]}", "namespace": self.namespace},
            "involvedObject": {"kind": "Pod", "name": pod, "namespace": self.namespace, "apiVersion": "v1"},
            "reason": reason, "message": message, "type": type_, "count": 1,
            "firstTimestamp": _now(), "lastTimestamp": _now(),
            "source": {"component": "kubelet" if reason != "Scheduled" else "default-scheduler"},
        })

    def _status(self, pod: str, status: dict) -> None:
        self.core.patch_namespaced_pod_status(pod, self.namespace, {"status": status})

    def _run_pod_quietly(self, dep: dict, pod: str) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self._run_pod(dep, pod)
        except ApiException as exc:
            if exc.status != 404:  # 404: the engine deleted the pod meanwhile (a failed start's clean-up)
                raise

    def _run_pod(self, dep: dict, pod: str) -> None:
        template = dep["spec"]["template"]
        labels = dict(template["metadata"].get("labels") or {})
        spec = copy.deepcopy(template["spec"])
        image = spec["containers"][0]["image"]
        self.core.create_namespaced_pod(self.namespace, {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod, "namespace": self.namespace, "labels": labels,
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": pod.rsplit("-", 1)[0],
                                              "uid": str(uuid.uuid4()), "controller": True}]},
            "spec": spec, "status": {"phase": "Pending"},
        })
        self._created.add(pod)
        self.server.run(self.server.emulator.logs.__setitem__, (self.namespace, pod), "runner: starting\n")
        time.sleep(self.delay)
        waiting = {"name": "studio", "ready": False, "restartCount": 0, "image": image, "imageID": ""}
        if self.failure == "Unschedulable":
            msg = "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available."
            self.event(pod, "FailedScheduling", msg, "Warning")
            self._status(pod, {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg}]})
            return
        self.event(pod, "Scheduled", f"Successfully assigned {self.namespace}/{pod} to node-1")
        self._status(pod, {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]})
        self.event(pod, "Pulling", f'Pulling image "{image}"')
        if self.failure in ("ErrImagePull", "ImagePullBackOff"):
            msg = f'Failed to pull image "{image}": manifest unknown'
            self.event(pod, "Failed", msg, "Warning")
            self._status(pod, {"phase": "Pending", "containerStatuses": [
                {**waiting, "state": {"waiting": {"reason": self.failure, "message": msg}}}]})
            return
        self.event(pod, "Pulled", f'Successfully pulled image "{image}" in 1.2s')
        if self.failure == "CreateContainerConfigError":
            msg = 'secret "missing-secret" not found'
            self.event(pod, "Failed", f"Error: {msg}", "Warning")
            self._status(pod, {"phase": "Pending", "containerStatuses": [
                {**waiting, "state": {"waiting": {"reason": "CreateContainerConfigError", "message": msg}}}]})
            return
        self.event(pod, "Created", "Created container studio")
        self.event(pod, "Started", "Started container studio")
        running = {**waiting, "started": True, "state": {"running": {"startedAt": _now()}}}
        self._status(pod, {"phase": "Running", "podIP": self.pod_ip_of(pod), "containerStatuses": [running],
                           "conditions": [{"type": "PodScheduled", "status": "True"}]})
        self.marks.setdefault(pod, {})["running"] = time.monotonic()
        time.sleep(self.delay)
        if self.failure == "CrashLoopBackOff":
            self.server.run(self.server.emulator.logs.__setitem__, (self.namespace, pod),
                            "runner: starting\nTraceback: ImportError: no module named jupyterlab\n")
            self.event(pod, "BackOff", "Back-off restarting failed container studio", "Warning")
            self._status(pod, {"phase": "Running", "containerStatuses": [
                {**waiting, "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff",
                                                                      "message": "back-off 40s restarting failed container"}},
                 "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]})
            return
        if self.failure == "NeverReady":
            return
        self._status(pod, {"phase": "Running", "podIP": self.pod_ip_of(pod),
                           "containerStatuses": [{**running, "ready": True}],
                           "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}]})
        self.marks.setdefault(pod, {})["ready"] = time.monotonic()
        # The Deployment controller's part: the rollout is complete.
        current = self.apps.read_namespaced_deployment(dep["metadata"]["name"], self.namespace)
        n = int(current.spec.replicas or 1)
        ready = sum(1 for p in self.server.objects("pods", self.namespace)
                    if p["metadata"]["name"] in self.replicas.get(dep["metadata"]["name"], ())
                    and any(c.get("type") == "Ready" and c.get("status") == "True"
                            for c in (p.get("status") or {}).get("conditions") or ()))
        self.apps.patch_namespaced_deployment_status(dep["metadata"]["name"], self.namespace, {"status": {
            "observedGeneration": current.metadata.generation, "replicas": n, "updatedReplicas": n,
            "readyReplicas": min(ready, n), "availableReplicas": min(ready, n)}})
