"""Image builds with buildah: the base image, template images, build history.

Public interface (used by the CLI and the runtimes):

- :func:`build_base` -- ``codestudio base build``
- :func:`build_template_file` / :func:`build_rendered` -- ``codestudio template build``
  (which resolves a stored id first: :func:`codestudio.templates_store.build_template`)
- :func:`list_builds`, :func:`latest_build`, :func:`image_for` -- build history;
  a studio runs ``image_for(template_id).image`` and records it, so that
  ``studio status`` can compare it with ``latest_build(template_id)["image"]``.

Every buildah call goes through :mod:`codestudio.containers`.
"""

from __future__ import annotations

from codestudio.images.base import build_base
from codestudio.images.builder import BuildFailed, BuildResult, build_rendered, build_template_file, image_name, latest_name
from codestudio.images.history import BuiltImage, image_for, latest_build, list_builds

__all__ = [
    "BuildFailed",
    "BuildResult",
    "BuiltImage",
    "build_base",
    "build_rendered",
    "build_template_file",
    "image_for",
    "image_name",
    "latest_build",
    "latest_name",
    "list_builds",
]
