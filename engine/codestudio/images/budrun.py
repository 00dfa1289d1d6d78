"""The process that runs one ``buildah bud`` for :func:`codestudio.images.bud.run_bud` and outlives it.

buildah tags the image, then removes the containers of its steps (seconds
for a step that wrote tens of thousands of files) and only then exits. The
build need not wait for that, but buildah must be able to finish: if its
output were a pipe to the build command, the command's exit would make its
last writes fail and kill it halfway through the removal. So ``run_bud``
starts this script in a session of its own (a Ctrl-C at the shell after
the build command returned does not reach it), and the script:

- holds a shared lock on the download caches' lock file while buildah runs
  (buildah's temporary folder is in the caches' folder: ``codestudio cache
  clear`` waits for it, as for any running build);
- copies each line buildah prints to ``build.log``, to ``timeline.txt``
  (seconds since ``run_bud`` started it: both read the system's monotonic
  clock) and to its own stdout, which ``run_bud`` reads, as ``|<line>``;
- prints :data:`TAGGED` once buildah has committed the image and tagged it
  with every name asked for (:class:`TagWatch`); ``run_bud`` then stops
  reading and returns, and the script drops its stdout and goes on until
  buildah exits;
- writes ``# exit status N`` to both files at the end and exits with
  buildah's status.

If its reader goes away *before* the image is tagged (the build command was
killed), it stops buildah (SIGTERM, which buildah passes to the running
step), as buildah would have died on its next write to a closed pipe.

Standard library only: ``run_bud`` runs it as ``python -I -S budrun.py SPEC``
(SPEC is JSON: ``argv``, ``cwd``, ``log``, ``timeline``, ``lock``,
``began``, ``tags``).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time

#: Prefix of a line of buildah output on this script's stdout.
OUTPUT = "|"
#: The line that says buildah has committed and tagged the image.
TAGGED = "+tagged"
#: ``COMMIT <name>`` (``[n/m] `` in front in a multi-stage build): the final image's commit.
COMMIT_RE = re.compile(r"^(?:\[\d+/\d+\] )?COMMIT (\S+)$")
TAGGED_PREFIX = "Successfully tagged "


class TagWatch:
    """Fed buildah's lines; ``done`` once the final image is committed and carries every tag.

    buildah 1.28 commits the final image under the first ``-t`` name, adds
    the others, prints ``Successfully tagged NAME`` for each name the image
    has, then removes its containers. Step output printing the same words
    before the final ``COMMIT`` line does not count.
    """

    def __init__(self, tags: list[str]):
        self.tags = list(tags)
        self.committed = False
        self.seen: set[str] = set()

    def feed(self, line: str) -> bool:
        """Take one line; True when it completes the tagging."""
        if not self.tags or self.done:
            return False
        m = COMMIT_RE.match(line)
        if m and m.group(1) == self.tags[0]:
            self.committed = True
            self.seen.clear()
        elif self.committed and line.startswith(TAGGED_PREFIX):
            self.seen.add(line[len(TAGGED_PREFIX):].strip())
            return self.done
        return False

    @property
    def done(self) -> bool:
        return self.committed and set(self.tags) <= self.seen


def main(spec: dict) -> int:
    began = float(spec["began"])
    lock = os.open(spec["lock"], os.O_RDWR | os.O_CREAT, 0o600)
    # The caller holds it shared too, so this never waits (an exclusive holder waits for both).
    fcntl.flock(lock, fcntl.LOCK_SH)
    # Handlers, not SIG_IGN: buildah gets the default dispositions back at exec. A signal
    # to this session (the caller stopping the build) is for buildah; this script goes on
    # copying its output until it exits.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: None)
    proc = subprocess.Popen(spec["argv"], cwd=spec["cwd"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    watch = TagWatch(spec["tags"])
    reader = sys.stdout.buffer
    with open(spec["log"], "a", encoding="utf-8") as log, open(spec["timeline"], "a", encoding="utf-8") as timeline:
        logging = True

        def record(line: str) -> None:
            # A full disk stops the logs, never the copying of buildah's output or the wait
            # for buildah's exit (the caches' lock must last exactly as long as buildah).
            nonlocal logging
            if not logging:
                return
            try:
                log.write(line + "\n")
                log.flush()
                timeline.write(f"{time.monotonic() - began:8.2f} {line}\n")
                timeline.flush()
            except OSError:
                logging = False

        def tell(text: str) -> None:
            nonlocal reader
            if reader is None:
                return
            try:
                reader.write(text.encode("utf-8") + b"\n")
                reader.flush()
            except OSError:
                reader = None
                # Whatever is still buffered or printed later goes nowhere, quietly.
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                os.dup2(devnull, 2)
                if not watch.done:
                    # The build command is gone before the image was tagged.
                    proc.terminate()

        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            record(line)
            tagged = watch.feed(line)
            tell(OUTPUT + line)
            if tagged:
                tell(TAGGED)
        status = proc.wait()
        record(f"# exit status {status}")
    return status if status >= 0 else 128 - status


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
