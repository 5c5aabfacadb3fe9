"""Photos and evidence files: checked by their bytes, stored on disk by content, described in the database.

The bytes live under ``HUYING_ATTACHMENT_DIR`` named by their SHA-256 (the
same photo uploaded twice is stored once); the ``attachment`` row holds what
the file is, who sent it and which call it belongs to.  The type is decided by
the file's leading bytes, never by the name or the client's Content-Type.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from engine.errors import NotFound, ValidationFailed, msg

from .models import Attachment

MAX_FILES = 9


def sniff_type(head: bytes) -> str | None:
    """The content type of an accepted image (JPEG, PNG, WebP, GIF) or PDF, else None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    return None


ALLOWED = {"photo": {"image/jpeg", "image/png", "image/webp", "image/gif"},
           "evidence": {"image/jpeg", "image/png", "image/webp", "image/gif", "application/pdf"}}


@dataclass
class Upload:
    """A file as the web layer received it."""

    filename: str
    data: bytes


class AttachmentStore:
    def __init__(self, root: str, max_bytes: int):
        self.root = Path(root)
        self.max_bytes = max_bytes

    def path_of(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def check(self, uploads: list[Upload], purpose: str = "photo", field: str = "photos") -> list[str]:
        """Validate every file before anything is written; returns their content types."""
        if len(uploads) > MAX_FILES:
            raise ValidationFailed(msg("at most %(n)s files", n=MAX_FILES),
                                   field_errors={field: [msg("at most %(n)s files", n=MAX_FILES)]})
        types, errors = [], []
        for up in uploads:
            name = up.filename or "upload"
            if not up.data:
                errors.append(msg("%(name)s: the file is empty", name=name))
            elif len(up.data) > self.max_bytes:
                errors.append(msg("%(name)s: %(size)s bytes; the limit is %(limit)s bytes", name=name,
                                  size=len(up.data), limit=self.max_bytes))
            else:
                kind = sniff_type(up.data[:16])
                if kind not in ALLOWED[purpose]:
                    allowed = ", ".join(sorted(t.split("/")[1] for t in ALLOWED[purpose]))
                    errors.append(msg("%(name)s: not an accepted file type (%(allowed)s)", name=name, allowed=allowed))
                types.append(kind or "")
        if errors:
            raise ValidationFailed("; ".join(errors), field_errors={field: errors})
        return types

    def save(self, session: Session, uploads: list[Upload], *, purpose: str, actor: str, at: datetime,
             call_id: int | None = None, field: str = "photos") -> list[Attachment]:
        """Check, write the bytes (atomically, deduplicated) and add the rows (flushed, not committed).

        If the transaction later rolls back, the rows vanish; the files stay as
        unreferenced content (harmless, and reused if the same bytes come again).
        """
        types = self.check(uploads, purpose, field)
        rows = []
        for up, kind in zip(uploads, types, strict=True):
            digest = hashlib.sha256(up.data).hexdigest()
            path = self.path_of(digest)
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
                try:
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(up.data)
                    os.replace(tmp, path)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
            row = Attachment(call_id=call_id, sha256=digest, content_type=kind, size=len(up.data),
                             filename=os.path.basename(up.filename or "upload")[:200] or "upload", purpose=purpose,
                             uploaded_by=actor, created_at=at)
            session.add(row)
            rows.append(row)
        session.flush()
        return rows

    def read(self, row: Attachment) -> bytes:
        path = self.path_of(row.sha256)
        if not path.exists():
            raise NotFound(msg("the file of attachment %(id)s is missing from storage", id=row.id))
        return path.read_bytes()


def get_attachment(session: Session, attachment_id: int) -> Attachment:
    row = session.get(Attachment, attachment_id)
    if row is None:
        raise NotFound(msg("no attachment %(id)s", id=attachment_id))
    return row


def claim_uploads(session: Session, ids: list[int], *, username: str, purposes: set[str],
                  field: str) -> list[Attachment]:
    """The caller's own unattached uploads ``ids``, in order; a clear field error for any other id."""
    if not ids:
        return []
    if len(set(ids)) != len(ids):
        raise ValidationFailed(msg("the same file is listed twice"),
                               field_errors={field: [msg("duplicate attachment id")]})
    from sqlalchemy import select

    rows = {a.id: a for a in session.scalars(select(Attachment).where(Attachment.id.in_(ids)))}
    errors = []
    for i in ids:
        a = rows.get(i)
        if a is None or a.uploaded_by != username:
            errors.append(msg("%(id)s: no such upload of yours (POST /api/v1/attachments first)", id=i))
        elif a.call_id is not None:
            errors.append(msg("%(id)s: already attached to another call", id=i))
        elif a.purpose not in purposes:
            errors.append(msg("%(id)s: a %(purpose)s file cannot be used here", id=i, purpose=a.purpose))
    if errors:
        raise ValidationFailed("; ".join(errors), field_errors={field: errors})
    return [rows[i] for i in ids]
