"""Error types and the exit statuses they map to.

Bad input (a template, a flag, a name) is a :class:`UsageError` and exits 2;
a failure while doing valid work (a build step, a container, a probe) is a
:class:`RuntimeFailure` and exits 1.
"""

from __future__ import annotations


class CodestudioError(Exception):
    """Base class; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class UsageError(CodestudioError):
    """Bad input from the user: exit status 2."""

    exit_code = 2


class TemplateError(UsageError):
    """A template file is invalid.

    ``problems`` lists one human-readable line per problem, each naming the
    file, the block (index and type), the field and the offending value.
    ``details`` says the same for programs (the web editor puts each problem
    at its form field): one dict per problem with ``block`` (index or None for
    the header), ``type``, ``field`` (a dotted path inside the block or the
    header, or None), ``line`` and ``message`` (the line of ``problems``).
    """

    def __init__(self, path: str, problems: list[str], details: list[dict] | None = None):
        self.path = path
        self.problems = problems
        self.details = details if details is not None else [
            {"block": None, "type": None, "field": None, "line": None, "message": p} for p in problems
        ]
        super().__init__(f"{path}: invalid template\n" + "\n".join(f"  {p}" for p in problems))


class PluginError(CodestudioError):
    """A block distribution could not be loaded or conflicts with another."""


class PermissionDenied(UsageError):
    """The acting user may not do this."""


class NotFound(UsageError):
    """A named template, studio, zone or action does not exist."""


class RuntimeFailure(CodestudioError):
    """Valid work failed while running: exit status 1."""
