"""The engine's side of the sync agent's protocol: one session (one exec) per sync.

The session sends ``list``, then ``get`` and ``apply`` requests and reads
the answers, bounding everything read from the studio (its agent may be
hostile): line length, entries listed, entries refused, answer lines.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
import threading
from typing import TYPE_CHECKING

from codestudio.sync import agent
from codestudio.sync.transport import Transport

if TYPE_CHECKING:
    from codestudio.sync.plan import Job

#: Seconds the agent gets to write its hash caches and exit once a sync is done.
CLOSE_TIMEOUT = 60

# Everything read from a studio is bounded: a hostile agent must not be able
# to grow the engine's memory (an endless line once took 1 GiB in 4 s).
#: Longest answer line (listings come in chunks of well under 1 MiB).
MAX_LINE = 4 << 20
#: Most entries (files, symlinks, skipped names) a studio may list in one sync.
MAX_LISTED = 500_000
#: Most entries refused in one sync before the engine stops reading.
MAX_REFUSED = 10_000
#: Answer lines an apply may bring beyond one per item sent.
APPLY_SLACK = 1_000
#: Bytes of the agent's stderr kept for error messages (the rest is read and dropped).
STDERR_TAIL = 8 << 10


class AgentFailed(Exception):
    """The session with the agent broke; the message says how."""


class _TooMuch(Exception):
    """The studio sent more than a limit allows; the message names the limit."""


def _limited_line(stream, limit: int = MAX_LINE) -> bytes:
    """One line of ``stream`` (b"" at its end), never holding more than ``limit`` bytes of it."""
    line = stream.readline(limit + 1)
    if len(line) > limit or (len(line) == limit and not line.endswith(b"\n")):
        raise _TooMuch(f"an answer line longer than {limit} bytes (the limit for a line read from a studio)")
    return line


def _loads(line: bytes):
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return None


def _drain_lines(stream, sink: list, until: bytes, max_lines: int, errors: list, stop) -> threading.Thread:
    """Collect ``stream``'s lines in a thread, up to its end or the line starting with ``until``.

    At most ``max_lines`` lines of at most :data:`MAX_LINE` bytes are kept;
    past a limit the reason goes to ``errors``, ``stop()`` is called (it
    kills the agent, which may be blocked writing, so the sender is not
    left blocked too) and reading stops.
    """

    def run() -> None:
        try:
            while True:
                line = _limited_line(stream)
                if not line:
                    return
                if len(sink) >= max_lines:
                    raise _TooMuch(f"more than {max_lines} answer lines for what was sent")
                sink.append(line)
                if line.startswith(until):
                    return
        except _TooMuch as exc:
            errors.append(str(exc))
            stop()
        except (OSError, ValueError):
            pass  # the pipe closed under us: the session is being stopped

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _drain_tail(stream, tail: bytearray, keep: int = STDERR_TAIL) -> threading.Thread:
    """Read ``stream`` to its end in a thread, keeping only its last ``keep`` bytes in ``tail``."""

    def run() -> None:
        try:
            while True:
                chunk = stream.read1(1 << 16) if hasattr(stream, "read1") else stream.read(1 << 16)
                if not chunk:
                    return
                tail.extend(chunk)
                if len(tail) > keep:
                    del tail[: len(tail) - keep]
        except (OSError, ValueError):
            pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _checked_listing(m: dict) -> dict:
    """A studio's listing of one folder, its names checked as the agent should have (it may lie)."""
    entries, refused = [], []
    for e in agent.rows_to_entries(m["rows"]):
        if not isinstance(e["p"], str) or e["t"] not in ("f", "l"):
            raise ValueError(f"bad row {e!r:.80}")
        try:
            agent.check_name(e["p"])
        except agent.Refused as exc:
            refused.append((e["p"], str(exc)))
            continue
        entries.append(e)
    return {"entries": entries, "skipped": [(str(p), str(why)) for p, why in m["skipped"]], "refused": refused}


class AgentSession:
    """One agent process (one exec) for a whole sync: list, then get, then apply."""

    def __init__(self, transport: Transport):
        self.transport = transport
        self.proc = transport.start_agent("session", "/")
        self.err = bytearray()
        self.threads = [_drain_tail(self.proc.stderr, self.err)]
        self.cache = getattr(transport, "cache_dir", None)

    def send(self, request: dict) -> None:
        try:
            self.proc.stdin.write(json.dumps(request, separators=(",", ":")).encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise AgentFailed("agent stopped reading") from None

    def read_line(self) -> dict:
        try:
            line = _limited_line(self.proc.stdout)
        except _TooMuch as exc:
            raise AgentFailed(str(exc)) from None
        if not line:
            raise AgentFailed("agent ended its answer early")
        data = _loads(line)
        if not isinstance(data, dict):
            raise AgentFailed(f"unreadable answer {line[:80]!r}")
        return data

    def start_list(self, roots: list[str], regexes: list[str]) -> None:
        # Sent before the server side is listed, so both sides list at once.
        self.send({"op": "list", "roots": roots, "exclude": regexes, "cache": self.cache})

    def read_list(self, count: int) -> list[dict]:
        """The listings of ``count`` folders: chunks ``{"i", "rows"|"skipped"}``, then ``{"maps": count}``."""
        maps: list[dict] = [{"rows": [], "skipped": []} for _ in range(count)]
        listed = 0
        try:
            while True:
                data = self.read_line()
                if "maps" in data:
                    if data["maps"] != count:
                        raise ValueError(f"{data['maps']!r:.20} listings for {count} folders")
                    break
                i = data["i"]
                if not isinstance(i, int) or not 0 <= i < count:
                    raise ValueError(f"folder index {i!r:.20}")
                for key in ("rows", "skipped"):
                    items = data.get(key, [])
                    if not isinstance(items, list):
                        raise ValueError(f"{key} is not a list")
                    listed += len(items)
                    if listed > MAX_LISTED:
                        raise AgentFailed(f"listed more than {MAX_LISTED} entries (the limit for one sync)")
                    maps[i][key] += items
            return [_checked_listing(m) for m in maps]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise AgentFailed(f"unreadable listing: {exc}") from None

    def get(self, jobs: list[Job], server_roots: list[str]) -> str | None:
        """Fetch every job's ``pulls`` into ``job.pulled_entries``; an error message if it broke part-way."""
        self.send({"op": "get", "roots": [j.m.target for j in jobs], "paths": [sorted(j.pulls) for j in jobs]})
        known: list[set] = [set() for _ in jobs]
        stream = agent.FrameReader(self.proc.stdout)
        refused_before = sum(len(j.mr.refused) for j in jobs)
        try:
            with agent.open_tar_reader(stream) as tar:
                for member in tar:
                    if sum(len(j.mr.refused) for j in jobs) - refused_before >= MAX_REFUSED:
                        return f"more than {MAX_REFUSED} entries refused (the limit for one sync); stopped reading"
                    try:
                        i, name = agent.split_member(member.name, len(jobs))
                    except agent.Refused as exc:
                        # Not attributable to a mapping: reported with the first one.
                        jobs[0].mr.refused.append(("studio", member.name, str(exc)))
                        continue
                    job = jobs[i]
                    try:
                        dest = job.pulls.get(agent.check_name(name))
                        if dest is None:
                            raise agent.Refused("not requested")
                        job.pulled_entries[dest] = agent.write_member(server_roots[i], tar, member, dest, known[i])
                    except agent.Refused as exc:
                        job.mr.refused.append(("studio", name, str(exc)))
            stream.drain()
        except (tarfile.TarError, OSError, EOFError, agent.ProtocolError) as exc:
            # Files written before the failure are complete; the caller records them.
            return f"unreadable archive: {exc}"
        return None

    def apply(self, jobs: list[Job], server_roots: list[str]) -> tuple[list[tuple[int, dict]], str | None]:
        """Send every job's renames, deletions and files.

        Returns the agent's answers as (job index, answer) and an error
        message if the transfer broke part-way. Files that vanished here
        before they could be sent are reported in their job.
        """
        out: list[bytes] = []
        failure = None
        self.send(
            {
                "op": "apply",
                "roots": [j.m.target for j in jobs],
                "rename": [j.renames for j in jobs],
                "delete": [j.push_deletes for j in jobs],
                "cache": self.cache,
            }
        )
        # Drained concurrently: the agent confirms while we are still sending.
        sent = sum(len(j.renames) + len(j.push_deletes) + len(j.push_files) for j in jobs)
        too_much: list[str] = []
        reader = _drain_lines(self.proc.stdout, out, b'{"end"', sent + APPLY_SLACK, too_much, self.proc.kill)
        try:
            frames = agent.FrameWriter(self.proc.stdin)
            with agent.open_tar_writer(frames) as tar:
                for i, (job, root) in enumerate(zip(jobs, server_roots)):
                    known: set = set()
                    for name in job.push_files:
                        if not agent.add_to_tar(tar, root, name, f"{i}/{name}", known):
                            job.mr.skipped.append(("server", name, "vanished before it could be sent"))
            frames.end()
        except (BrokenPipeError, OSError) as exc:
            failure = f"agent stopped reading ({exc})"
            self._stop_input()
        reader.join()
        results: list[tuple[int, dict]] = []
        ended = False
        for line in out:
            res = _loads(line)
            if not isinstance(res, dict):
                continue  # a line cut short by a killed agent confirms nothing
            if res.get("end"):
                ended = True
                continue
            i = res.get("i")
            if i is None:
                jobs[0].mr.refused.append(("studio", str(res.get("refused", "?")), str(res.get("reason", ""))))
            elif isinstance(i, int) and 0 <= i < len(jobs):
                results.append((i, res))
        if too_much:
            failure = too_much[0]
        elif failure is None and not ended:
            failure = "agent ended its answer early"
        return results, failure

    def _stop_input(self) -> None:
        try:
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass

    def close(self, failure: str | None = None) -> str | None:
        """End the session; return an error message if it (or the agent) failed."""
        self._stop_input()
        if failure is not None and self.proc.poll() is None:
            self.proc.kill()  # it may be blocked writing an answer nobody reads
        try:
            # All answers are in: an agent that does not end now is stuck (or hostile).
            rc = self.proc.wait(timeout=CLOSE_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            failure = failure or f"agent did not exit within {CLOSE_TIMEOUT} s"
        for t in self.threads:
            t.join()
        if rc == 0 and failure is None:
            return None
        tail = bytes(self.err).decode(errors="replace").strip().splitlines()[-5:]
        what = failure or "agent failed"
        return f"sync agent in {self.transport.description}: {what} (exit {rc})" + (
            ": " + " | ".join(tail) if tail else ""
        )
