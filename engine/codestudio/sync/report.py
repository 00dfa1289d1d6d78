"""What a sync reports: per mapping what moved, what conflicted, what was skipped or refused; its errors."""

from __future__ import annotations

from dataclasses import dataclass, field

from codestudio.errors import RuntimeFailure


@dataclass(frozen=True)
class Conflict:
    """A path changed on both sides since the last sync.

    ``path`` and ``copy`` are relative to the zone; ``copy`` is where the
    studio's version was kept on the server (None when one side deleted the
    file: then the modified version won and nothing needed keeping).
    """

    zone: str
    path: str
    server_change: str  # added | modified | deleted
    studio_change: str
    copy: str | None
    commit_at_last_sync: str | None
    commit_at_detection: str | None
    commit_now: str | None
    detected_at: float
    mapping: str

    def describe(self) -> str:
        text = f"{self.zone}/{self.path} (server {self.server_change}, studio {self.studio_change})"
        if self.copy:
            text += f": studio's version kept as {self.zone}/{self.copy}"
        return text


@dataclass
class MappingReport:
    zone: str
    subfolder: str | None
    target: str
    pushed: list[str] = field(default_factory=list)
    pulled: list[str] = field(default_factory=list)
    deleted_in_studio: list[str] = field(default_factory=list)
    deleted_on_server: list[str] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    #: (side, path, reason): symlinks pointing outside, special files, vanished files
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    #: (side, path, reason): archive entries or writes refused for safety
    refused: list[tuple[str, str, str]] = field(default_factory=list)
    commit_before: str | None = None
    commit_after: str | None = None


@dataclass
class SyncReport:
    studio_id: str
    direction: str
    mappings: list[MappingReport] = field(default_factory=list)

    @property
    def conflicts(self) -> list[Conflict]:
        return [c for m in self.mappings for c in m.conflicts]

    @property
    def refused(self) -> list[tuple[str, str, str]]:
        return [r for m in self.mappings for r in m.refused]

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


class SyncError(RuntimeFailure):
    """A sync finished with refused entries or failed talking to the studio; ``report`` says what moved."""

    def __init__(self, message: str, report: SyncReport | None = None):
        self.report = report
        super().__init__(message)


class SyncConflictError(SyncError):
    """A sync found conflicts (both versions kept); raised after everything else was synced."""
