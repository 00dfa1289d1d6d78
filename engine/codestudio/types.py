"""Validated field types shared by the template model and every block.

Every string that can reach a Dockerfile, a shell, an nginx config or a path
goes through one of these types (or is escaped by the renderer that writes
it). Block authors use them in their ``Params`` models instead of bare
``str``/``int`` so that bad input is rejected with the field's name.
"""

from __future__ import annotations

import posixpath
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from codestudio import quantities

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
PROJECT_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Image references: registry/path:tag@digest, no whitespace or shell metacharacters.
IMAGE_RE = re.compile(r"^[a-z0-9][a-z0-9._/:@-]{0,254}$", re.IGNORECASE)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")

ZONES: tuple[str, ...] = (
    "code_studio-versioned",
    "code_studio-resources",
    "project-lib-versioned",
    "project-lib-resources",
    "recipes",
    "user-versioned",
    "user-resources",
)
WORKSPACE = "/home/codestudio/workspace"
STUDIO_USER = "codestudio"
STUDIO_UID = 1000
STUDIO_HOME = "/home/codestudio"
ENGINE_DIR = "/opt/codestudio"


def _slug(value: str) -> str:
    if not SLUG_RE.match(value):
        raise ValueError(
            "not a slug: use lowercase letters, digits and '-', "
            "starting with a letter or digit, at most 63 characters"
        )
    return value


def _project_key(value: str) -> str:
    if not PROJECT_KEY_RE.match(value):
        raise ValueError(
            "not a project key: letters, digits, '_' and '-', starting with a letter or digit, "
            "at most 63 characters"
        )
    return value


def _label(value: str) -> str:
    if _CONTROL_RE.search(value):
        raise ValueError("contains a newline or another control character")
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _text(value: str) -> str:
    """Free multi-line text: tabs and newlines allowed, other control characters not."""
    bad = [c for c in value if c not in "\t\n" and _CONTROL_RE.match(c)]
    if bad:
        raise ValueError(f"contains the control character {bad[0]!r}")
    return value


def _env_name(value: str) -> str:
    if not ENV_NAME_RE.match(value):
        raise ValueError("not a valid environment variable name: letters, digits and '_', not starting with a digit")
    return value


def _container_path(value: str) -> str:
    if _CONTROL_RE.search(value):
        raise ValueError("contains a control character")
    if not value.startswith("/"):
        raise ValueError("must be an absolute path inside the container")
    if any(c in value for c in "$\\\"'`"):
        raise ValueError("must not contain quotes, backslashes, '`' or '$'")
    parts = value.split("/")
    if ".." in parts:
        raise ValueError("must not contain '..'")
    return posixpath.normpath(value)


def _relative_path(value: str) -> str:
    """A path relative to some root (a zone, a target folder): no escape."""
    if _CONTROL_RE.search(value):
        raise ValueError("contains a control character")
    if value.startswith("/") or value.startswith("\\"):
        raise ValueError("must be a relative path")
    norm = posixpath.normpath(value)
    if norm == "." or norm.startswith("../") or norm == ".." or "/../" in f"/{value}/":
        raise ValueError("must stay inside its folder (no '..')")
    return norm


def _zone_subfolder(value: str) -> str:
    """A mapping's folder inside its zone: a relative path that never is, nor passes through, ``.git``."""
    norm = _relative_path(value)
    if any(is_git_name(part) for part in norm.split("/")):
        # A mapping folder inside a zone's repository would let a sync write the config and hooks its git runs.
        raise ValueError("must not be or pass through '.git' (or a name Git takes for it)")
    return norm


def _image(value: str) -> str:
    if not IMAGE_RE.match(value):
        raise ValueError("not a valid image reference (registry/path:tag, no spaces or shell characters)")
    return value


Slug = Annotated[str, AfterValidator(_slug)]
ProjectKey = Annotated[str, AfterValidator(_project_key)]
Label = Annotated[str, Field(max_length=200), AfterValidator(_label)]
Text = Annotated[str, AfterValidator(_text)]
EnvName = Annotated[str, AfterValidator(_env_name)]
ContainerPath = Annotated[str, AfterValidator(_container_path)]
RelativePath = Annotated[str, AfterValidator(_relative_path)]
ZoneSubfolder = Annotated[str, AfterValidator(_zone_subfolder)]
ImageRef = Annotated[str, AfterValidator(_image)]
Port = Annotated[int, Field(ge=1, le=65535, strict=True)]
#: A Kubernetes CPU quantity (``500m``, ``0.5``, ``2``), kept as its canonical text.
CpuQuantity = Annotated[str, BeforeValidator(quantities.cpu_text)]
#: A Kubernetes memory quantity (``512Mi``, ``4Gi``, ``1G``), kept as written.
MemoryQuantity = Annotated[str, BeforeValidator(quantities.memory_text)]
#: A duration with a unit (``30s``, ``90m``, ``8h``, ``1h30m``), kept as written.
Duration = Annotated[str, BeforeValidator(lambda v: (quantities.duration_seconds(v), v.strip())[1])]

# Kubernetes names (k8s.io/apimachinery validation): what node selectors, tolerations,
# extended resources and service accounts may be named.
_DNS_SUBDOMAIN_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def _qualified_name(value: str) -> str:
    """``[prefix/]name``: prefix a DNS subdomain, name 1-63 of ``[A-Za-z0-9_.-]``, alphanumeric at both ends."""
    prefix, _, name = value.rpartition("/")
    if (prefix and not _DNS_SUBDOMAIN_RE.match(prefix)) or not _QUALIFIED_NAME_RE.match(name):
        raise ValueError(f"{value!r} is not a valid Kubernetes label key ([prefix/]name, e.g. "
                         "kubernetes.io/arch, gpu-type): the name is 1-63 letters, digits, '-', '_' or '.', "
                         "starting and ending with a letter or digit; the prefix a DNS subdomain")
    return value


def _label_value(value: str) -> str:
    if not _LABEL_VALUE_RE.match(value):
        raise ValueError(f"{value!r} is not a valid Kubernetes label value (at most 63 letters, digits, '-', '_' or "
                         "'.', starting and ending with a letter or digit)")
    return value


def _dns_subdomain(value: str) -> str:
    if not _DNS_SUBDOMAIN_RE.match(value):
        raise ValueError(f"{value!r} is not a valid Kubernetes name (lowercase letters, digits, '-' and '.', "
                         "at most 253 characters)")
    return value


def _resource_name(value: str) -> str:
    """An extended resource: ``domain/name`` (``nvidia.com/gpu``, ``amd.com/gpu``); never a native one."""
    prefix, _, name = value.rpartition("/")
    if not prefix or not _DNS_SUBDOMAIN_RE.match(prefix) or not _QUALIFIED_NAME_RE.match(name) \
            or prefix == "kubernetes.io" or prefix.endswith(".kubernetes.io") or "." not in prefix:
        raise ValueError(f"{value!r} is not an extended resource name (vendor-domain/resource, e.g. nvidia.com/gpu)")
    return value


#: A label key (``kubernetes.io/arch``, ``gpu-type``).
LabelKey = Annotated[str, AfterValidator(_qualified_name)]
#: A label value (may be empty).
LabelValue = Annotated[str, AfterValidator(_label_value)]
#: A DNS-1123 subdomain: names of service accounts and other objects.
KubeName = Annotated[str, AfterValidator(_dns_subdomain)]
#: An extended resource name (``nvidia.com/gpu``).
ResourceName = Annotated[str, AfterValidator(_resource_name)]
Zone = Literal[
    "code_studio-versioned",
    "code_studio-resources",
    "project-lib-versioned",
    "project-lib-resources",
    "recipes",
    "user-versioned",
    "user-resources",
]
ProxiedSubpath = Literal["/", "$request_uri"]


def default_target(zone: str) -> str:
    """Where a zone is synced inside the container unless a mapping says otherwise."""
    return f"{WORKSPACE}/{zone}"


def zone_scope(zone: str) -> Literal["studio", "project", "user"]:
    """Which owner a zone belongs to: one studio, the project, or the user."""
    if zone.startswith("code_studio-"):
        return "studio"
    if zone.startswith("user-"):
        return "user"
    return "project"


def is_versioned(zone: str) -> bool:
    """Versioned zones are git repositories on the server side."""
    return zone.endswith("-versioned") or zone == "recipes"


# What Git itself takes for ".git" and refuses to track: its is_ntfs_dotgit()
# (any case, the NTFS short name "git~1", then only dots and spaces up to the
# end, a backslash or an alternate data stream's ":") and is_hfs_dotgit()
# (".git" once the code points HFS+ ignores are removed). The sync agent,
# sent alone into studios, carries the same rule (tests check they agree).
_NTFS_DOTGIT = re.compile(r"(?:\.[gG][iI][tT]|[gG][iI][tT]~1)[. ]*(?:$|[\\:])")
_HFS_IGNORED = re.compile("[\u200c-\u200f\u202a-\u202e\u206a-\u206f\ufeff]")


def is_git_name(part: str) -> bool:
    """Whether one path component is ``.git`` or a name Git takes for it (``.GIT``, ``git~1``, ``.git.``, ...)."""
    if _NTFS_DOTGIT.match(part):
        return True
    folded = part if part.isascii() else _HFS_IGNORED.sub("", part)
    return len(folded) == 4 and folded[0] == "." and folded[1:].lower() == "git" and folded[1:].isascii()
