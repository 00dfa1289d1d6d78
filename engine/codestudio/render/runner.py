"""``runner.json``: the runner's plan of a studio (entrypoints, actions, probe, ports), checked by the runner's own rules."""

from __future__ import annotations

import json
import re

from codestudio.blockapi import BuildState
from codestudio.errors import TemplateError


def runner_document(template, state: BuildState) -> dict:
    from codestudio.runner.runner import SCHEMA

    probe = state.effective_probe()
    return {
        "schema": SCHEMA,
        "template": template.id,
        "env": dict(sorted(state.env.items())),
        "entrypoints": [ep.model_dump(mode="json") for _, ep in state.entrypoints],
        "actions": [a.model_dump(mode="json") for _, a in state.actions],
        "probe": probe.model_dump(mode="json") if probe else None,
        "ports": state.all_ports,
        "exposed_ports": state.exposed_ports,
    }


def runner_json(template, state: BuildState) -> str:
    """runner.json, checked with the runner's own :func:`~codestudio.runner.runner.validate_config`.

    The image's runner reads the same file with the same function, so render
    and runner cannot disagree: what the runner would refuse at start-up is
    a template error here, naming the block it came from.
    """
    from codestudio.runner.runner import validate_config

    doc = runner_document(template, state)
    problems = validate_config(doc)
    if problems:
        raise TemplateError(str(template.path), [_runner_problem(p, state) for p in problems])
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _runner_problem(problem: str, state: BuildState) -> str:
    """Name the block an entrypoint or action of runner.json came from."""
    match = re.match(r"(entrypoints|actions)\[(\d+)\]", problem)
    if match:
        items = state.entrypoints if match.group(1) == "entrypoints" else state.actions
        index = int(match.group(2))
        if index < len(items):
            return f"{items[index][0].where}: runner.json {problem}"
    return f"runner.json {problem}"
