"""Registry and image names for ``buildah push``, and credentials kept out of messages (no buildah needed)."""

from __future__ import annotations

import base64

import pytest

from codestudio.errors import UsageError
from codestudio.images.push import check_registry_name, is_loopback, remote_reference, scrub, secret_strings


@pytest.mark.parametrize("name", ["registry.example.com", "127.0.0.1:5000", "reg:5000/team/ml", "localhost:5000/",
                                  "[::1]:5000"])
def test_registry_names_accepted(name):
    assert check_registry_name(name) == name.rstrip("/")


@pytest.mark.parametrize("name", ["", "https://reg.example.com", "reg:99999", "reg/Team", "reg/a..b", "reg name",
                                  "reg:5000/team;rm -rf /", "-reg.example.com", "reg/team:latest"])
def test_registry_names_refused_with_the_field(name):
    with pytest.raises(UsageError, match="^registry: "):
        check_registry_name(name)


def test_remote_reference_keeps_repository_and_tag():
    assert remote_reference("localhost/codestudio/my-template:0123abcd", "reg:5000/team") == (
        "reg:5000/team/codestudio/my-template", "0123abcd")


@pytest.mark.parametrize("image", ["localhost/codestudio/x", "localhost/Codestudio/x:1", "localhost/x:a/b"])
def test_unpushable_images_refused(image):
    with pytest.raises(UsageError):
        remote_reference(image, "reg")


def test_every_form_of_a_credential_is_scrubbed():
    encoded = base64.b64encode(b"robot:hunter2-long").decode()
    doc = {"auths": {"reg": {"auth": encoded}, "other": {"username": "u", "password": "pw-second", "identitytoken": "tok-3"}}}
    text = f"denied: {encoded} / robot:hunter2-long / hunter2-long / pw-second / tok-3 / robot"
    clean = scrub(text, secret_strings(doc))
    for secret in (encoded, "hunter2-long", "pw-second", "tok-3"):
        assert secret not in clean
    assert clean.startswith("denied: ***") and clean.endswith("/ robot")


def test_loopback_registries_are_known():
    assert is_loopback("127.0.0.1:5000") and is_loopback("localhost:5000/x") and is_loopback("[::1]:5000")
    assert not is_loopback("registry.example.com") and not is_loopback("10.0.0.1:5000")
