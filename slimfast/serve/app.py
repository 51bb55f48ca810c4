"""The ASGI application: the HTTP API, the comparison page and the JSON errors.

Every refusal is a JSON object ``{"error": "one line", "status": N}`` with a 4xx status (503 when
the queue is full, 504 over the time limit); nothing reaches a client as a traceback.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import printable
from . import routes
from .errors import ApiError
from .limits import ServeConfig
from .params import describe
from .pool import WorkerPool

STATIC = Path(__file__).resolve().parent / "static"
log = logging.getLogger("slimfast.serve")

DESCRIPTION = """A slimfast compression service: images in, `.sfi` files out, and back.

Errors are JSON, `{"error": "...", "status": N}`: 400 a malformed or cut-off body, 406 an
unsatisfiable `Accept`, 413 over the upload or pixel limit, 415 not an image (or not a `.sfi`
file), 422 invalid or unknown parameters and unreadable files, 503 the queue is full (with
`Retry-After`), 504 over the per-request time limit.
"""


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": printable(message, limit=500, ascii_only=False), "status": status},
                        status_code=status, headers=headers)


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError):
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return error_response(422, describe(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(500, "internal error")


def _pages(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/docs", include_in_schema=False)
    async def docs():  # FastAPI's Swagger UI loads from a CDN; this page works offline
        return FileResponse(STATIC / "docs.html", headers={"Cache-Control": "no-cache"})

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        return Response(status_code=204)


def create_app(config: ServeConfig | None = None) -> FastAPI:
    """The application; its worker pool starts and stops with it (ASGI lifespan)."""
    config = config or ServeConfig()
    pool = WorkerPool(config.workers, config.model, config.queue)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        try:
            await pool.start()
        except Exception as exc:
            log.error("slimfast serve: the workers did not start: %s", exc)
            await pool.stop()
            raise
        try:
            yield
        finally:
            await pool.stop()

    app = FastAPI(title="slimfast", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.state.pool, app.state.config = pool, config
    _install_errors(app)
    app.include_router(routes.router)
    _pages(app)
    return app
