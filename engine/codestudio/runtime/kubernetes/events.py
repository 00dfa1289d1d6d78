"""Pod status and Kubernetes events in words: progress lines and fail-fast reasons.

:func:`from_event` maps an Event of the studio's pod to a
:class:`~codestudio.runtime.base.RuntimeEvent` (Scheduled -> scheduled,
Pulling -> pulling, Pulled -> pulled, Started -> started, FailedScheduling
-> failed). :func:`from_pod` reads a pod's status: Ready -> ready, and the
waiting reasons no pod recovers from by itself (:data:`FAIL_FAST`) ->
failed, with the reason in words ("no node has 4 free CPUs").
"""

from __future__ import annotations

import re

from codestudio.runtime.base import RuntimeEvent

#: Container waiting reasons that end a start at once.
FAIL_FAST = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "CrashLoopBackOff",
             "CreateContainerConfigError", "CreateContainerError", "RunContainerError")

_PROGRESS = {"Scheduled": "scheduled", "Pulling": "pulling", "Pulled": "pulled", "Started": "started"}


def _requests(pod: dict) -> dict:
    containers = ((pod.get("spec") or {}).get("containers") or [{}])
    return ((containers[0].get("resources") or {}).get("requests") or {})


def _cpus(value: str) -> str:
    if value.endswith("m"):
        n = int(value[:-1]) / 1000
        return f"{n:g} free CPU" + ("" if n == 1 else "s")
    return f"{value} free CPU" + ("" if value == "1" else "s")


def unschedulable_words(message: str, pod: dict | None = None) -> str:
    """The scheduler's message ("0/3 nodes are available: 3 Insufficient cpu.") in words."""
    requests = _requests(pod or {})
    reasons = []
    for resource in (r.rstrip(".") for r in re.findall(r"Insufficient ([A-Za-z0-9./-]+)", message)):
        if resource == "cpu":
            reasons.append(f"no node has {_cpus(requests['cpu'])}" if "cpu" in requests else "no node has enough free CPU")
        elif resource == "memory":
            reasons.append(f"no node has {requests['memory']} of free memory" if "memory" in requests
                           else "no node has enough free memory")
        else:
            count = (((pod or {}).get("spec") or {}).get("containers") or [{}])[0].get("resources", {}).get(
                "limits", {}).get(resource)
            reasons.append(f"no node has {count} free {resource}" if count else f"no node has a free {resource}")
    if "didn't match Pod's node affinity/selector" in message or "node(s) didn't match node selector" in message:
        reasons.append("no node matches the studio's node selector")
    if "untolerated taint" in message or "had taint" in message:
        reasons.append("the nodes have taints the studio does not tolerate")
    if not reasons:
        reasons.append("no node can run it")
    return f"the pod cannot be scheduled: {'; '.join(dict.fromkeys(reasons))} ({message.strip()[:300]})"


def waiting_words(reason: str, message: str, pod: dict) -> str:
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    image = containers[0].get("image", "?")
    detail = f": {message.strip()[:300]}" if message else ""
    if reason in ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull"):
        return (f"the image {image} could not be pulled ({reason}{detail}); check the registry and the pull "
                "secret (codestudio runtime show)")
    if reason == "InvalidImageName":
        return f"the image name {image} is invalid ({reason}{detail})"
    if reason == "CrashLoopBackOff":
        statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
        last = ((statuses[0].get("lastState") or {}).get("terminated") or {})
        if last.get("reason") == "OOMKilled":
            return f"the studio's container keeps being {_oom_words(pod)} (CrashLoopBackOff); its logs are kept"
        code = f", last exit status {last['exitCode']}" if "exitCode" in last else ""
        return f"the studio's container keeps crashing (CrashLoopBackOff{code}); its logs are kept"
    if reason == "CreateContainerConfigError":
        return f"the container could not be configured (CreateContainerConfigError{detail})"
    return f"the container could not be started ({reason}{detail})"


def _oom_words(pod: dict) -> str:
    """``killed for memory (memory limit 64Mi)``: the kernel's OOM killer ended the container."""
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    limit = ((containers[0].get("resources") or {}).get("limits") or {}).get("memory")
    return f"killed for memory (memory limit {limit})" if limit else "killed for memory"


def from_pod(pod: dict) -> RuntimeEvent | None:
    """``failed`` or ``ready`` from a pod's status, or None when neither (yet)."""
    name = (pod.get("metadata") or {}).get("name")
    status = pod.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and cond.get("reason") == "Unschedulable":
            return RuntimeEvent("failed", f"pod {name} cannot be scheduled", pod=name,
                                reason=unschedulable_words(cond.get("message") or "", pod))
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in FAIL_FAST:
            return RuntimeEvent("failed", f"pod {name}: {waiting['reason']}", pod=name,
                                reason=waiting_words(waiting["reason"], waiting.get("message") or "", pod))
        terminated = (cs.get("state") or {}).get("terminated")
        if terminated and status.get("phase") in ("Failed", "Succeeded"):
            why = f"the container exited with status {terminated.get('exitCode')}"
            if terminated.get("reason") == "OOMKilled":  # docs/lifecycle.md: not a vague crash
                why = f"{_oom_words(pod)}: {why}"
            return RuntimeEvent("failed", f"pod {name} ended", pod=name, reason=why)
    if any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []):
        return RuntimeEvent("ready", f"pod {name} is ready", pod=name)
    return None


def from_event(event: dict, pod: dict | None = None) -> RuntimeEvent | None:
    """A progress line (or ``failed`` for FailedScheduling) from a Kubernetes Event of the pod."""
    reason = event.get("reason") or ""
    name = (event.get("involvedObject") or {}).get("name")
    message = (event.get("message") or "").strip()
    if reason in _PROGRESS:
        return RuntimeEvent(_PROGRESS[reason], f"{reason.lower()}: {message}"[:400], pod=name)
    if reason == "FailedScheduling":
        return RuntimeEvent("failed", f"pod {name} cannot be scheduled", pod=name,
                            reason=unschedulable_words(message, pod))
    return None


def event_line(event: dict) -> str:
    """One line for the studio's events log."""
    return (f"{event.get('lastTimestamp') or event.get('eventTime') or ''} {event.get('type', '')} "
            f"{event.get('reason', '')}: {(event.get('message') or '').strip()}")
