"""Following a running build: buildah's ``STEP n/m`` lines -> block labels, display, failure report.

:class:`StepTracker` is pure (fed lines, unit-tested); :class:`Reporter`
shows it: a rich progress line on a terminal, one plain line per step
otherwise (logs, CI), nothing when quiet.
"""

from __future__ import annotations

import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

#: ``STEP n/m: ...``, with ``[stage/stages] `` in front when the Dockerfile has several stages.
STEP_RE = re.compile(r"^(?:\[(\d+)/(\d+)\] )?STEP (\d+)/(\d+): (.*)$")
CACHE_RE = re.compile(r"^--> Using cache ([0-9a-f]{12,64})")
#: buildah's last word on a failed build: the failing instruction (exec form words joined, up to a newline).
FAILED_RE = re.compile(r'^(?:Error: |error )building at STEP "(.*)$')


class StepLike(Protocol):
    number: int
    stage: int
    stage_number: int
    block_index: int | None
    block_type: str | None
    label: str


@dataclass
class StepTracker:
    """Follows buildah output: the current step, cache hits and the output tail."""

    steps: dict[int, StepLike] = field(default_factory=dict)
    tail_size: int = 20
    number: int = 0
    total: int = 0
    instruction: str = ""
    cached: set[int] = field(default_factory=set)
    tail: deque = field(default_factory=lambda: deque(maxlen=20))
    #: Wall time of each finished step (step number -> seconds).
    seconds: dict[int, float] = field(default_factory=dict)
    _started: float = 0.0
    _stage_index: dict | None = None

    def __post_init__(self) -> None:
        self.tail = deque(maxlen=self.tail_size)

    def feed(self, line: str) -> bool:
        """Take one output line; True when it starts a new step."""
        m = STEP_RE.match(line)
        if m:
            self.finish()
            self._started = time.monotonic()
            stage, local, local_total, self.instruction = int(m.group(1) or 1), int(m.group(3)), int(m.group(4)), m.group(5)
            # Step numbers run over every stage (the rendered steps say which stage a step is in).
            self.number = self._by_stage().get((stage, local), local)
            self.total = len(self.steps) if m.group(1) and self.steps else local_total
            # The tail reports what the failing step printed, not earlier steps.
            self.tail.clear()
            return True
        if CACHE_RE.match(line) and self.number:
            self.cached.add(self.number)
        failed = FAILED_RE.match(line)
        if failed:
            # Stages build in parallel: the last STEP line seen may be another stage's.
            self._blame(failed.group(1))
            return False
        self.tail.append(line)
        return False

    def _blame(self, text: str) -> None:
        """Make the step buildah names as failed the current one, when exactly one step matches."""
        wanted = " ".join(text.split())
        matches = [number for number, info in self.steps.items()
                   if wanted and _as_buildah_says(getattr(info, "instruction", "")).startswith(wanted)]
        if len(matches) == 1 and matches[0] != self.number:
            self.number = matches[0]
            self.instruction = getattr(self.steps[matches[0]], "instruction", self.instruction)

    def _by_stage(self) -> dict[tuple[int, int], int]:
        if self._stage_index is None:
            self._stage_index = {
                (getattr(info, "stage", 1), getattr(info, "stage_number", 0) or number): number
                for number, info in self.steps.items()
            }
        return self._stage_index

    def finish(self) -> None:
        """Close the timing of the current step (called at each new step and at the end)."""
        if self.number and self.number not in self.seconds:
            self.seconds[self.number] = time.monotonic() - self._started

    @property
    def step(self) -> StepLike | None:
        return self.steps.get(self.number)

    def where(self) -> str:
        """The current step's block, as error messages name it."""
        info = self.step
        if info is None:
            return "the engine's own steps"
        if info.block_index is None:
            return f"engine step {info.label!r}"
        return f"blocks[{info.block_index}] (type: {info.block_type}) {info.label!r}"

    def label(self) -> str:
        info = self.step
        return info.label if info is not None else "codestudio"


class Reporter:
    """Shows build progress on stderr."""

    def __init__(self, title: str, *, quiet: bool = False):
        self.title = title
        self.quiet = quiet
        self._progress = None
        self._task = None
        self._console = None
        if quiet:
            return
        from rich.console import Console

        self._console = Console(stderr=True, highlight=False, soft_wrap=True)
        if self._console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(bar_width=20),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self._console,
                transient=True,
            )

    def __enter__(self) -> Reporter:
        if self._progress is not None:
            self._progress.start()
            self._task = self._progress.add_task(self.title, total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def note(self, text: str) -> None:
        """A line that stays (above the progress line on a terminal)."""
        if self._console is not None:
            from codestudio.text import printable

            self._console.print(printable(text), markup=False)

    def status(self, text: str) -> None:
        """A passing state: replaces the progress line; elsewhere printed only when its phase changes."""
        if self.quiet:
            return
        if self._progress is not None:
            from rich.markup import escape

            from codestudio.text import printable

            self._progress.update(self._task, description=escape(printable(f"{self.title}: {_short(text)}")))
            return
        words = text.split()
        # "debootstrap: Retrieving ..." -> phase "Retrieving"
        phase = words[1] if len(words) > 1 and words[0].endswith(":") else (words[0] if words else "")
        if phase != getattr(self, "_phase", None):
            self._phase = phase
            self.note(text)

    def step(self, tracker: StepTracker) -> None:
        if self.quiet:
            return
        text = f"step {tracker.number}/{tracker.total} [{tracker.label()}] {_short(tracker.instruction)}"
        if self._progress is not None:
            from rich.markup import escape

            # Labels and instructions are user text: "[...]" must not be read as markup.
            from codestudio.text import printable

            self._progress.update(self._task, description=escape(printable(f"{self.title}: {text}")), completed=tracker.number - 1, total=tracker.total)
        else:
            self.note(text)

    def output(self, line: str) -> None:
        """A line of step output: only the spinner moves; the full text is in the log."""


def _as_buildah_says(instruction: str) -> str:
    """An instruction as buildah's error names it: an exec-form array becomes its words."""
    import json

    start = instruction.find(' ["')
    if start != -1:
        try:
            words = json.loads(instruction[start + 1:])
        except ValueError:
            words = None
        if isinstance(words, list) and all(isinstance(w, str) for w in words):
            instruction = instruction[:start] + " " + " ".join(words)
    return " ".join(instruction.split())


def _short(instruction: str, width: int = 70) -> str:
    instruction = " ".join(instruction.split())
    return instruction if len(instruction) <= width else instruction[: width - 1] + "…"
