"""The enhancement HTTP API behind ``sice serve``: POST a photo, get it back enhanced.

Endpoints::

    POST /enhance?strength=S&quality=Q   body: the image file's bytes -> the enhanced image, same format
    GET  /health                         the model, and how busy the workers and the queue are
    GET  /docs, /openapi.json            the OpenAPI page and schema (FastAPI)

The reply is what ``sice enhance`` writes for the same file: same format, size, bit depth,
alpha, EXIF and ICC profile, JPEG quality and chroma subsampling kept close to the input's
(:func:`sice.enhancement.enhance_to_bytes`).

**One model, a bounded queue.** The model is loaded once, when the app is created, and shared
by every request; decoding, enhancing and encoding run on ``workers`` threads
(:class:`WorkQueue`). Requests queue instead of being refused: ``workers + queue`` of them are
admitted (their bodies received and spooled to a temporary file) and wait in order for a
worker; later ones wait before their body is even read (TCP holds the upload back) for up to
``queue_timeout`` seconds, and only then get 503 with ``Retry-After``. Memory stays bounded by
the admitted requests: ``(workers + queue)`` bodies on disk and ``workers`` images decoded.

**Errors** are one-line JSON ``{"detail": "..."}`` and never a traceback: 400 (corrupt,
truncated or empty image, float pixels outside [0, 1], a strength the model cannot take),
408 (body slower than ``upload_timeout``), 413 (body over ``max_body_size``, image over
``max_pixels``), 415 (not a JPEG, PNG, TIFF, BMP or WebP file, or sent as a multipart form), 422 (a
parameter out of range), 431 (headers too large), 503 (queue wait over ``queue_timeout``), 500
(the model failed on a valid image).
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any, Callable

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect

from ..enhancement import Enhancer, enhance_to_bytes
from ..errors import ImageReadError, SiceError
from ..io import max_pixels_default
from ..webserver import LOOPBACK_HOSTS, HeadLimitMiddleware, install_json_errors

logger = logging.getLogger("sice.serve")

#: Largest request body: a 24 MP 16-bit TIFF or PNG is 60-150 MB.
DEFAULT_MAX_BODY = 256 * 1024 * 1024
DEFAULT_WORKERS = 2
#: Requests admitted beyond the running ones (bodies received, waiting for a worker).
DEFAULT_QUEUE = 16
#: Seconds a request may wait for admission before it gets 503.
DEFAULT_QUEUE_TIMEOUT = 120.0
#: Seconds an admitted request's body may take to arrive (408 beyond): a client that trickles
#: its upload must not hold a place in the queue for ever. 256 MiB at 4 MB/s fits.
DEFAULT_UPLOAD_TIMEOUT = 120.0
DEFAULT_MAX_HEAD = 16 * 1024

MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "TIFF": "image/tiff", "BMP": "image/bmp",
               "WEBP": "image/webp"}
# File signatures of what sice reads (MPO pictures are JPEGs): a body that starts otherwise is
# answered 415 before anything decodes it.
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*", b"BM")
_CHUNK = 1 << 16


class Detail(BaseModel):
    """Every error reply: one line saying what was wrong."""

    detail: str


class QueueTimeout(Exception):
    """A request waited longer than the queue timeout for admission."""


class WorkQueue:
    """Bounded, first-come-first-served admission for CPU work, and the worker threads.

    Parameters
    ----------
    workers : int
        Jobs that run at once (threads; each holds one decoded image).
    queue : int
        Admitted jobs that wait for a worker (each holds one received body, on disk).
    timeout : float
        Seconds a request may wait for admission before :class:`QueueTimeout`.
    """

    def __init__(self, workers: int = DEFAULT_WORKERS, queue: int = DEFAULT_QUEUE,
                 timeout: float = DEFAULT_QUEUE_TIMEOUT):
        if workers < 1 or queue < 0 or not timeout > 0:
            raise ValueError(f"need workers >= 1, queue >= 0, timeout > 0; got {workers}, {queue}, {timeout}")
        self.workers, self.queue, self.timeout = int(workers), int(queue), float(timeout)
        self._places = asyncio.Semaphore(self.workers + self.queue)  # FIFO: waiters are served in order
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="sice-serve")
        self._lock = threading.Lock()
        self.waiting = 0    # not yet admitted
        self.admitted = 0   # admitted: receiving, queued for a worker, or running
        self.running = 0    # on a worker thread

    @contextlib.asynccontextmanager
    async def place(self):
        """Hold one admitted place for the body of the ``async with``; waits in line for it."""
        self.waiting += 1
        try:
            async with asyncio.timeout(self.timeout):
                await self._places.acquire()
        except TimeoutError:
            raise QueueTimeout from None
        finally:
            self.waiting -= 1
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1
            self._places.release()

    async def run(self, fn: Callable[..., Any], *args, **kwargs) -> Any:
        """``fn(*args, **kwargs)`` on a worker thread (in order of arrival when all are busy)."""
        def counted():
            with self._lock:
                self.running += 1
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    self.running -= 1

        return await asyncio.get_running_loop().run_in_executor(self._executor, counted)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def create_app(model: Any = None, *, enhancer: Enhancer | None = None, workers: int = DEFAULT_WORKERS,
               queue: int = DEFAULT_QUEUE, queue_timeout: float = DEFAULT_QUEUE_TIMEOUT,
               upload_timeout: float = DEFAULT_UPLOAD_TIMEOUT, max_body_size: int = DEFAULT_MAX_BODY, max_pixels: int | None = None,
               allowed_hosts: tuple[str, ...] | None = LOOPBACK_HOSTS,
               max_head_size: int = DEFAULT_MAX_HEAD, **enhancer_options) -> FastAPI:
    """Build the enhancement API around one loaded model.

    Parameters
    ----------
    model : str, path-like or None
        As for :class:`~sice.enhancement.Enhancer` (None: the shipped default model). Loaded
        here, once.
    enhancer : Enhancer, optional
        An already loaded model to share instead of loading ``model``.
    workers, queue, queue_timeout : int, int, float
        Worker threads, admitted requests waiting for them, seconds a later request may wait
        for admission (see :class:`WorkQueue`).
    upload_timeout : float
        Seconds an admitted request's body may take to arrive (408 beyond).
    max_body_size : int
        Largest request body in bytes (413 beyond).
    max_pixels : int, optional
        Largest image in pixels (413 beyond); default as ``sice enhance``: 200 MP or
        $SICE_MAX_PIXELS.
    allowed_hosts : tuple of str or None
        Host names the ``Host`` header may carry (DNS-rebinding guard); None accepts any, for a
        server deliberately bound to a non-loopback address.
    max_head_size : int
        Largest request target plus headers in bytes (431 beyond).
    **enhancer_options
        ``device``, ``backend``, ``tile`` for the :class:`Enhancer`.

    Raises
    ------
    ModelError
        If the model cannot be loaded.
    """
    enhancer = enhancer or Enhancer(model, **enhancer_options)
    service = Service(enhancer, WorkQueue(workers, queue, queue_timeout),
                      max_pixels_default() if max_pixels is None else int(max_pixels), max_body_size, upload_timeout)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        service.work.close()

    app = FastAPI(
        title="sice enhancement API", version=_version(), lifespan=lifespan,
        description="POST a badly exposed photo, get it back enhanced in the same format "
                    f"(model `{enhancer.name}`). Errors are JSON: `{{\"detail\": \"one line\"}}`.")
    app.state.enhancer = enhancer
    app.state.work = service.work
    install_json_errors(app)
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    app.add_middleware(HeadLimitMiddleware, max_bytes=max_head_size)

    @app.exception_handler(QueueTimeout)
    async def queue_timeout_error(request: Request, exc: QueueTimeout):
        return JSONResponse({"detail": f"the server is busy: no place in the queue within {service.work.timeout:g} s; "
                                       "retry later"}, status_code=503, headers={"Retry-After": "5"})

    app.include_router(_routes(service))
    return app


@dataclasses.dataclass
class Service:
    """What the routes share: the loaded model, the work queue, and the request limits."""

    enhancer: Enhancer
    work: WorkQueue
    max_pixels: int
    max_body_size: int
    upload_timeout: float


# The documented error replies of POST /enhance (all one-line JSON).
_ENHANCE_ERRORS = {code: {"model": Detail, "description": text} for code, text in [
    (400, "Corrupt, truncated or empty image, or values the model cannot take"),
    (408, "The body did not arrive within the upload timeout"), (413, "Body or image too large"), (415, "Not a JPEG, PNG, TIFF, BMP or WebP file"),
    (422, "A parameter out of range"), (503, "Queue full for longer than the queue timeout"),
    (500, "The model failed on this image")]}
_ENHANCE_BODY = {"requestBody": {"required": True, "description": "The image file's bytes, as they are "
                                 "on disk (not a form): `curl --data-binary @photo.jpg`",
                                 "content": {t: {"schema": {"type": "string", "format": "binary"}}
                                             for t in ["application/octet-stream", *MEDIA_TYPES.values()]}}}


def _routes(service: Service) -> APIRouter:
    """``/`` (to the docs), ``/health`` and ``POST /enhance``."""
    router = APIRouter()

    @router.get("/", include_in_schema=False)
    def index() -> Response:
        return Response(status_code=307, headers={"Location": "/docs"})

    @router.get("/health", summary="Model and load")
    def health() -> dict:
        """The loaded model, and how many requests are running, admitted and waiting."""
        enhancer, work = service.enhancer, service.work
        return {"ok": True, "model": enhancer.name, "backend": enhancer.backend, "workers": work.workers,
                "queue": work.queue, "running": work.running, "admitted": work.admitted, "waiting": work.waiting,
                "max_pixels": service.max_pixels, "max_body_size": service.max_body_size}

    @router.post(
        "/enhance", summary="Enhance one photo", response_class=Response,
        responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()},
                         "description": "The enhanced image, in the input's format"}, **_ENHANCE_ERRORS},
        openapi_extra=_ENHANCE_BODY)
    async def enhance(
        request: Request,
        strength: Annotated[float, Query(ge=0, le=1, allow_inf_nan=False,
                                         description="0 = unchanged, 1 = the model's full correction")] = 1.0,
        quality: Annotated[int | None, Query(ge=1, le=100, description="JPEG/WebP quality; default: the "
                                             "input JPEG's own (estimated), else 95")] = None,
    ) -> Response:
        """Send the photo as the request body; the reply is the enhanced photo in the same format
        (size, bit depth, alpha, EXIF and ICC profile kept)."""
        return await _enhance(service, request, strength, quality)

    return router


async def _enhance(service: Service, request: Request, strength: float, quality: int | None) -> Response:
    """POST /enhance: check the declared type and size, wait for a place, spool the body, enhance
    it on a worker, and map each failure to its status."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type.startswith("multipart/"):
        raise HTTPException(415, "send the image file itself as the body (curl --data-binary @photo.jpg), "
                                 "not as a multipart form")
    # curl sends this type for --data-binary too, so it is accepted; but -d strips line breaks
    hint = " (curl -d alters binary data: use --data-binary)" if "urlencoded" in media_type else ""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > service.max_body_size:
        raise HTTPException(413, f"body of {int(declared)} bytes is larger than the limit of {service.max_body_size}")
    enhancer = service.enhancer
    async with service.work.place():
        with tempfile.TemporaryDirectory(prefix="sice-serve-") as folder:
            upload = Path(folder) / "upload"
            try:
                async with asyncio.timeout(service.upload_timeout):
                    await _receive(request, upload, service.max_body_size)
            except TimeoutError:
                raise HTTPException(408, f"the body did not arrive within {service.upload_timeout:g} s") from None
            try:
                data, fmt = await service.work.run(enhance_to_bytes, upload, enhancer=enhancer, strength=strength,
                                                   quality=quality, max_pixels=service.max_pixels)
            except ImageReadError as exc:
                reason = exc.reason.replace(str(upload), "image")
                if "exceeds the limit" in reason:
                    raise HTTPException(413, f"image: {reason}") from None
                raise HTTPException(400, f"image: {reason}{hint}") from None
            except ValueError as exc:  # float pixels outside [0, 1], strength the model cannot take
                raise HTTPException(400, " ".join(str(exc).replace(str(upload), "image").split())) from None
            except SiceError as exc:  # the model failed or returned garbage: the server's fault
                logger.error("sice serve: enhancement failed: %s", " ".join(str(exc).split()))
                raise HTTPException(500, "enhancement failed: " + " ".join(str(exc).split())) from None
    return Response(data, media_type=MEDIA_TYPES[fmt], headers={
        "X-Sice-Model": enhancer.name, "X-Sice-Strength": f"{strength:g}",
        "Content-Disposition": f'inline; filename="enhanced.{fmt.lower().replace("jpeg", "jpg")}"'})


async def _receive(request: Request, path: Path, max_bytes: int) -> None:
    """Spool the request body to ``path`` (bounded memory); 400 empty, 413 too large, 415 not an image."""
    size, head = 0, b""
    try:
        # small chunks to the page cache: not worth a thread per write
        with open(path, "wb") as f:
            async for chunk in request.stream():
                if len(head) < 12:
                    head += chunk[:12]
                    if len(head) >= 12 and not _is_image_start(head):
                        raise HTTPException(415, "the body is not a JPEG, PNG, TIFF, BMP or WebP file")
                size += len(chunk)
                if size > max_bytes:
                    raise HTTPException(413, f"body is larger than the limit of {max_bytes} bytes")
                f.write(chunk)
    except ClientDisconnect:
        raise HTTPException(400, "the client disconnected before the body was complete") from None
    if size == 0:
        raise HTTPException(400, "empty body: send the image file as the request body")
    if not _is_image_start(head):
        raise HTTPException(415, "the body is not a JPEG, PNG, TIFF, BMP or WebP file")


def _is_image_start(head: bytes) -> bool:
    """True when ``head`` (the first 12 bytes, or all there is) starts like a file sice reads."""
    return head.startswith(_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def _version() -> str:
    from ..version import __version__

    return __version__
