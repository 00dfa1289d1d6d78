"""A hostile sync agent cannot exhaust the engine's memory (issue 9, item 10).

Each case runs the engine in a subprocess whose address space is capped
(``RLIMIT_AS``, 512 MiB above what it uses at start), against a fake agent
that sends without end: the engine must stop with a clear error naming the
studio and the limit, never a MemoryError.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

ENGINE = r"""
import json, resource, subprocess, sys
from codestudio.blockapi import SyncMapping
from codestudio.errors import RuntimeFailure
from codestudio.sync import LocalTransport, SyncStudio, sync
from codestudio.sync import session
from codestudio.sync.transport import agent_source

case, hostile, base = sys.argv[1], sys.argv[2], sys.argv[3]
target = "/home/codestudio/workspace/code_studio-versioned"
studio = SyncStudio("hostile-studio", "PROJ", "alice", (SyncMapping(zone="code_studio-versioned", target=target),))
zone = studio.zone_path("code_studio-versioned")
(zone / "server.txt").write_text("from the server")  # something to push
if case == "many-rows":
    session.MAX_LISTED = 20_000  # the mechanism, without listing half a million rows

class Hostile(LocalTransport):
    def start_agent(self, op, root):
        (self.base / "agent.py").write_text(agent_source())
        return subprocess.Popen(
            [sys.executable, "-c", hostile, str(self.base / "agent.py"), op, str(self.path(root))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )

transport = Hostile(base)
transport.base.mkdir(parents=True, exist_ok=True)
(transport.path(target)).mkdir(parents=True)
(transport.path(target) / "studio.txt").write_text("from the studio")  # something to pull
vm = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize:")).split()[1]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (512 << 20), vm + (512 << 20)))
start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    sync(studio, transport)
    result = {"error": None}
except RuntimeFailure as exc:
    result = {"error": str(exc), "type": type(exc).__name__}
except MemoryError:
    result = {"error": "MemoryError", "type": "MemoryError"}
result["grew_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start
print(json.dumps(result))
"""

#: Prologue of each fake agent: the real agent loaded as a module, so a case replaces one handler.
REAL = r"""
import sys, tarfile, io
ns = {"__name__": "agent"}
exec(open(sys.argv[1]).read(), ns)
Session = ns["Session"]
def run():
    sys.exit(ns["main"](sys.argv[2:]))
"""

HOSTILE = {
    # One listing line that never ends.
    "endless-line": r"""
import sys
sys.stdin.buffer.readline()
out = sys.stdout.buffer
out.write(b'{"i":0,"rows":[["')
chunk = b"a" * (1 << 20)
while True:
    out.write(chunk)
""",
    # Short listing lines without end.
    "many-rows": REAL + r"""
def list_(self, request):
    line = b'{"i":0,"rows":[' + b",".join(b'["f%d","f",1,1,0,null,null]' % n for n in range(1000)) + b"]}\n"
    while True:
        self.stdout.write(line)
Session.list = list_
run()
""",
    # Endless stderr (no newline), then an exit without an answer.
    "endless-stderr": r"""
err = sys.stderr.buffer
chunk = b"e" * (1 << 20)
for _ in range(768):
    err.write(chunk)
err.flush()
""",
    # Endless confirmation lines to an apply.
    "endless-answers": REAL + r"""
def apply(self, request):
    line = b'{"i":0,"refused":"x","reason":"y"}\n' * 1000
    while True:
        self.stdout.write(line)
Session.apply = apply
run()
""",
    # An endless tar stream of members nobody asked for.
    "endless-members": REAL + r"""
def get(self, request):
    out = ns["FrameWriter"](self.stdout)
    tar = ns["TarWriter"](out)
    n = 0
    while True:
        tar.add_file("0/junk%d" % n, io.BytesIO(b"x"), 1, 0o644, 0)
        n += 1
Session.get = get
run()
""",
    # Extended (PAX) headers without end, before any member.
    "endless-header": REAL + r"""
def record(key, value):
    body = b" " + key + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n = len(str(n)) + len(body)
    return str(n).encode() + body
def get(self, request):
    out = ns["FrameWriter"](self.stdout)
    n = 0
    while True:
        records = b"".join(record(b"k%d" % (n * 100 + i), b"v" * 50) for i in range(100))
        info = tarfile.TarInfo("././@PaxHeader")
        info.type, info.size = tarfile.XHDTYPE, len(records)
        out.write(info.tobuf(tarfile.USTAR_FORMAT) + records + b"\0" * (-len(records) % 512))
        n += 1
Session.get = get
run()
""",
}

LIMITS = {
    "endless-line": "answer line longer than 4194304 bytes",
    "many-rows": "listed more than 20000 entries",
    "endless-stderr": "agent ended its answer early",
    "endless-answers": "more than 1001 answer lines",
    "endless-members": "more than 10000 entries refused",
    "endless-header": "extended headers of more than 1048576 bytes",
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_agent_ends_the_session_with_bounded_memory(tmp_path, case):
    proc = subprocess.run(
        [sys.executable, "-c", ENGINE, case, HOSTILE[case], str(tmp_path / "studio")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["type"] == "SyncError", result
    assert result["error"].startswith("studio hostile-studio: sync agent in local folder")
    assert LIMITS[case] in result["error"]
    assert result["grew_kb"] < 200_000, result
