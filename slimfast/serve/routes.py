"""The HTTP API: /v1/compress, /v1/decompress, /v1/compare, /v1/models and /healthz.

Handlers read the upload within its limit, validate the parameters (query string and form
fields alike) and hand the coding to a worker process (:mod:`slimfast.serve.pool`).
"""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from .. import __version__
from ..errors import printable
from .bodies import read_upload
from .errors import ApiError
from .jobs import Limits
from .params import CompareParams, CompressParams, DecompressParams, merge
from .pool import PoolError

router = APIRouter()
SFI_TYPE = "application/x-slimfast"
BINARY = {"schema": {"type": "string", "format": "binary"}}
IMAGE_TYPES = ["image/png", "image/jpeg", "image/webp", "image/avif", "image/gif", "image/tiff", "image/bmp"]


class ErrorBody(BaseModel):
    """Every refusal: a one-line message and the HTTP status again."""

    error: str
    status: int


MEANINGS = {400: "a malformed, empty or cut-off body", 406: "Accept names no format this server writes",
            413: "over the upload size or pixel limit", 415: "not an image (or not a .sfi file)",
            422: "invalid or unknown parameters, or a file that cannot be read or coded as asked",
            501: "a codec this server's Pillow lacks", 503: "the queue is full (see Retry-After)",
            504: "over the per-request time limit (the worker was replaced)"}


def _errors(*codes: int) -> dict:
    return {c: {"model": ErrorBody, "description": MEANINGS[c]} for c in codes}


CODING_ERRORS = _errors(400, 413, 415, 422, 503, 504)


def _upload_body(what: str, types: list[str], fields: type) -> dict:
    """OpenAPI for a body that is the raw file or a multipart form with a ``file`` part."""
    raw = BINARY
    props = {"file": {"type": "string", "format": "binary", "description": what}}
    props.update({name: {"type": "string", "description": "as the query parameter"} for name in fields.model_fields})
    form = {"schema": {"type": "object", "required": ["file"], "properties": props}}
    return {"requestBody": {"required": True, "description": f"{what}: the raw body, or a multipart form whose "
                            "other fields may carry the parameters",
                            "content": {**{t: raw for t in types}, "multipart/form-data": form}}}


def _no_query(request: Request) -> None:
    if request.query_params:
        raise ApiError(422, f"{', '.join(sorted(request.query_params))}: unknown parameter")


def _params(cls, request: Request, fields: dict):
    try:
        return merge(cls, dict(request.query_params), fields)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None


async def _job(request: Request, job: str, args: tuple):
    pool, config = request.app.state.pool, request.app.state.config
    try:
        reply = await pool.run(job, args, config.timeout_s)
    except PoolError as exc:
        raise ApiError(exc.status, str(exc), exc.headers) from None
    if reply[0] == "error":
        raise ApiError(reply[1], reply[2])
    return reply[1]


def _limits(request: Request, page: bool = False) -> Limits:
    config = request.app.state.config
    return Limits(min(config.max_pixels, config.page_max_pixels) if page else config.max_pixels)


@router.post("/v1/compress", tags=["coding"], response_class=Response, openapi_extra=_upload_body(
    "the image (PNG, JPEG, WebP, AVIF, GIF, TIFF, BMP, ...)", IMAGE_TYPES + ["application/octet-stream"],
    CompressParams), responses={200: {"content": {SFI_TYPE: BINARY}, "description": "the .sfi file; X-Slimfast-* "
                                                                                   "headers describe it"},
                                 **CODING_ERRORS})
async def compress(request: Request, query: Annotated[CompressParams, Query()]) -> Response:
    """Compress an image to a `.sfi` file. Headers: `X-Slimfast-Model`, `X-Slimfast-Width` (slimmable
    models), `X-Slimfast-Bpp`, `X-Slimfast-Bytes`, `X-Slimfast-Image-Size` (WxH), `X-Slimfast-Encode-Ms`."""
    upload = await read_upload(request, request.app.state.config.max_upload_bytes)
    params = _params(CompressParams, request, upload.fields)
    meta, data = await _job(request, "compress", (upload.data, params.model_dump(), _limits(request)))
    headers = {"X-Slimfast-Model": printable(meta["model"]), "X-Slimfast-Bpp": f"{meta['bpp']:.6f}",
               "X-Slimfast-Bytes": str(meta["bytes"]), "X-Slimfast-Image-Size": "{}x{}".format(*meta["image_size"]),
               "X-Slimfast-Encode-Ms": f"{meta['encode_ms']:.1f}",
               "Content-Disposition": 'attachment; filename="image.sfi"'}
    if meta["width"] is not None:
        headers["X-Slimfast-Width"] = str(meta["width"])
    return Response(data, media_type=SFI_TYPE, headers=headers)


ACCEPTED = {"image/png": "png", "image/webp": "webp", "image/jpeg": "jpeg", "image/*": "png", "*/*": "png"}


def choose_format(accept: str | None) -> str:
    """The output format the ``Accept`` header prefers (q-values, then order); none: PNG."""
    if not accept or not accept.strip():
        return "png"
    ranked = []
    for i, part in enumerate(accept.split(",")):
        media, *options = [s.strip() for s in part.split(";")]
        q = next((o[2:] for o in options if o.replace(" ", "").startswith("q=")), "1")
        try:
            ranked.append((-float(q), i, media.lower()))
        except ValueError:
            continue
    for q, _, media in sorted(ranked):
        if q < 0 and media in ACCEPTED:
            return ACCEPTED[media]
    raise ApiError(406, "Accept names none of image/png, image/webp, image/jpeg; or ask with ?format=png|webp|jpeg")


@router.post("/v1/decompress", tags=["coding"], response_class=Response,
             openapi_extra=_upload_body("the .sfi file", [SFI_TYPE, "application/octet-stream"], DecompressParams),
             responses={200: {"content": {"image/png": BINARY, "image/webp": BINARY, "image/jpeg": BINARY},
                              "description": "the decoded image"}, **CODING_ERRORS, **_errors(406)})
async def decompress(request: Request, query: Annotated[DecompressParams, Query()],
                     accept: Annotated[str | None, Header()] = None) -> Response:
    """Decode a `.sfi` file to PNG (default), WebP or JPEG: `?format=`, else the `Accept` header.
    Headers: `X-Slimfast-Image-Size` (WxH), `X-Slimfast-Decode-Ms`."""
    upload = await read_upload(request, request.app.state.config.max_upload_bytes)
    params = _params(DecompressParams, request, upload.fields)
    fmt = params.format or choose_format(accept)
    meta, data = await _job(request, "decompress", (upload.data, fmt, _limits(request)))
    headers = {"X-Slimfast-Image-Size": "{}x{}".format(*meta["image_size"]),
               "X-Slimfast-Decode-Ms": f"{meta['decode_ms']:.1f}", "Vary": "Accept"}
    return Response(data, media_type=meta["media_type"], headers=headers)


@router.post("/v1/compare", tags=["comparison page"], openapi_extra=_upload_body(
    "the image, at most the page's pixel limit (GET /v1/compare)", IMAGE_TYPES + ["application/octet-stream"],
    CompareParams), responses={**CODING_ERRORS, **_errors(501)})
async def compare(request: Request, query: Annotated[CompareParams, Query()]) -> JSONResponse:
    """One codec at a target size, as the comparison page shows it: the largest file not above
    the target, its bytes, bpp, PSNR, MS-SSIM, encode and decode ms, the decoded image (a PNG
    data URL) and the file (base64); for slimfast, its operating points (a slimmable model's widths)."""
    upload = await read_upload(request, request.app.state.config.max_upload_bytes)
    params = _params(CompareParams, request, upload.fields)
    result = await _job(request, "compare", (upload.data, params.codec, params.model_dump(), _limits(request, True)))
    return JSONResponse(result)


@router.get("/v1/compare", tags=["comparison page"], responses=_errors(422))
async def compare_info(request: Request) -> dict:
    """The comparison's codecs and whether each is available here, and the page's pixel limit."""
    from .compare import availability

    _no_query(request)
    config = request.app.state.config
    return {"codecs": availability(), "max_pixels": min(config.max_pixels, config.page_max_pixels)}


@router.get("/v1/models", tags=["models"], responses=_errors(422))
async def models(request: Request) -> dict:
    """The installed models (name, family, version, widths, Kodak points), as `slimfast models --json`."""
    import slimfast

    _no_query(request)
    listed = slimfast.list_models()
    return {"models": [m.public() for m in listed], "default": next((m.name for m in listed if m.default), None)}


@router.get("/healthz", tags=["service"], responses={503: {"description": "no worker is alive"}, **_errors(422)})
async def healthz(request: Request) -> JSONResponse:
    """200 while at least one worker is alive (503 otherwise), with the pool's state."""
    _no_query(request)
    stats = request.app.state.pool.stats()
    ok = stats["alive"] > 0
    return JSONResponse({"status": "ok" if ok else "unavailable", "version": __version__, **stats},
                        status_code=200 if ok else 503)
