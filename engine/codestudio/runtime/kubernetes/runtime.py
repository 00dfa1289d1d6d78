""":class:`KubernetesRuntime`: the Runtime interface on a cluster, through the official client.

A pod set is one Deployment (``replicas`` pods) with its Service,
NetworkPolicy and guard Secret, all named like the pod set and labelled
(:mod:`.manifests`). :meth:`KubernetesRuntime.start` pushes the image (by
digest), applies the objects with server-side apply, then follows the pods'
status and events (:mod:`.watching`, :mod:`.events`): each step is a
progress line (scheduled, pulling, pulled, started), and a reason no pod
recovers from (ImagePullBackOff, CrashLoopBackOff, Unschedulable, ...) or
the start timeout ends the start at once: the pod's logs and events are
kept in the studio's logs folder, every object is deleted, and
:class:`~codestudio.errors.RuntimeFailure` says why in words. It returns
once every container has started (readiness is the lifecycle's own probe).

The gateway reaches a studio through its Service's cluster address in
``in-cluster`` mode, or through a port-forward the engine keeps in
``port-forward`` mode (:mod:`.portforward`).
"""

from __future__ import annotations

import hashlib
import json
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from codestudio.errors import RuntimeFailure
from codestudio.runtime.base import (
    INSTANCE_LABEL,
    KIND_LABEL,
    MANAGED_BY,
    MANAGED_BY_VALUE,
    Endpoint,
    Pod,
    PodSet,
    PodSetSpec,
    Runtime,
    RuntimeEvent,
)
from codestudio.runtime.kubernetes import events as kevents
from codestudio.runtime.kubernetes import manifests
from codestudio.runtime.kubernetes.manifests import PODSET_LABEL

#: Seconds a start may take from applied to every container started.
START_TIMEOUT = 300.0
#: Extra seconds a stop waits for pods beyond their grace period.
STOP_SLACK = 30.0
MAIN_CONTAINER = "studio"


def instance_id(data_dir: Path) -> str:
    """The instance label of a data dir (as the local runtime's: a label-safe hash)."""
    return hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]


def _say(message: str) -> None:
    from codestudio.text import printable

    print(printable(message, keep="\n\t"), file=sys.stderr, flush=True)


class KubernetesRuntime(Runtime):
    """:class:`~codestudio.runtime.base.Runtime` on a Kubernetes cluster (module docstring).

    :param settings: the data dir's :class:`~.settings.RuntimeSettings`.
    :param data_dir: the data dir (the instance label, the work folders).
    :param cluster: a :class:`~.client.Cluster` (tests pass one for the emulator).
    :param pusher: ``pusher(local_image) -> registry/name@sha256:...`` (default: buildah push).
    :param progress: where progress lines go (default: stderr).
    """

    name = "kubernetes"

    def __init__(self, settings, *, data_dir: Path | None = None, cluster=None,
                 pusher: Callable[[str], str] | None = None, progress: Callable[[str], None] | None = None,
                 start_timeout: float = START_TIMEOUT):
        from codestudio.home import data_dir as default_data_dir

        self.settings = settings
        self.data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        self.instance = instance_id(self.data_dir)
        self.namespace = settings.namespace
        self._cluster = cluster
        self._pusher = pusher
        self.progress = progress or _say
        self.start_timeout = start_timeout
        self._forwards: dict[str, object] = {}

    # --- helpers -------------------------------------------------------------------------------

    @property
    def cluster(self):
        if self._cluster is None:
            from codestudio.runtime.kubernetes.client import Cluster

            self._cluster = Cluster(context=self.settings.context, namespace=self.namespace)
        return self._cluster

    def _workdir(self, name: str) -> Path:
        return self.data_dir / "runtime" / "kubernetes" / name

    def _selector(self, name: str | None = None) -> str:
        sel = f"{MANAGED_BY}={MANAGED_BY_VALUE},{INSTANCE_LABEL}={self.instance}"
        return sel + (f",{PODSET_LABEL}={name}" if name else "")

    def _raw(self, fn, *args, doing: str, **kwargs) -> dict:
        resp = self.cluster.call(fn, *args, doing=doing, _preload_content=False, **kwargs)
        if resp is None:
            return {}
        return json.loads(resp.data or b"{}")

    def _pod_objects(self, name: str | None = None) -> list[dict]:
        listing = self._raw(self.cluster.core.list_namespaced_pod, self.namespace, label_selector=self._selector(name),
                            doing=f"list pods of {name or 'codestudio'}")
        return sorted(listing.get("items") or [], key=lambda p: p["metadata"]["name"])

    def _push(self, image: str) -> str:
        if "@sha256:" in image:
            return image
        if self._pusher is not None:
            return self._pusher(image)
        from codestudio.images.push import push_image

        auth = None
        if self.settings.pull_secret:
            secret = self._raw(self.cluster.core.read_namespaced_secret, self.settings.pull_secret, self.namespace,
                               doing=f"read the pull secret {self.settings.pull_secret}")
            encoded = (secret.get("data") or {}).get(".dockerconfigjson")
            if encoded:
                import base64

                auth = json.loads(base64.b64decode(encoded))
        import os

        authfile = os.environ.get("REGISTRY_AUTH_FILE")
        self.progress(f"pushing {image} to {self.settings.registry}")
        return push_image(image, self.settings.registry, auth=auth, authfile=Path(authfile) if authfile else None)

    def _phase(self, pod: dict) -> tuple[str, str | None]:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        if meta.get("deletionTimestamp"):
            return "gone", "the pod is being deleted"
        failed = kevents.from_pod(pod)
        if failed is not None and failed.kind == "failed":
            return "exited", failed.reason
        phase = status.get("phase")
        statuses = status.get("containerStatuses") or []
        main = next((c for c in statuses if c.get("name") == MAIN_CONTAINER), statuses[0] if statuses else None)
        if phase == "Running" and main and "running" in (main.get("state") or {}):
            return "running", None
        if phase in ("Succeeded", "Failed"):
            return "exited", f"the pod {phase.lower()}"
        waiting = ((main or {}).get("state") or {}).get("waiting") or {}
        return "pending", waiting.get("reason") or f"the pod is {str(phase or 'pending').lower()}"

    def _endpoints(self, name: str, pod: dict, ports) -> dict[int, Endpoint]:
        """The pod's saved endpoints; a running pod the Deployment made after the start (a scale, a
        replaced replica) gets its own now, from what the start saved of the pod set (``podset.json``)."""
        saved = self._workdir(name) / f"{pod['metadata']['name']}.ports.json"
        try:
            return {int(k): Endpoint(v[0], int(v[1])) for k, v in json.loads(saved.read_text()).items()}
        except (OSError, ValueError):
            pass
        if self._phase(pod)[0] != "running":
            return {}
        try:
            known = json.loads((self._workdir(name) / "podset.json").read_text())
        except (OSError, ValueError):
            return {}
        try:
            endpoints = self._reach_pod(name, pod, [int(p) for p in known["ports"]], per_pod=bool(known["per_pod"]))
        except RuntimeFailure:
            return {}
        self._save_endpoints(name, pod, endpoints)
        return endpoints

    def _save_endpoints(self, name: str, pod: dict, endpoints: dict[int, Endpoint]) -> None:
        (self._workdir(name) / f"{pod['metadata']['name']}.ports.json").write_text(
            json.dumps({str(k): [e.host, e.port] for k, e in endpoints.items()}))

    def _pod(self, name: str, obj: dict) -> Pod:
        phase, message = self._phase(obj)
        return Pod(obj["metadata"]["name"], phase, self._endpoints(name, obj, ()), message)  # type: ignore[arg-type]

    # --- Runtime -------------------------------------------------------------------------------

    def start(self, spec: PodSetSpec) -> PodSet:
        if spec.replicas < 1:
            raise RuntimeFailure(f"pod set {spec.name}: replicas must be at least 1, not {spec.replicas}")
        manifests.check_service_account(spec, self.namespace)  # before anything is written, pushed or applied
        workdir = self._workdir(spec.name)
        workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        deployment = next((d for d in spec.manifest if d.get("kind") == "Deployment"), None)
        if deployment is None:
            raise RuntimeFailure(f"pod set {spec.name}: the manifest has no Deployment")
        local_image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        image = self._push(local_image)
        docs = manifests.prepare(spec, namespace=self.namespace, instance=self.instance, image=image,
                                 pull_secret=self.settings.pull_secret)
        import yaml

        (workdir / "podset.json").write_text(json.dumps({"ports": list(spec.ports), "per_pod": self._per_pod(spec)}))
        (workdir / "applied.yaml").write_text(yaml.safe_dump_all(manifests.without_secrets(docs), sort_keys=True))
        began = time.monotonic()
        try:
            manifests.apply(self.cluster, docs)
            self.progress(f"applied Deployment {spec.name} in namespace {self.namespace} ({image})")
            self.applied_after = time.monotonic() - began
            pods = self._wait_started(spec, deadline=time.monotonic() + self.start_timeout)
        except BaseException as exc:
            self._fail_cleanup(spec, exc)
            raise
        return PodSet(spec.name, manifests.labels_of(spec, self.instance), tuple(pods))

    def _wait_started(self, spec: PodSetSpec, *, deadline: float) -> list[Pod]:
        """Follow events until every pod's container runs; fail fast on a hopeless reason."""
        last: dict[str, str] = {}
        for event in self.events(spec.name, timeout=max(0.1, deadline - time.monotonic()), _until_started=spec.replicas):
            if event.kind == "failed":
                raise _StartFailed(event.reason or event.message, event.pod)
            if event.kind == "stopped":
                raise _StartFailed("its pods were removed while it started", None)
            if last.get(event.pod or "") != event.message:
                self.progress(event.message)
                last[event.pod or ""] = event.message
            if event.kind == "_all_started":
                break
        else:
            states = "; ".join(f"{p.name}: {p.message or p.phase}" for p in self.pods(spec.name)) or "no pod was created"
            raise _StartFailed(f"its pods did not start within {self.start_timeout:g}s ({states})", None)
        objects = self._pod_objects(spec.name)
        pods = []
        for obj in objects:
            endpoints = self._reach(spec, obj)
            self._save_endpoints(spec.name, obj, endpoints)
            phase, message = self._phase(obj)
            pods.append(Pod(obj["metadata"]["name"], phase, endpoints, message))  # type: ignore[arg-type]
        return pods

    def _replicas_apart(self, name: str) -> bool:
        try:
            return bool(json.loads((self._workdir(name) / "podset.json").read_text())["per_pod"])
        except (OSError, ValueError, KeyError):
            return False

    @staticmethod
    def _per_pod(spec: PodSetSpec) -> bool:
        """Each replica is reached on its own (a webapp, or several replicas), never through the Service."""
        return spec.replicas != 1 or spec.labels.get(KIND_LABEL) == "webapp"

    def _reach(self, spec: PodSetSpec, pod: dict) -> dict[int, Endpoint]:
        return self._reach_pod(spec.name, pod, list(spec.ports), per_pod=self._per_pod(spec))

    def _reach_pod(self, name: str, pod: dict, ports: list[int], *, per_pod: bool) -> dict[int, Endpoint]:
        """Where the gateway reaches each port of ``pod``: the Service (in-cluster, one studio pod), the
        pod's IP and guard port (in-cluster, a replica), or a port-forward to the pod (port-forward)."""
        from codestudio.render import guard_ports

        guard = guard_ports(ports)
        if self.settings.gateway == "in-cluster":
            if not per_pod:
                svc = self._raw(self.cluster.core.read_namespaced_service, name, self.namespace,
                                doing=f"read Service {name}")
                host = (svc.get("spec") or {}).get("clusterIP")
                if host and host != "None":
                    return {p: Endpoint(host, p) for p in ports}
            ip = (pod.get("status") or {}).get("podIP")
            if not ip:
                raise RuntimeFailure(f"pod {pod['metadata']['name']} has no IP address yet")
            return {p: Endpoint(ip, guard[p]) for p in ports}
        portforward = _portforward()
        # A replica's forwarder never follows to another pod: each replica is served at its own prefix.
        forwards = portforward.forward_ports(self, pod["metadata"]["name"], {p: guard[p] for p in ports},
                                             workdir=self._workdir(name), follow=not per_pod)
        return {p: Endpoint("127.0.0.1", local) for p, local in forwards.items()}

    def _fail_cleanup(self, spec: PodSetSpec, exc: BaseException) -> None:
        """Keep the pods' logs and events in the studio's logs folder, then delete everything."""
        saved = []
        if spec.workdir is not None and not isinstance(exc, KeyboardInterrupt):
            stamp = time.strftime("%Y%m%dT%H%M%S")
            try:
                for pod in self._pod_objects(spec.name):
                    target = Path(spec.workdir) / "logs" / f"{stamp}-failed-{pod['metadata']['name']}.log"
                    if self.save_logs(pod["metadata"]["name"], target):
                        saved.append(target)
            except RuntimeFailure:
                pass
        try:
            self.stop(spec.name)
        except RuntimeFailure as inner:
            self.progress(f"warning: clean-up after the failed start: {inner}")
        if isinstance(exc, _StartFailed):
            where = f"; logs and events kept in {saved[0]}" if saved else ""
            exc.args = (f"{exc.args[0]}{where}",)

    def wait_rollout(self, name: str, *, timeout: float) -> None:
        """Wait until the Deployment's rollout is complete (every replica updated and available)."""
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            dep = self._raw(self.cluster.apps.read_namespaced_deployment, name, self.namespace,
                            doing=f"read Deployment {name}", not_found_ok=True)
            if not dep:
                raise RuntimeFailure(f"Deployment {name} is gone")
            want = (dep.get("spec") or {}).get("replicas", 1)
            status = dep.get("status") or {}
            generation = (dep.get("metadata") or {}).get("generation", 0)
            if (status.get("observedGeneration", 0) >= generation and status.get("updatedReplicas", 0) >= want
                    and status.get("availableReplicas", 0) >= want and status.get("replicas", 0) <= want):
                self.progress(f"rollout of {name} complete ({want}/{want} available)")
                return
            for obj in self._pod_objects(name):
                failed = kevents.from_pod(obj)
                if failed is not None and failed.kind == "failed":
                    raise RuntimeFailure(failed.reason or failed.message)
            if time.monotonic() >= deadline:
                raise RuntimeFailure(f"the rollout of Deployment {name} did not complete within {timeout:g}s "
                                     f"({status.get('availableReplicas', 0)}/{want} available: the pod's readiness "
                                     "probe did not pass)")
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.5)

    def pods(self, name: str) -> list[Pod]:
        pods = [self._pod(name, p) for p in self._pod_objects(name)]
        if self.settings.gateway == "port-forward" and self._replicas_apart(name):
            # A replica's forwarder goes with its pod (a studio's follows the pod that replaced it).
            here = {p.name for p in pods if p.phase != "gone"}
            for pod in _portforward().forwarded_pods(self._workdir(name)):
                if pod not in here:
                    _portforward().stop_forwards(self, name, workdir=self._workdir(name), pod=pod)
                    (self._workdir(name) / f"{pod}.ports.json").unlink(missing_ok=True)
        if self.settings.gateway == "port-forward" and any(p.running for p in pods):
            # A forwarder that died (a reboot) comes back on its ports: the gateway's upstreams stay right.
            _portforward().ensure_forwards(self, name, workdir=self._workdir(name))
        return pods

    def events(self, name: str, *, timeout: float | None = None, _until_started: int | None = None) -> Iterator[RuntimeEvent]:
        from codestudio.runtime.kubernetes.watching import follow

        deadline = None if timeout is None else time.monotonic() + timeout
        stop = threading.Event()
        items: queue.Queue = queue.Queue()
        prefix = f"{name}-"

        def pump(kind: str, fn, *args, **kwargs) -> None:
            try:
                for typ, obj in follow(self.cluster, fn, *args, doing=f"watch {kind} of {name}", deadline=deadline,
                                       stop=stop, **kwargs):
                    items.put((kind, typ, obj))
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                items.put((kind, "ERROR", exc))
            finally:
                items.put((kind, "END", None))

        threads = [
            threading.Thread(target=pump, args=("pods", self.cluster.core.list_namespaced_pod, self.namespace),
                             kwargs={"label_selector": self._selector(name)}, daemon=True),
            threading.Thread(target=pump, args=("events", self.cluster.core.list_namespaced_event, self.namespace),
                             kwargs={"field_selector": "involvedObject.kind=Pod"}, daemon=True),
        ]
        for t in threads:
            t.start()
        pods: dict[str, dict] = {}
        seen_events: set[str] = set()
        said: set[tuple[str | None, str]] = set()
        started: set[str] = set()
        ended = 0
        had_pods = False
        try:
            while ended < len(threads):
                wait = None if deadline is None else deadline - time.monotonic()
                if wait is not None and wait <= 0:
                    return
                try:
                    kind, typ, obj = items.get(timeout=wait)
                except queue.Empty:
                    return
                if typ == "END":
                    ended += 1
                    continue
                if typ == "ERROR":
                    raise obj
                if typ == "RELIST":
                    if kind == "pods":
                        pods.clear()
                    continue
                out: list[RuntimeEvent] = []
                if kind == "pods":
                    pod = obj["metadata"]["name"]
                    if typ == "DELETED":
                        pods.pop(pod, None)
                        if had_pods and not pods:
                            yield RuntimeEvent("stopped", f"pod set {name} is gone")
                            return
                        continue
                    pods[pod] = obj
                    had_pods = True
                    derived = kevents.from_pod(obj)
                    if derived is not None:
                        out.append(derived)
                    if self._phase(obj)[0] == "running" and pod not in started:
                        started.add(pod)
                        out.append(RuntimeEvent("started", f"container of {pod} started", pod=pod))
                else:
                    involved = (obj.get("involvedObject") or {}).get("name") or ""
                    uid = (obj.get("metadata") or {}).get("uid") or (obj.get("metadata") or {}).get("name")
                    if not involved.startswith(prefix) or uid in seen_events:
                        continue
                    seen_events.add(uid)
                    if involved not in pods and obj.get("reason") == "FailedScheduling":
                        # The event can come before the pod's own watch does: its requests make the words.
                        found = self._raw(self.cluster.core.read_namespaced_pod, involved, self.namespace,
                                          doing=f"read pod {involved}", not_found_ok=True)
                        if found:
                            pods[involved] = found
                    derived = kevents.from_event(obj, pods.get(involved))
                    if derived is not None:
                        out.append(derived)
                for event in out:
                    key = (event.pod, event.kind)
                    if key in said and event.kind in ("started", "ready", "scheduled"):
                        continue
                    said.add(key)
                    yield event
                    if event.kind == "failed":
                        return
                if _until_started is not None and len(started) >= _until_started:
                    yield RuntimeEvent("_all_started", "every container started")  # type: ignore[arg-type]
                    return
        finally:
            stop.set()

    @property
    def transport(self):
        """Exec, logs and copies through the exec and log APIs (:mod:`.exec`)."""
        if getattr(self, "_transport", None) is None:
            from codestudio.runtime.kubernetes.exec import PodTransport

            c = self.cluster
            self._transport = PodTransport(c.api, self.namespace, container=MAIN_CONTAINER,
                                           connect_timeout=max(c.connect_timeout, 10), read_timeout=c.read_timeout)
        return self._transport

    def exec(self, pod: str, argv, *, user: str | None = "codestudio", stdin: bool = False):
        return self.transport.exec(pod, list(argv), user=user, stdin=stdin)

    def exec_framed(self, pod: str, argv, *, user: str | None = "codestudio"):
        # v4-only API servers cannot close stdin: the sync agent reads framed input there.
        return self.transport.exec_framed(pod, list(argv), user=user)

    def exec_detached(self, pod: str, argv, *, user: str | None = "codestudio") -> None:
        self.transport.exec_detached(pod, list(argv), user=user)

    def logs(self, pod: str, *, follow: bool = False, tail: int | None = None) -> Iterator[bytes]:
        return self.transport.logs(pod, follow=follow, tail=tail)

    def save_logs(self, pod: str, target: Path) -> bool:
        """The container's logs (the previous run's too), how it ended, then the pod's events."""
        if not self.transport.save_logs(pod, target):
            return False
        listing = self._raw(self.cluster.core.list_namespaced_event, self.namespace,
                            field_selector=f"involvedObject.name={pod}", doing=f"list the events of {pod}")
        with open(target, "a") as out:
            out.write(f"\n# events (pod {pod}, namespace {self.namespace})\n")
            out.writelines(kevents.event_line(e) + "\n" for e in listing.get("items") or [])
        return True

    def copy_out(self, pod: str, path: str, out) -> bool:
        pods = {p.name: p for p in self._all_pods()}
        if pod not in pods or not pods[pod].running:
            raise RuntimeFailure(f"pod {pod} is not running: Kubernetes cannot copy files out of a stopped container")
        return self.transport.copy_out(pod, path, out)

    def _all_pods(self) -> list[Pod]:
        return [self._pod(p["metadata"].get("labels", {}).get(PODSET_LABEL, ""), p) for p in self._pod_objects()]

    def stop(self, name: str, *, timeout: float = 10) -> None:
        if self.settings.gateway == "port-forward":
            _portforward().stop_forwards(self, name, workdir=self._workdir(name))
        c = self.cluster
        body = {"propagationPolicy": "Background", "gracePeriodSeconds": int(timeout)}
        c.call(c.apps.delete_namespaced_deployment, name, self.namespace, body=body, not_found_ok=True,
               doing=f"delete Deployment {name}", _preload_content=False)
        c.call(c.core.delete_namespaced_service, name, self.namespace, not_found_ok=True,
               doing=f"delete Service {name}", _preload_content=False)
        c.call(c.networking.delete_namespaced_network_policy, name, self.namespace, not_found_ok=True,
               doing=f"delete NetworkPolicy {name}", _preload_content=False)
        secrets = self._raw(c.core.list_namespaced_secret, self.namespace, label_selector=self._selector(name),
                            doing=f"list Secrets of {name}")
        for secret in secrets.get("items") or []:
            c.call(c.core.delete_namespaced_secret, secret["metadata"]["name"], self.namespace, not_found_ok=True,
                   doing=f"delete Secret {secret['metadata']['name']}", _preload_content=False)
        # The ReplicaSet controller removes the pods; delete them too so a stop never waits on it.
        for pod in self._pod_objects(name):
            c.call(c.core.delete_namespaced_pod, pod["metadata"]["name"], self.namespace, not_found_ok=True,
                   body={"gracePeriodSeconds": int(timeout)}, doing=f"delete pod {pod['metadata']['name']}",
                   _preload_content=False)
        deadline = time.monotonic() + timeout + STOP_SLACK
        delay = 0.05
        while True:
            left = [p["metadata"]["name"] for p in self._pod_objects(name)]
            if not left:
                break
            if time.monotonic() >= deadline:
                raise RuntimeFailure(f"pods {', '.join(left)} of {name} were still there {timeout + STOP_SLACK:g}s "
                                     "after they were deleted")
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
        workdir = self._workdir(name)
        (workdir / "podset.json").unlink(missing_ok=True)
        for leftover in workdir.glob("*.ports.json") if workdir.is_dir() else ():
            leftover.unlink(missing_ok=True)

    def scale(self, name: str, replicas: int, *, remove=()) -> PodSet:
        if replicas < 0:
            raise RuntimeFailure(f"pod set {name}: replicas must be at least 0, not {replicas}")
        c = self.cluster
        live = [o["metadata"]["name"] for o in self._pod_objects(name) if self._phase(o)[0] != "gone"]
        going = [pod for pod in remove if pod in live]
        # The ReplicaSet removes the pods with the lowest deletion cost first (Kubernetes >= 1.22); named
        # pods the lower count does not take are deleted, and the Deployment replaces them.
        for pod in going:
            self._raw(c.core.patch_namespaced_pod, pod, self.namespace,
                      {"metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": "-1000"}}},
                      doing=f"mark pod {pod} to go first")
        dep = self._raw(c.apps.patch_namespaced_deployment_scale, name, self.namespace, {"spec": {"replicas": replicas}},
                        doing=f"scale Deployment {name}")
        labels = (dep.get("metadata") or {}).get("labels") or {}
        for pod in going[max(0, len(live) - replicas):]:
            c.call(c.core.delete_namespaced_pod, pod, self.namespace, not_found_ok=True,
                   doing=f"delete pod {pod}", _preload_content=False)
        # The Deployment adds and removes pods by itself: wait until it has (new pods running, with endpoints).
        deadline = time.monotonic() + self.start_timeout
        delay = 0.02
        while True:
            pods = [p for p in self.pods(name) if p.phase != "gone"]  # a pod being deleted is gone already
            if (len(pods) == replicas and all(p.running and p.endpoints for p in pods)
                    and not any(p.name in remove for p in pods)):
                return PodSet(name, labels, tuple(pods))
            for obj in self._pod_objects(name):
                failed = kevents.from_pod(obj) if obj["metadata"]["name"] not in remove else None
                if failed is not None and failed.kind == "failed":
                    raise RuntimeFailure(f"scaling {name}: {failed.reason or failed.message}")
            if time.monotonic() >= deadline:
                states = "; ".join(f"{p.name}: {p.message or p.phase}" for p in pods) or "no pod"
                raise RuntimeFailure(f"Deployment {name} did not reach {replicas} running pods within "
                                     f"{self.start_timeout:g}s ({states})")
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.5)

    def list(self) -> list[PodSet]:
        deployments = self._raw(self.cluster.apps.list_namespaced_deployment, self.namespace,
                                label_selector=self._selector(), doing="list codestudio Deployments")
        by_set: dict[str, list[Pod]] = {}
        for obj in self._pod_objects():
            podset = (obj["metadata"].get("labels") or {}).get(PODSET_LABEL, "")
            by_set.setdefault(podset, []).append(self._pod(podset, obj))
        out = []
        for dep in deployments.get("items") or []:
            name = dep["metadata"]["name"]
            out.append(PodSet(name, dict(dep["metadata"].get("labels") or {}), tuple(by_set.pop(name, []))))
        # Pods whose Deployment is gone (a crash between the two deletes) are listed too.
        for name, pods in by_set.items():
            out.append(PodSet(name, {PODSET_LABEL: name}, tuple(pods)))
        return sorted(out, key=lambda ps: ps.name)


def _portforward():
    try:
        from codestudio.runtime.kubernetes import portforward
    except ImportError:
        raise RuntimeFailure("the port-forward gateway mode is not available in this installation; use "
                             "`codestudio runtime set kubernetes ... --gateway in-cluster`") from None
    return portforward


class _StartFailed(RuntimeFailure):
    def __init__(self, reason: str, pod: str | None):
        super().__init__(reason)
        self.pod = pod


