"""Messages of the validated field types: they say the rule once and leave the value to the caller."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from codestudio.errors import TemplateError
from codestudio.types import ContainerPath, EnvName, ImageRef, Label, ProjectKey, RelativePath, Slug


@pytest.mark.parametrize(
    ("kind", "value", "rule"),
    [
        (Slug, "-Bad_Slug", "starting with a letter or digit"),
        (ProjectKey, "_key", "starting with a letter or digit"),
        (EnvName, "9VAR", "not a valid environment variable name"),
        (ContainerPath, "relative/path-x", "absolute path"),
        (RelativePath, "../escape-x", "inside its folder"),
        (ImageRef, "img with space", "not a valid image reference"),
        (Label, "two\nlines-x", "control character"),
    ],
)
def test_messages_state_the_rule_without_the_value(kind, value, rule):
    with pytest.raises(ValidationError) as info:
        TypeAdapter(kind).validate_python(value)
    [err] = info.value.errors()
    assert rule in err["msg"]
    assert repr(value) not in err["msg"]  # the caller adds "(got ...)"; once is enough


def test_template_problem_shows_the_value_once(write_template, blocks):
    from codestudio.plan import plan_template

    path = write_template("id: Not-A-Slug\nblocks: []\n")
    with pytest.raises(TemplateError) as info:
        plan_template(path, blocks)
    [problem] = [p for p in info.value.problems if "field 'id'" in p]
    assert problem.count("Not-A-Slug") == 1
    assert "not a slug" in problem and "(got 'Not-A-Slug')" in problem
