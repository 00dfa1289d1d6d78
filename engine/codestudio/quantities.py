"""Kubernetes quantities (``500m``, ``2``, ``512Mi``, ``4Gi``) and durations (``30s``, ``90m``, ``8h``).

Pure functions at the bottom of the dependency graph: the ``kubernetes``
and ``lifecycle`` blocks validate their fields with them, the renderer
writes the canonical text into ``kubernetes.yaml``, the local runtime and
the quota checks compare the numbers. Each parser raises ``ValueError``
with a message fit to follow ``field 'memory': ``.
"""

from __future__ import annotations

import re

#: Binary (``Ki``...) and decimal (``k``...) suffixes Kubernetes accepts, as multipliers of one unit.
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_QUANTITY_RE = re.compile(r"^(?P<number>[0-9]+(?:\.[0-9]+)?)(?P<suffix>[A-Za-z]*)$")

CPU_EXAMPLES = "e.g. 500m, 0.5, 2"
MEMORY_EXAMPLES = "e.g. 512Mi, 4Gi, 1G"


def _text(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"must be a Kubernetes quantity, not {type(value).__name__}")
    return str(value).strip()


def cpu_millicores(value: object) -> int:
    """CPU as millicores: ``500m`` -> 500, ``2`` -> 2000, ``0.5`` -> 500. Must be at least ``1m``."""
    text = _text(value)
    m = _QUANTITY_RE.match(text)
    if not m or m.group("suffix") not in ("", "m"):
        raise ValueError(f"{text!r} is not a CPU quantity ({CPU_EXAMPLES})")
    number = float(m.group("number"))
    millis = number if m.group("suffix") == "m" else number * 1000
    if millis != int(millis):
        raise ValueError(f"{text!r} is finer than one millicore (1m)")
    if millis < 1:
        raise ValueError(f"{text!r} must be more than zero ({CPU_EXAMPLES})")
    if millis > 10**9:
        raise ValueError(f"{text!r} is more CPU than any machine has")
    return int(millis)


def memory_bytes(value: object) -> int:
    """Memory as bytes: ``512Mi`` -> 536870912, ``1G`` -> 10**9, ``1048576`` -> 1048576. At least 1 MiB."""
    text = _text(value)
    m = _QUANTITY_RE.match(text)
    suffix = m.group("suffix") if m else None
    if not m or (suffix and suffix not in _BINARY and suffix not in _DECIMAL):
        raise ValueError(f"{text!r} is not a memory quantity ({MEMORY_EXAMPLES}; "
                         f"suffixes {', '.join([*_BINARY, *_DECIMAL])})")
    number = float(m.group("number")) * (_BINARY.get(suffix) or _DECIMAL.get(suffix) or 1)
    if number != int(number):
        raise ValueError(f"{text!r} is not a whole number of bytes")
    if number < 2**20:
        raise ValueError(f"{text!r} is below 1Mi: no studio starts in that ({MEMORY_EXAMPLES})")
    if number > 2**62:
        raise ValueError(f"{text!r} is more memory than any machine has")
    return int(number)


def cpu_text(value: object) -> str:
    """The canonical text of a CPU quantity (validated): ``"0.5"`` -> ``"500m"``, ``2`` -> ``"2"``."""
    millis = cpu_millicores(value)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def memory_text(value: object) -> str:
    """The canonical text of a memory quantity (validated): the value as written, as a string."""
    memory_bytes(value)
    return _text(value)


def format_bytes(n: int) -> str:
    """``67108864`` -> ``64Mi`` (the largest binary unit that divides it, else MiB with a decimal)."""
    for suffix, mult in reversed(_BINARY.items()):
        if n >= mult and n % mult == 0:
            return f"{n // mult}{suffix}"
    return f"{n / 2**20:.1f}Mi"


# --------------------------------------------------------------------------
# Durations

_DURATION_RE = re.compile(r"^(?:(?P<d>[0-9]+)d)?(?:(?P<h>[0-9]+)h)?(?:(?P<m>[0-9]+)m)?(?:(?P<s>[0-9]+)s)?$")
DURATION_EXAMPLES = "e.g. 30s, 90m, 8h, 1d, 1h30m"


def duration_seconds(value: object) -> int:
    """``30s`` -> 30, ``90m`` -> 5400, ``1h30m`` -> 5400, ``8h`` -> 28800, ``1d`` -> 86400. At least 1s.

    A bare number is refused (seconds or minutes? say which).
    """
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"must be a duration with a unit ({DURATION_EXAMPLES}), not {value!r}")
    text = value.strip()
    m = _DURATION_RE.match(text)
    if not text or not m:
        raise ValueError(f"{text!r} is not a duration ({DURATION_EXAMPLES})")
    total = sum(int(m.group(k) or 0) * mult for k, mult in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)))
    if total <= 0:
        raise ValueError(f"{text!r} must be longer than zero ({DURATION_EXAMPLES})")
    if total > 366 * 86400:
        raise ValueError(f"{text!r} is longer than a year")
    return total


def format_duration(seconds: float) -> str:
    """A duration for people: ``7200`` -> ``2 h``, ``5400`` -> ``1 h 30 min``, ``45`` -> ``45 s``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{minutes} min" if minutes else ""]
    if not days and not hours and secs:
        parts.append(f"{secs} s")
    return " ".join(p for p in parts if p)
