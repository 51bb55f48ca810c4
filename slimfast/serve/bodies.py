"""Request bodies: a raw upload or one file in a multipart form, never more than the limit.

The body is read as it arrives and refused (413) as soon as it passes ``max_upload_bytes``, so
a huge or endless upload costs at most the limit. A multipart body must end with its closing
boundary: python-multipart accepts a cut-off one silently, which would code half a file.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import ClientDisconnect, Request

from .errors import ApiError

MULTIPART_SLACK = 64 * 1024  # boundaries, part headers and parameter fields around the file
MAX_FIELD_BYTES = 1024


@dataclass
class Upload:
    data: bytes
    fields: dict[str, str] = field(default_factory=dict)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"the upload is larger than this server's limit of {limit} bytes")


async def _bounded(request: Request, limit: int, tail: bytearray):
    """The body's chunks, refusing past ``limit`` bytes; ``tail`` keeps its last 256 bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    seen = 0
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > limit:
                raise _too_large(limit)
            tail[:] = (tail + chunk)[-256:]
            yield chunk
    except ClientDisconnect:
        raise ApiError(400, "the upload was cut off (the client disconnected)") from None


async def read_upload(request: Request, limit: int) -> Upload:
    """The uploaded file and, in a multipart form, its other fields. Any other content type is
    the raw file: ``curl --data-binary @FILE`` labels it a urlencoded form."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        return await _read_multipart(request, limit)
    tail = bytearray()
    return Upload(b"".join([chunk async for chunk in _bounded(request, limit, tail)]))


async def _read_multipart(request: Request, limit: int) -> Upload:
    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    tail = bytearray()
    parser = MultiPartParser(request.headers, _bounded(request, limit + MULTIPART_SLACK, tail), max_files=1,
                             max_fields=16, max_part_size=MAX_FIELD_BYTES)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ApiError(400, f"malformed multipart body: {exc.message}") from None
    try:
        _check_closed(request, tail)
        files = [v for v in form.values() if isinstance(v, UploadFile)]
        if not files:
            raise ApiError(400, "the multipart form has no file (send it as -F file=@FILE)")
        data = await files[0].read()
        fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    finally:
        await form.close()
    if len(data) > limit:
        raise _too_large(limit)
    return Upload(data, fields)


def _check_closed(request: Request, tail: bytearray) -> None:
    from starlette.formparsers import parse_options_header

    _, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary", b"")
    if not boundary or b"--" + boundary + b"--" not in tail:
        raise ApiError(400, "the multipart body was cut off (it has no closing boundary)")
