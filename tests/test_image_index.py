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
    # overlay, which the tools pick by themselves: the engine passes no --storage-driver.
    monkeypatch.setattr(containers, "_storage_decision", lambda: {"driver": "overlay", "default": "overlay"})
    for name in ("STORAGE_DRIVER", "STORAGE_OPTS"):
        monkeypatch.delenv(name, raising=False)
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


def _stale_overlay_list(storage, tmp_path):
    """overlay-images/images.json names an image buildah does not have with the driver it really uses."""
    write, asked, _ = storage
    write([{"id": "a" * 64, "names": ["localhost/codestudio/t:abc"]}])
    return asked


@pytest.mark.parametrize("name, value", [("STORAGE_DRIVER", "vfs"), ("STORAGE_OPTS", "overlay.imagestore=/elsewhere")])
def test_a_driver_or_its_options_forced_by_the_environment_is_buildahs_call(storage, tmp_path, monkeypatch, name, value):
    """buildah honours $STORAGE_DRIVER (over storage.conf) and $STORAGE_OPTS; the image list may not be its list."""
    asked = _stale_overlay_list(storage, tmp_path)
    (tmp_path / "graph" / "vfs-images").mkdir()
    (tmp_path / "graph" / "vfs-images" / "images.json").write_text("[]")
    monkeypatch.setenv(name, value)
    assert containers.image_id("localhost/codestudio/t:abc") is None
    assert asked == ["localhost/codestudio/t:abc"]
    monkeypatch.delenv(name)
    assert containers.image_id("localhost/codestudio/t:abc") == "a" * 64
    assert asked == ["localhost/codestudio/t:abc"]


def test_the_same_driver_in_the_environment_keeps_the_index(storage, tmp_path, monkeypatch):
    asked = _stale_overlay_list(storage, tmp_path)
    monkeypatch.setenv("STORAGE_DRIVER", "overlay")
    assert containers.image_id("localhost/codestudio/t:abc") == "a" * 64
    assert asked == []


def test_the_driver_the_engine_passes_to_buildah_picks_the_list(storage, tmp_path, monkeypatch):
    """``--storage-driver vfs`` wins over $STORAGE_DRIVER=overlay: vfs-images is read, the stale overlay list is not."""
    asked = _stale_overlay_list(storage, tmp_path)
    monkeypatch.setattr(containers, "_storage_decision", lambda: {"driver": "vfs", "default": "overlay"})
    monkeypatch.setenv("STORAGE_DRIVER", "overlay")
    assert containers._storage_flags() == ["--storage-driver", "vfs"]
    (tmp_path / "graph" / "vfs-images").mkdir()
    (tmp_path / "graph" / "vfs-images" / "images.json").write_text(
        json.dumps([{"id": "f" * 64, "names": ["localhost/codestudio/t:abc"]}]))
    assert containers.image_id("localhost/codestudio/t:abc") == "f" * 64
    (tmp_path / "graph" / "vfs-images" / "images.json").write_text("[]")
    assert containers.image_id("localhost/codestudio/t:abc") is None
    assert asked == ["localhost/codestudio/t:abc"]


@pytest.mark.parametrize("name, value", [("STORAGE_DRIVER", "vfs"), ("STORAGE_OPTS", "vfs.ignore_chown_errors=true")])
def test_the_graph_root_is_asked_again_when_the_storage_environment_changes(monkeypatch, codestudio_home, name, value):
    monkeypatch.delenv("STORAGE_DRIVER", raising=False)
    monkeypatch.delenv("STORAGE_OPTS", raising=False)
    monkeypatch.setattr(containers, "_storage_decision", lambda: {"driver": "overlay", "default": "overlay"})
    calls = []
    monkeypatch.setattr(containers, "_store_info", lambda: calls.append(1) or {"GraphRoot": f"/graph{len(calls)}"})
    assert str(containers._graph_root()) == "/graph1"
    monkeypatch.setenv(name, value)
    assert str(containers._graph_root()) == "/graph2"
    assert str(containers._graph_root()) == "/graph2"
    assert len(calls) == 2


def test_the_graph_root_is_asked_again_when_the_engines_storage_flags_change(monkeypatch, codestudio_home):
    monkeypatch.delenv("STORAGE_DRIVER", raising=False)
    monkeypatch.delenv("STORAGE_OPTS", raising=False)
    decision = {"driver": "overlay", "default": "overlay"}
    monkeypatch.setattr(containers, "_storage_decision", lambda: decision)
    calls = []
    monkeypatch.setattr(containers, "_store_info", lambda: calls.append(1) or {"GraphRoot": f"/graph{len(calls)}"})
    assert str(containers._graph_root()) == "/graph1"
    decision["driver"] = "vfs"  # now passed as --storage-driver vfs
    assert str(containers._graph_root()) == "/graph2"
    assert len(calls) == 2
