"""run_bud returns once buildah has tagged the image and leaves its clean-up running (a scripted buildah).

The real buildah's side (no step containers left, a second build meanwhile,
surviving the build command's exit) is tests/e2e/test_build_background.py.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codestudio import containers
from codestudio.images import bud, budrun
from codestudio.images.progress import Reporter

TAGS = ("localhost/codestudio/t:abc", "localhost/codestudio/t:latest")
IMAGE_ID = "f" * 64

HEAD = """#!/bin/sh
echo $$ > "{dir}/pid"
echo "STEP 1/2: RUN make"
echo "output of make"
"""
# "cleaning" exists from before the tag lines until the clean-up ends: run_bud may return
# as soon as it reads them, before the script's next command.
TAGGED = """touch "{dir}/cleaning"
echo "COMMIT {tag}"
echo "Successfully tagged {tag}"
echo "Successfully tagged {latest}"
"""
# What buildah does after tagging: remove its containers (here: wait to be released), then
# write the id file (--iidfile is the argument after it) and exit.
CLEANUP = """i=0
while [ ! -e "{dir}/release" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
rm "{dir}/cleaning"
while [ "$1" != "--iidfile" ]; do shift; done
printf 'sha256:{iid}' > "$2"
exit {status}
"""


@pytest.fixture
def fake_buildah(tmp_path, monkeypatch):
    """``fake_buildah(script)`` makes run_bud run ``script`` (sh, formatted with dir/tag/latest/iid) as buildah."""
    ids: dict[str, str] = {}
    monkeypatch.setattr(containers, "indexed_image_id", lambda ref: ids.get(ref))

    def install(script: str, *, indexed: bool = True) -> Path:
        if indexed:
            ids.update({tag: IMAGE_ID for tag in TAGS})
        shim = tmp_path / "buildah"
        shim.write_text(script.format(dir=tmp_path, tag=TAGS[0], latest=TAGS[1], iid=IMAGE_ID, status="{status}"))
        shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
        monkeypatch.setattr(containers, "buildah_command", lambda *args: [str(shim), *args])
        return tmp_path

    yield install
    (tmp_path / "release").touch()
    bud.wait_for_cleanups(timeout=60)


def run(tmp_path: Path, **kwargs) -> bud.Bud:
    render, work = tmp_path / "render", tmp_path / "work"
    (render / "context").mkdir(parents=True, exist_ok=True)
    work.mkdir(exist_ok=True)
    return bud.run_bud("template 't'", render, work, "base", [], reporter=Reporter("t", quiet=True), tags=TAGS, **kwargs)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_the_build_returns_once_tagged_and_the_clean_up_finishes_alone(fake_buildah):
    folder = fake_buildah(HEAD + TAGGED + CLEANUP.replace("{status}", "0"))
    result = run(folder)
    assert (result.image_id, result.cleaning_up) == (IMAGE_ID, True)
    assert (folder / "cleaning").exists(), "run_bud waited for buildah's clean-up"
    timeline = lines(folder / "work" / bud.TIMELINE)
    assert timeline[-1].endswith("# tagged; buildah cleans up in the background")
    assert [line.split(None, 1)[1] for line in timeline[:-1]][-2:] == [f"Successfully tagged {t}" for t in TAGS]

    (folder / "release").touch()
    assert bud.wait_for_cleanups(timeout=60)
    timeline = lines(folder / "work" / bud.TIMELINE)
    assert timeline[-1].split(None, 1)[1] == "# exit status 0"
    assert float(timeline[-1].split()[0]) >= float(timeline[-2].split()[0])
    log = lines(folder / "work" / "build.log")
    assert log[0].startswith("# codestudio build of template 't'") and log[-1] == "# exit status 0"
    assert "output of make" in log
    # Reaped: no zombie child left behind.
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and _zombie_child(p)]
    assert not (folder / "work" / "index-settings").exists()


def _zombie_child(proc: Path) -> bool:
    try:
        fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] == "Z" and int(fields[1]) == os.getpid()


def test_a_failing_step_is_reported_after_buildah_exits(fake_buildah):
    folder = fake_buildah(HEAD + 'echo "E: no such package"\necho \'Error: building at STEP "RUN make": exit status 100\'\nexit 1\n')
    with pytest.raises(bud.BuildFailed) as failure:
        run(folder)
    message = str(failure.value)
    assert "failed at step 1/2" in message and "E: no such package" in message
    assert lines(folder / "work" / "build.log")[-1] == "# exit status 1"
    assert lines(folder / "work" / bud.TIMELINE)[-1].split(None, 1)[1] == "# exit status 1"
    assert not any("tagged;" in line for line in lines(folder / "work" / bud.TIMELINE))


def test_a_clean_up_error_after_tagging_still_gives_the_image(fake_buildah, monkeypatch):
    # Not in the image list (read it from buildah then); buildah's clean-up failed: no id file.
    folder = fake_buildah(HEAD + TAGGED + 'echo "error deleting build container"\nexit 1\n', indexed=False)
    monkeypatch.setattr(containers, "image_id", {TAGS[0]: IMAGE_ID}.get)
    result = run(folder)
    assert (result.image_id, result.cleaning_up) == (IMAGE_ID, False)


def test_without_the_tag_lines_the_id_file_and_tags_are_used_as_before(fake_buildah, monkeypatch):
    tagged = []
    monkeypatch.setattr(containers, "tag_image", lambda image, *refs: tagged.append((image, refs)))
    folder = fake_buildah(HEAD + 'while [ "$1" != "--iidfile" ]; do shift; done\nprintf \'sha256:{iid}\' > "$2"\n')
    result = run(folder)
    assert (result.image_id, result.cleaning_up) == (IMAGE_ID, False)
    assert tagged == [(IMAGE_ID, TAGS)]


def test_an_interrupted_build_stops_buildah(fake_buildah):
    folder = fake_buildah(HEAD + "while true; do sleep 0.1; done\n")

    class Interrupting(Reporter):
        def step(self, tracker):
            raise KeyboardInterrupt

    render, work = folder / "render", folder / "work"
    (render / "context").mkdir(parents=True)
    work.mkdir()
    with pytest.raises(KeyboardInterrupt):
        bud.run_bud("template 't'", render, work, "base", [], reporter=Interrupting("t", quiet=True), tags=TAGS)
    pid = int((folder / "pid").read_text())
    deadline = time.monotonic() + 30
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid)


def test_the_runner_stops_buildah_when_its_reader_dies_before_the_tags(tmp_path):
    """The build command was killed mid-build: buildah stops, as it did when it wrote to a closed pipe."""
    shim = tmp_path / "buildah"
    shim.write_text('#!/bin/sh\necho "STEP 1/1: RUN x"\nwhile true; do echo working; sleep 0.1; done\n')
    shim.chmod(0o755)
    spec = {"argv": [str(shim)], "cwd": str(tmp_path), "log": str(tmp_path / "log"), "timeline": str(tmp_path / "tl"),
            "lock": str(tmp_path / "lock"), "began": time.monotonic(), "tags": list(TAGS)}
    proc = subprocess.Popen([sys.executable, "-I", "-S", budrun.__file__, json.dumps(spec)], stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"|STEP 1/1: RUN x\n"
    proc.stdout.close()
    assert proc.wait(timeout=60) == 128 + 15
    assert lines(tmp_path / "log")[-1] == "# exit status -15"


@pytest.mark.parametrize(
    ("output", "done"),
    [
        ([f"COMMIT {TAGS[0]}", f"Successfully tagged {TAGS[0]}", f"Successfully tagged {TAGS[1]}"], True),
        # Multi-stage: the final stage's lines carry [n/m]; the image may have had other names.
        ([f"[3/3] COMMIT {TAGS[0]}", f"Successfully tagged {TAGS[1]}", "Successfully tagged localhost/x:old",
          f"Successfully tagged {TAGS[0]}"], True),
        # A step printing the words before the final commit does not count.
        ([f"Successfully tagged {TAGS[0]}", f"Successfully tagged {TAGS[1]}", "[1/3] COMMIT", f"COMMIT {TAGS[0]}"], False),
        ([f"COMMIT {TAGS[0]}", f"Successfully tagged {TAGS[0]}"], False),
        ([f"COMMIT {TAGS[1]}", f"Successfully tagged {TAGS[0]}", f"Successfully tagged {TAGS[1]}"], False),
    ],
)
def test_tag_watch(output, done):
    watch = budrun.TagWatch(list(TAGS))
    fed = [watch.feed(line) for line in output]
    assert watch.done is done
    assert fed.count(True) == (1 if done else 0)
