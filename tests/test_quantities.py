"""Kubernetes quantities and durations: what parses, to what, and what is refused."""

from __future__ import annotations

import pytest

from codestudio.quantities import (
    cpu_millicores,
    cpu_text,
    duration_seconds,
    format_bytes,
    format_duration,
    memory_bytes,
)


@pytest.mark.parametrize(("text", "millis"), [("500m", 500), ("2", 2000), (2, 2000), (0.5, 500), ("0.25", 250), ("1m", 1)])
def test_cpu(text, millis):
    assert cpu_millicores(text) == millis


@pytest.mark.parametrize("text", ["0", "0m", "-1", "1Gi", "abc", "", "1.5m", True, None, [1]])
def test_bad_cpu(text):
    with pytest.raises(ValueError):
        cpu_millicores(text)


def test_cpu_text_is_canonical():
    assert (cpu_text(0.5), cpu_text("2"), cpu_text(3), cpu_text("1500m")) == ("500m", "2", "3", "1500m")


@pytest.mark.parametrize(("text", "n"), [("64Mi", 64 * 2**20), ("4Gi", 4 * 2**30), ("1G", 10**9), ("1048576", 2**20),
                                         ("1.5Gi", 3 * 2**29), ("2000k", 2 * 10**6)])
def test_memory(text, n):
    assert memory_bytes(text) == n


@pytest.mark.parametrize("text", ["0", "100", "512m", "64MB", "64 Mi", "-1Gi", "1.1", "Mi", True])
def test_bad_memory(text):
    with pytest.raises(ValueError):
        memory_bytes(text)


def test_format_bytes():
    assert (format_bytes(64 * 2**20), format_bytes(2**30), format_bytes(1536 * 2**20)) == ("64Mi", "1Gi", "1536Mi")


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("90m", 5400), ("8h", 28800), ("1d", 86400), ("1h30m", 5400),
                                               (" 2h ", 7200)])
def test_duration(text, seconds):
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["30", 30, "", "0s", "1w", "h", "5 m", "-5m", "1m1h", None, "400d"])
def test_bad_duration(text):
    with pytest.raises(ValueError):
        duration_seconds(text)


def test_format_duration():
    assert format_duration(7200) == "2 h"
    assert format_duration(5400) == "1 h 30 min"
    assert format_duration(45) == "45 s"
    assert format_duration(90) == "1 min 30 s"
