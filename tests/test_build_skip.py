"""The up-to-date path of a template build: no buildah build, and no queueing on the template's lock."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from codestudio.images import builder


def test_an_up_to_date_image_is_found_without_waiting_for_the_template_lock(codestudio_home, monkeypatch):
    """Every studio start asks for its image: ten starts of one template must not queue on the lock
    that serialises real builds. Here another build holds it for the whole check."""
    ids = {"localhost/codestudio/t:abc": "img1", "localhost/codestudio/t:latest": "img1", "base": "base1"}
    monkeypatch.setattr(builder.containers, "require_tools", lambda *names: None)
    monkeypatch.setattr(builder.containers, "image_id", lambda ref: ids.get(ref))
    monkeypatch.setattr(builder, "content_manifest", lambda rendered, base_id: {"base": base_id})
    monkeypatch.setattr(builder, "content_hash", lambda manifest: "abc")
    rendered = SimpleNamespace(template=SimpleNamespace(id="t"), state=SimpleNamespace(base_image="base"), plugins={})
    results = []
    with builder.template_lock("t"):  # a build of t in progress elsewhere
        worker = threading.Thread(target=lambda: results.append(builder.build_rendered(rendered, quiet=True)))
        worker.start()
        worker.join(timeout=60)
        assert not worker.is_alive(), "the up-to-date check waited for the template's lock"
    [result] = results
    assert (result.outcome, result.image, result.image_id) == ("skipped", "localhost/codestudio/t:abc", "img1")


def test_a_missing_latest_tag_is_still_set_under_the_lock(codestudio_home, monkeypatch):
    ids = {"localhost/codestudio/t:abc": "img1", "base": "base1"}
    tagged = []
    monkeypatch.setattr(builder.containers, "require_tools", lambda *names: None)
    monkeypatch.setattr(builder.containers, "image_id", lambda ref: ids.get(ref))
    monkeypatch.setattr(builder.containers, "tag_image", lambda image, *refs: tagged.append((image, refs)))
    monkeypatch.setattr(builder, "content_manifest", lambda rendered, base_id: {"base": base_id})
    monkeypatch.setattr(builder, "content_hash", lambda manifest: "abc")
    rendered = SimpleNamespace(template=SimpleNamespace(id="t"), state=SimpleNamespace(base_image="base"), plugins={})
    assert builder.build_rendered(rendered, quiet=True).outcome == "skipped"
    assert tagged == [("img1", ("localhost/codestudio/t:latest",))]
