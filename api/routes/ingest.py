"""POST /v1/ingest: stream a CSV into the landing area; GET /v1/ingest/{id}: follow it."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request, Response, status

from api.auth import PrincipalDep
from api.deps import InstanceDep, SettingsDep, StoreDep
from api.upload.params import PermittedUploadDep
from api.upload.receipts import IngestAnswer, answer
from api.upload.service import upload
from api.upload.slots import UploadSlotDep
from lakehouse.ingest.log import read_receipt
from lakehouse.publish.status import ingest_status

router = APIRouter(prefix="/ingest", tags=["ingest"])


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        200: {"description": "Duplicate bytes, or materialized while waiting."},
        400: {
            "description": "Empty, not UTF-8 CSV text, no header on line 1, mixed line ends, "
            "broken gzip or malformed multipart."
        },
        401: {"description": "No token, or one unknown, expired or revoked."},
        403: {
            "description": "The token may not write this dataset, or not in this mode; or a "
            "web page's upload of another content type than CSV, gzip or multipart."
        },
        409: {"description": "Columns differ from the dataset's; the diff says how."},
        413: {"description": "Larger than the upload limit (after decompression)."},
        422: {"description": "Invalid dataset name or wait, or (with wait) the ingest failed."},
        503: {"description": "Too many uploads in flight (Retry-After), or store down."},
    },
    openapi_extra={
        "requestBody": {
            "content": {
                "text/csv": {"schema": {"type": "string", "format": "binary"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "required": ["file"],
                    }
                },
            },
            "required": True,
        }
    },
)
async def ingest(
    request: Request,
    response: Response,
    params: PermittedUploadDep,
    slot: UploadSlotDep,
    settings: SettingsDep,
    store: StoreDep,
    instance: InstanceDep,
) -> IngestAnswer:
    """Land a CSV (raw body, or multipart field `file`; gzip by `Content-Encoding: gzip` or
    a `.gz` file name) for dataset `name`.

    Answers 202 once the ingest is committed to the dataset's log: from then on it will be
    applied exactly once, in log order, by the next run of the dataset. Bytes the dataset
    already holds answer 200 with the ingest that put them there, and add nothing.
    """
    answered = await upload(request, params, slot, settings, store, instance)
    response.status_code = answered.status_code
    return answered.receipt


@router.get("/{ingest_id}")
def get_ingest(
    ingest_id: str,
    store: StoreDep,
    instance: InstanceDep,
    principal: PrincipalDep,
    settings: SettingsDep,
) -> IngestAnswer:
    """Where an ingest stands: landed, queued, running, materialized (with the dataset
    version it produced) or failed (with the reason, and bad rows with line numbers). 404
    for an unknown id or one of a dataset the token is not granted, 410 for one older than
    the retention (pruned once settled: the answer says what is still known), 422 for a
    malformed one."""
    retention = timedelta(days=settings.retention_days)
    record = read_receipt(store, ingest_id, visible=principal.granted, retention=retention)
    return answer(record, ingest_status(instance, store, record))
