"""Calls (tickets): file, search, read one with its timeline, clocks and open work; photo uploads."""
from __future__ import annotations

import hashlib
import json

from flask import Response, g, request
from flask_smorest import Blueprint
from marshmallow import EXCLUDE, Schema, fields, validate
from sqlalchemy.exc import IntegrityError

from engine.errors import Forbidden
from workflows.attachments import MAX_FILES, AttachmentStore, Upload, claim_uploads, get_attachment
from workflows.calls import FileCallSchema, call_diagram, file_call_once, replay_filing, show_call
from workflows.calls import get_call as find_call
from workflows.models import Attachment, Call
from workflows.org import FILING_ROLES, may_see_call
from workflows.queries import SORTS, CallFilter, possible_duplicates, search_calls

from .present import attachment_out, call_out, clock_out, item_out
from .schemas import (
    LEVELS,
    MAX_ID,
    STATUSES,
    AttachmentSchema,
    CallDetailSchema,
    CallPageSchema,
    CallSchema,
    FiledCallSchema,
)
from .security import ctx, current_user, filing_limit, limiter, request_clock, require, services, user_key

blp = Blueprint("calls", __name__, url_prefix="/api/v1/calls", description="Calls (tickets)")
attachments = Blueprint("attachments", __name__, url_prefix="/api/v1/attachments",
                        description="Photos and evidence files")


class FileCallRequest(FileCallSchema):
    photos = fields.List(fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_ID)),
                         load_default=list, validate=validate.Length(max=MAX_FILES),
                         metadata={"description": "ids of your uploads (POST /api/v1/attachments)"})


class IdempotencyHeaders(Schema):
    class Meta:
        unknown = EXCLUDE

    idempotency_key = fields.String(data_key="Idempotency-Key", load_default=None,
                                    validate=validate.Length(min=1, max=200),
                                    metadata={"description": "retrying with the same key returns the same call"})


class CallQuerySchema(Schema):
    status = fields.List(fields.String(validate=validate.OneOf(STATUSES)), load_default=None)
    level = fields.String(load_default=None, validate=validate.OneOf(LEVELS))
    category = fields.String(load_default=None, validate=validate.Length(min=1, max=64))
    street = fields.String(load_default=None, validate=validate.Length(min=1, max=64))
    community = fields.String(load_default=None, validate=validate.Length(min=1, max=64))
    department = fields.String(load_default=None, validate=validate.Length(min=1, max=64))
    overdue = fields.Boolean(load_default=None)
    created_from = fields.AwareDateTime(load_default=None, default_timezone=None,
                                        metadata={"description": "ISO 8601 with offset, inclusive"})
    created_to = fields.AwareDateTime(load_default=None, metadata={"description": "ISO 8601 with offset, exclusive"})
    q = fields.String(load_default=None, validate=validate.Length(min=1, max=100),
                      metadata={"description": "text in the number, description or location"})
    include_children = fields.Boolean(load_default=False)
    mine = fields.Boolean(load_default=False, metadata={"description": "only the calls I filed (a grid worker's "
                                                                        "\"my calls\")"})
    sort = fields.String(load_default="-created_at",
                         validate=validate.OneOf([s for k in SORTS for s in (k, f"-{k}")]))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100000))
    per_page = fields.Integer(load_default=20, validate=validate.Range(min=1, max=200))


def _request_hash(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


@blp.route("", methods=["POST"])
@limiter.limit(filing_limit, key_func=user_key)
@blp.arguments(FileCallRequest)
@blp.arguments(IdempotencyHeaders, location="headers", as_kwargs=True)
@blp.response(201, FiledCallSchema)
@blp.alt_response(200, schema=FiledCallSchema, description="replayed: the call an earlier request with this "
                                                      "Idempotency-Key filed")
@require(*sorted(FILING_ROLES))
def file_a_call(body, idempotency_key=None):
    """File a call (grid worker, community staff, street dispatcher, hotline)

    Photos are uploaded first (``POST /api/v1/attachments``) and referenced by id.
    Send an ``Idempotency-Key`` header to make retries safe.
    """
    c = ctx()
    digest = _request_hash(body)
    photo_ids = body.pop("photos")
    try:
        photos = claim_uploads(g.db, photo_ids, username=c.actor, purposes={"photo"}, field="photos")
        data = {**body, "photos": [attachment_out(a)["url"] for a in photos]}
        filing = file_call_once(c, data, key=idempotency_key, request_hash=digest)
        for a in photos:
            a.call_id = filing.call.id
        g.db.commit()
    except IntegrityError:  # a twin request with the same Idempotency-Key committed first
        g.db.rollback()
        filing = replay_filing(ctx(), idempotency_key, digest) if idempotency_key else None
        if filing is None:
            raise
    status = 200 if filing.replayed else 201
    headers = {"Location": f"/api/v1/calls/{filing.call.number}"}
    if filing.replayed:
        headers["Idempotent-Replayed"] = "true"
    out = call_out(filing.call)
    out["open_items"] = [item_out(wi, c.user) for wi in filing.open_items]
    return out, status, headers


@blp.route("", methods=["GET"])
@blp.arguments(CallQuerySchema, location="query")
@blp.response(200, CallPageSchema)
def list_calls(args):
    """Search the calls you may see (filters, paging, sorting)"""
    c = ctx()
    total, rows = search_calls(c, CallFilter(**args))
    return {"items": [call_out(call, overdue) for call, overdue in rows], "total": total, "page": args["page"],
            "per_page": args["per_page"]}


@blp.route("/<string:number>", methods=["GET"])
@blp.response(200, CallDetailSchema)
def get_call(number):
    """One call: details, children, open work items with deadlines, SLA clocks, timeline, attachments"""
    c = ctx()
    view = show_call(c, number)
    calendar = c.sla.calendars.get(g.db)
    now = c.clock.now()
    out = call_out(view.call, any(d.state == "overdue" for d in view.deadlines.values()))
    out["open_items"] = [item_out(wi, c.user, view.deadlines.get(wi.id)) for wi in view.open_items]
    out["children"] = [call_out(ch) for ch in view.children]
    out["timeline"] = [{"id": e.id, "occurred_at": e.occurred_at, "actor": e.actor, "action": e.action,
                        "work_item_id": e.work_item_id, "old": e.old, "new": e.new, "detail": e.detail}
                       for e in view.timeline]
    out["clocks"] = [clock_out(k, calendar, now) for k in view.clocks]
    root = view.call.parent if view.call.parent_id else view.call
    out["attachments"] = [attachment_out(a) for a in g.db.query(Attachment).filter(Attachment.call_id == root.id)
                          .order_by(Attachment.id)]
    return out


class DiagramSchema(Schema):
    file_name = fields.String()
    process_id = fields.String()
    version = fields.Integer()
    xml = fields.String(metadata={"description": "the BPMN 2.0 XML of the version this call runs on"})
    completed = fields.Dict(keys=fields.String(), values=fields.Integer(),
                            metadata={"description": "element id -> times completed (the path so far)"})
    active = fields.List(fields.String(), metadata={"description": "element ids where the call is now"})


class DuplicateSchema(Schema):
    call = fields.Nested(CallSchema)
    score = fields.Float(metadata={"description": "0-1, higher is more likely the same problem"})
    distance_m = fields.Float(allow_none=True)
    reason = fields.String()


class DuplicateQuery(Schema):
    days = fields.Integer(load_default=7, validate=validate.Range(min=1, max=90))
    limit = fields.Integer(load_default=5, validate=validate.Range(min=1, max=20))


@blp.route("/<string:number>/diagram", methods=["GET"])
@blp.response(200, DiagramSchema)
def get_diagram(number):
    """The call's process diagram with the path taken so far and the current position"""
    d = call_diagram(ctx(), number)
    return {"file_name": d.file_name, "process_id": d.process_id, "version": d.version, "xml": d.xml,
            "completed": d.completed, "active": d.active}


@blp.route("/<string:number>/duplicates", methods=["GET"])
@blp.arguments(DuplicateQuery, location="query")
@blp.response(200, DuplicateSchema(many=True))
def get_duplicates(args, number):
    """Earlier calls that may be the same problem (same category, near the same place, recent)"""
    c = ctx()
    call = find_call(c, number)
    return [{"call": call_out(d.call), "score": d.score, "distance_m": d.distance_m, "reason": d.reason}
            for d in possible_duplicates(c, call, days=args["days"], limit=args["limit"])]


# ---- attachments -----------------------------------------------------------------------------------

class UploadForm(Schema):
    purpose = fields.String(load_default="photo", validate=validate.OneOf(("photo", "evidence")))


class UploadFiles(Schema):
    file = fields.Raw(metadata={"type": "string", "format": "binary"}, required=True)


@attachments.route("", methods=["POST"])
@attachments.arguments(UploadForm, location="form")
@attachments.arguments(UploadFiles, location="files")
@attachments.response(201, AttachmentSchema(many=True))
def upload(form, _files):
    """Upload photos or evidence (multipart field ``file``, repeatable; JPEG, PNG, WebP, GIF; PDF as evidence)"""
    user = current_user()
    svc = services()
    files = request.files.getlist("file")
    store = AttachmentStore(svc.settings.attachment_dir, int(svc.settings.max_upload_mb * 1024 * 1024))
    uploads = []
    for f in files:
        try:
            uploads.append(Upload(f.filename or "upload", f.read(store.max_bytes + 1)))
        finally:
            f.close()
    rows = store.save(g.db, uploads, purpose=form["purpose"], actor=user.username, at=request_clock().now(),
                      field="file")
    g.db.commit()
    return [attachment_out(a) for a in rows]


@attachments.route("/<int:attachment_id>", methods=["GET"])
@attachments.response(200, description="the file's bytes", content_type="application/octet-stream")
def attachment_file(attachment_id):
    """Download an attachment (of a call you may see, or your own upload)"""
    user = current_user()
    a = get_attachment(g.db, attachment_id)
    if a.call_id is None:
        if a.uploaded_by != user.username:
            raise Forbidden(f"attachment {attachment_id} is someone else's upload")
    elif not may_see_call(g.db, user, g.db.get(Call, a.call_id)):
        raise Forbidden(f"{user.username} may not see attachment {attachment_id}")
    svc = services()
    data = AttachmentStore(svc.settings.attachment_dir, 0).read(a)
    disposition = "inline" if a.content_type.startswith("image/") else "attachment"
    return Response(data, mimetype=a.content_type, headers={
        "Content-Disposition": f'{disposition}; filename="attachment-{a.id}"', "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, max-age=86400", "ETag": a.sha256})
