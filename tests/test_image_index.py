"""Image ids by name from containers/storage's own image list, with buildah as the fallback."""

from __future__ import annotations

import json
import os

import pytest

from codestudio import containers


@pytest.fixture
def storage(tmp_path, monkeypatch, codestudio_home):
    """A fake graph root whose ``overlay-images/images.json`` the test writes; buildah answers from ``asked``."""
    root = tmp_path / "graph"
    (root / "overlay-images").mkdir(parents=True)
    monkeypatch.setattr(containers, "_graph_root", lambda: root)
    monkeypatch.setattr(containers, "storage_driver", lambda: "overlay")
    asked: list[str] = []
    buildah_knows: dict[str, str] = {}

    def inspect(ref):
        asked.append(ref)
        return {"FromImageID": buildah_knows[ref]} if ref in buildah_knows else None

    monkeypatch.setattr(containers, "image_inspect", inspect)

    def write(images: list[dict]) -> None:
        # As containers/storage does: a new file renamed over the old one.
        tmp = root / "overlay-images" / ".images.json.tmp"
        tmp.write_text(json.dumps(images))
        os.replace(tmp, root / "overlay-images" / "images.json")

    return write, asked, buildah_knows


def test_a_stored_name_is_answered_from_the_image_list(storage):
    write, asked, _ = storage
    write([{"id": "a" * 64, "names": ["localhost/codestudio/t:abc", "localhost/codestudio/t:latest"]},
           {"id": "b" * 64, "names-history": ["localhost/codestudio/old:1"]}])
    assert containers.image_id("localhost/codestudio/t:abc") == "a" * 64
    assert containers.image_id("localhost/codestudio/t") == "a" * 64  # no tag means :latest
    assert asked == []


def test_what_the_list_does_not_name_is_asked_of_buildah(storage):
    write, asked, buildah_knows = storage
    write([{"id": "b" * 64, "names-history": ["localhost/codestudio/old:1"]}])
    buildah_knows["debian:12"] = "c" * 64
    assert containers.image_id("localhost/codestudio/old:1") is None  # a former name is no name
    assert containers.image_id("debian:12") == "c" * 64  # short names follow the registries' rules
    assert containers.image_id("b" * 64) is None  # ids too
    assert asked == ["localhost/codestudio/old:1", "debian:12", "b" * 64]


def test_a_retag_or_removal_behind_the_engines_back_is_seen_at_once(storage):
    write, asked, _ = storage
    write([{"id": "a" * 64, "names": ["localhost/codestudio/t:abc"]}])
    assert containers.image_id("localhost/codestudio/t:abc") == "a" * 64
    write([{"id": "a" * 64, "names": []}, {"id": "d" * 64, "names": ["localhost/codestudio/t:abc"]}])
    assert containers.image_id("localhost/codestudio/t:abc") == "d" * 64
    write([{"id": "a" * 64, "names": []}])
    assert containers.image_id("localhost/codestudio/t:abc") is None
    assert asked == ["localhost/codestudio/t:abc"]  # removed: buildah has the last word


def test_an_unreadable_image_list_falls_back_to_buildah(storage, tmp_path):
    write, asked, buildah_knows = storage
    buildah_knows["localhost/codestudio/t:abc"] = "e" * 64
    assert containers.image_id("localhost/codestudio/t:abc") == "e" * 64  # no images.json yet
    (tmp_path / "graph" / "overlay-images" / "images.json").write_text("{not json")
    assert containers.image_id("localhost/codestudio/t:abc") == "e" * 64
    assert len(asked) == 2


def test_the_graph_root_is_asked_once_and_again_when_a_storage_conf_changes(monkeypatch, codestudio_home, tmp_path):
    conf = tmp_path / "storage.conf"
    conf.write_text('[storage]\ndriver = "overlay"\n')
    monkeypatch.setenv("CONTAINERS_STORAGE_CONF", str(conf))
    calls = []
    monkeypatch.setattr(containers, "_store_info", lambda: calls.append(1) or {"GraphRoot": f"/graph{len(calls)}"})
    assert str(containers._graph_root()) == "/graph1"
    assert str(containers._graph_root()) == "/graph1"
    conf.write_text('[storage]\ndriver = "overlay"\ngraphroot = "/elsewhere"\n')
    assert str(containers._graph_root()) == "/graph2"
    assert len(calls) == 2
