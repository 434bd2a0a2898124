"""The screening web app: a FastAPI factory over the vote store and the dataset folder.

HTTP API (all JSON except the images; ``scene`` is the URL-encoded scene folder name)::

    GET  /                                        the page (static HTML, no names in it)
    GET  /api/scenes?rater=R                      scene list, which ones R voted on, where to resume
    GET  /api/scenes/{scene}?rater=R              blind candidates in R's order, source frames, R's vote
    GET  /api/scenes/{scene}/candidates/{id}      a candidate image, by opaque id
    GET  /api/scenes/{scene}/frames/{k}           the k-th source frame (0-based)
    POST /api/votes  {"rater", "scene", "candidate": id | null}   null = "none acceptable"

Blind: candidate names (generators) never leave the server: ids are keyed hashes (see
:meth:`VoteStore.opaque_id`), images are served without a file name, and the order is a
keyed shuffle per (rater, scene). The page is static and puts every name it receives into
the DOM as text (``textContent``), and the Content-Security-Policy forbids inline script, so
a scene called ``<script>`` is shown, not run.

Only files found by :func:`sice.screening.scenes.list_scenes` are served: they are looked up
by scene name and index/id in that listing, never built from a request path, and their real
path is checked to be inside the dataset again when served (a file swapped for a symlink out
after startup is refused). Request bodies are capped (``max_body_size``) and the Host header
must name the loopback interface unless the server is deliberately exposed
(``allowed_hosts``), which blocks DNS-rebinding pages from voting through a rater's browser.
A vote's body must be strict JSON (:func:`sice.webserver.parse_json_strict`): NaN, Infinity
and lone surrogates get a 400 naming the problem, a wrong content type 415.

The server's connection limits and timeouts are :mod:`sice.webserver`'s (``sice screen`` runs
it with :func:`sice.webserver.run_server`).
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, ValidationError
from starlette.middleware.trustedhost import TrustedHostMiddleware

from ..errors import SiceError
from ..io import format_for_path, read_image, write_image
from ..webserver import (LOOPBACK_HOSTS, HeadLimitMiddleware, JsonBodyError, install_json_errors, parse_json_strict,
                         validation_message)
from .scenes import ScreeningScene, inside, list_scenes
from .store import DB_NAME, MAX_RATER_LENGTH, VoteStore, normalise_rater

STATIC_DIR = Path(__file__).with_name("static")
#: A vote is ~200 bytes of JSON; anything much larger is not a vote.
DEFAULT_MAX_BODY = 4096
DEFAULT_MAX_HEAD = 8192  # request target + headers; a browser sends about 1 KiB
# Formats every browser displays; others (TIFF) are converted to PNG when served.
_BROWSER_FORMATS = {"JPEG", "PNG", "BMP", "WEBP"}

_SECURITY_HEADERS = {
    # No inline script or style, nothing from elsewhere: an injected name cannot run code.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

Rater = Annotated[str, Query(min_length=1, max_length=4 * MAX_RATER_LENGTH)]


class VoteIn(BaseModel):
    rater: str = Field(min_length=1, max_length=4 * MAX_RATER_LENGTH)
    scene: str = Field(min_length=1, max_length=1024)
    candidate: str | None = Field(max_length=64)  # opaque id; None = "none acceptable"


async def strict_vote(request: Request) -> VoteIn:
    """The vote in the request body, parsed as strict JSON (400/415/422 with a one-line detail).

    FastAPI's own body parsing accepts NaN and lone surrogates and then fails with a 500 when
    it echoes them in its 422 or when SQLite encodes them.
    """
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        # also what stops a cross-site form (text/plain needs no CORS preflight) from voting
        raise HTTPException(415, "a vote must be sent as application/json")
    try:
        data = parse_json_strict(await request.body())
    except JsonBodyError as exc:
        raise HTTPException(400, str(exc)) from None
    try:
        return VoteIn.model_validate(data)
    except ValidationError as exc:
        raise HTTPException(422, validation_message(exc.errors())) from None


def create_app(dataset_dir: os.PathLike | str, *, db_path: os.PathLike | str | None = None,
               allowed_hosts: tuple[str, ...] | None = LOOPBACK_HOSTS,
               max_body_size: int = DEFAULT_MAX_BODY, max_head_size: int = DEFAULT_MAX_HEAD) -> FastAPI:
    """Build the screening app for one dataset.

    Parameters
    ----------
    dataset_dir : path-like
        A dataset folder with ``candidates/<scene>/<name>.png`` (see :mod:`sice.screening.scenes`).
        Scenes are listed once, here: restart the server to pick up new candidates.
    db_path : path-like, optional
        The vote database; default ``dataset_dir/screening.sqlite`` (created when missing).
    allowed_hosts : tuple of str or None
        Host names the ``Host`` header may carry; None accepts any (for a server deliberately
        bound to a non-loopback address).
    max_body_size : int
        Largest request body in bytes; larger ones get 413.
    max_head_size : int
        Largest request target plus headers in bytes; larger ones get 431.

    Raises
    ------
    DatasetError
        If the folder has no candidates or the database cannot be opened.
    """
    screening = Screening.open(dataset_dir, db_path)
    app = FastAPI(title="sice screening", docs_url=None, redoc_url=None, openapi_url=None,
                  max_body_size=max_body_size)
    app.state.store = screening.store
    app.state.scenes = screening.scenes
    _install_guards(app, allowed_hosts, max_head_size)
    app.include_router(_page_routes())
    app.include_router(_scene_routes(screening))
    app.include_router(_vote_routes(screening))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


@dataclasses.dataclass
class Screening:
    """What the routes share: the dataset's scenes (listed once), the vote store, and the
    lookups from what a request names to a listed file (404 when it names none)."""

    root: Path
    scenes: list[ScreeningScene]
    store: VoteStore
    by_name: dict[str, ScreeningScene]
    #: scene -> {opaque id: candidate name}: the only way back from what the browser sends.
    names_by_id: dict[str, dict[str, str]]

    @classmethod
    def open(cls, dataset_dir: os.PathLike | str, db_path: os.PathLike | str | None) -> Screening:
        root = Path(dataset_dir).resolve()
        scenes = list_scenes(root)
        store = VoteStore(Path(db_path) if db_path is not None else root / DB_NAME)
        names_by_id = {s.name: {store.opaque_id(s.name, n): n for n in s.candidates} for s in scenes}
        return cls(root, scenes, store, {s.name: s for s in scenes}, names_by_id)

    def rater(self, rater: str) -> str:
        try:
            return normalise_rater(rater)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None

    def scene(self, name: str) -> ScreeningScene:
        scene = self.by_name.get(name)
        if scene is None:
            raise HTTPException(404, "unknown scene")
        return scene

    def candidate(self, scene: ScreeningScene, cid: str) -> str:
        name = self.names_by_id[scene.name].get(cid)
        if name is None:
            raise HTTPException(404, "unknown candidate")
        return name

    def serve(self, path: Path) -> Response:
        """A listed image file, if its real path is still inside the dataset (403 otherwise)."""
        real = inside(path, self.root)
        if real is None:
            raise HTTPException(403, "file is not inside the dataset")
        if format_for_path(real) in _BROWSER_FORMATS:
            # No filename=: a Content-Disposition would name the generator.
            return FileResponse(real, headers={"Cache-Control": "private, max-age=3600"})
        return Response(_as_png(real), media_type="image/png")


def _install_guards(app: FastAPI, allowed_hosts: tuple[str, ...] | None, max_head_size: int) -> None:
    """One-line JSON errors, the Host and head-size checks, security headers, 503 on SiceError."""
    install_json_errors(app)
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    app.add_middleware(HeadLimitMiddleware, max_bytes=max_head_size)  # added last = runs first

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.update(_SECURITY_HEADERS)
        if request.url.path.startswith("/api/") and "image" not in response.headers.get("content-type", ""):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(SiceError)
    async def sice_error(request: Request, exc: SiceError):
        # Database or image trouble on the server's side; for a vote it means the vote was NOT
        # stored, and the page must not show it as saved.
        return JSONResponse({"detail": " ".join(str(exc).split())}, status_code=503)


def _page_routes() -> APIRouter:
    """The static page."""
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @router.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)  # none; saves a 404 in every browser console

    return router


def _scene_routes(screening: Screening) -> APIRouter:
    """Health, the scene list, a scene for one rater, and its candidate and frame images."""
    router = APIRouter()
    scenes, store = screening.scenes, screening.store

    @router.get("/api/health")
    def health() -> dict:
        return {"ok": True, "scenes": len(scenes)}

    @router.get("/api/scenes")
    def scene_list(rater: Rater) -> dict:
        rater = screening.rater(rater)
        voted = {scene for _, scene in store.latest_votes(rater)}
        rows = [{"name": s.name, "voted": s.name in voted} for s in scenes]
        resume = next((i for i, row in enumerate(rows) if not row["voted"]), max(len(rows) - 1, 0))
        return {"rater": rater, "total": len(rows), "done": sum(r["voted"] for r in rows),
                "resume": resume, "scenes": rows}

    @router.get("/api/scenes/{scene}")
    def scene_detail(scene: str, rater: Rater) -> dict:
        rater = screening.rater(rater)
        s = screening.scene(scene)
        order = store.display_order(rater, s.name, list(s.candidates))
        votes = store.latest_votes(rater)
        candidates = [{"id": store.opaque_id(s.name, name), "label": _letter(i)} for i, name in enumerate(order)]
        frames = [{"index": k, "label": p.name} for k, p in enumerate(s.frames)]
        current = {"voted": False, "candidate": None}
        if (rater, s.name) in votes:  # a vote of None is "none acceptable", not "no vote"
            name = votes[rater, s.name]
            current = {"voted": True, "candidate": None if name is None else store.opaque_id(s.name, name)}
        return {"name": s.name, "index": scenes.index(s), "total": len(scenes), "candidates": candidates,
                "frames": frames, "vote": current}

    @router.get("/api/scenes/{scene}/candidates/{cid}")
    def candidate_image(scene: str, cid: str) -> Response:
        s = screening.scene(scene)
        return screening.serve(s.candidates[screening.candidate(s, cid)])

    @router.get("/api/scenes/{scene}/frames/{k}")
    def frame_image(scene: str, k: int) -> Response:
        s = screening.scene(scene)
        if not 0 <= k < len(s.frames):
            raise HTTPException(404, "unknown frame")
        return screening.serve(s.frames[k])

    return router


def _vote_routes(screening: Screening) -> APIRouter:
    """Recording a vote (strict JSON body)."""
    router = APIRouter()

    @router.post("/api/votes")
    def vote(body: Annotated[VoteIn, Depends(strict_vote)]) -> dict:
        rater = screening.rater(body.rater)
        s = screening.scene(body.scene)
        name = None if body.candidate is None else screening.candidate(s, body.candidate)
        stored = screening.store.record(rater, s.name, name)  # returns after the durable commit
        done = sum(sc in screening.by_name for _, sc in screening.store.latest_votes(rater))
        return {"ok": True, "scene": s.name, "candidate": body.candidate, "time": stored.time,
                "done": done, "total": len(screening.scenes)}

    return router


def _letter(i: int) -> str:
    """A, B, ..., Z, AA, AB, ... (spreadsheet column names) for the i-th shown candidate."""
    out = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        out = chr(65 + r) + out
    return out


def _as_png(path: Path) -> bytes:
    """PNG bytes of an image browsers cannot show (TIFF), decoded and encoded by ``sice.io``."""
    image = read_image(path)
    with tempfile.TemporaryDirectory(prefix="sice-screen-") as tmp:
        out = write_image(Path(tmp) / "frame.png", image.pixels)
        return out.read_bytes()
