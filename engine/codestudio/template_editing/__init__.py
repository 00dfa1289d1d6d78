"""The template editor's engine service: a stored template as a document, drafts, saves, uploads.

The YAML file stays the source of truth. The web editor opens a template as
a JSON document (its header fields and blocks), and a save applies the
edited document to the stored YAML as a minimal change with a round-trip
YAML library (ruamel.yaml): keys keep their order, comments stay, untouched
blocks and values keep their text. The result is validated with the
engine's own validation (:func:`codestudio.template.load_template` and
:func:`codestudio.plan.apply_blocks`) and stored exactly as
``codestudio template add`` stores a file (a new version when it changed).

A save whose template has problems is kept as the template's **draft**
(``<data dir>/templates/<id>/.draft/``) with the problems, each located at
its block and field; a template with a draft cannot be built until a valid
save replaces the draft by a new version.

Concurrent edits: every open answers a **revision** (a digest of the latest
version and the draft); a save names the revision it was made from and is
refused with :class:`Conflict` ("changed since you opened it") when the
template changed since, so nothing is overwritten unseen.

Uploads (resources, starter files) go to ``<data dir>/templates/<id>/.files/``
and are part of every later save, under the relative name they were uploaded
as; ``..``, absolute names and files above :data:`MAX_UPLOAD_BYTES` are refused.
"""

from codestudio.template_editing.document import HEADER_FIELDS, EditError, apply_document, document_of
from codestudio.template_editing.editing import (
    STANDARD_DISTRIBUTIONS,
    AlreadyExists,
    Conflict,
    block_types,
    create_template,
    discard_draft,
    open_template,
    problems_of,
    reused_blocks,
    revision,
    save_template,
    stored_text,
)
from codestudio.template_editing.files import FILES_DIR, MAX_UPLOAD_BYTES, check_upload_name, list_files, upload_file

__all__ = [
    "FILES_DIR",
    "HEADER_FIELDS",
    "MAX_UPLOAD_BYTES",
    "STANDARD_DISTRIBUTIONS",
    "AlreadyExists",
    "Conflict",
    "EditError",
    "apply_document",
    "block_types",
    "check_upload_name",
    "create_template",
    "discard_draft",
    "document_of",
    "list_files",
    "open_template",
    "problems_of",
    "reused_blocks",
    "revision",
    "save_template",
    "stored_text",
    "upload_file",
]
