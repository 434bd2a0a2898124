"""What sice's two HTTP servers share: running uvicorn with limits and timeouts, the loopback
rule, strict JSON bodies and one-line JSON errors.

``sice screen`` (the screening room, :mod:`sice.screening.app`) and ``sice serve`` (the
enhancement API, :mod:`sice.serving.app`) are FastAPI apps built by their own ``create_app``;
this module holds only what both need at the HTTP edge, so that neither copies the other.

How a server stays up under load (measured in docs/screening.md and docs/serving.md):

* **Connections** are capped high (:data:`DEFAULT_MAX_CONNECTIONS`, lowered to fit the
  process's file-descriptor limit): a browser opens six per rater, an idle one costs one file
  descriptor and no thread. uvicorn answers 503 only past this cap.
* **Idle and slow connections are closed**: one that has not sent a complete request head
  within ``header_timeout`` seconds of opening (or of the first byte of its next request) is
  dropped, and uvicorn closes kept-alive ones after ``keep_alive_timeout`` idle seconds.
  uvicorn has no header timeout of its own: a socket that never sends a byte used to stay
  open for ever.
* **Work waits in a queue** rather than being refused: blocking handlers run on a bounded
  thread pool (requests queue for a thread, FIFO); ``sice serve`` adds its own bounded queue
  for CPU work (:class:`sice.serving.app.WorkQueue`).
"""
from __future__ import annotations

import ipaddress
import json
import math
import resource
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # uvicorn/FastAPI are imported where a server is built, not by `sice --help`
    import uvicorn
    from fastapi import FastAPI

#: Host names a loopback server accepts in the ``Host`` header (DNS-rebinding guard).
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
#: Connections served at once; uvicorn answers 503 past this. 30 raters x 6 browser
#: connections is 180; the rest is headroom for idle sockets until their timeout closes them.
DEFAULT_MAX_CONNECTIONS = 1024
#: File descriptors kept free for what requests open (image files, SQLite's 3 files, temp files).
FD_RESERVE = 256
#: Seconds a connection may take to send a complete request head (slowloris guard).
DEFAULT_HEADER_TIMEOUT = 10.0
#: Seconds an idle kept-alive connection stays open after a response. Longer than the idle
#: expiry of common client pools (httpx: 5 s): when both sides give up at the same moment, a
#: client may send a request on a socket the server is closing and see the connection drop.
DEFAULT_KEEP_ALIVE_TIMEOUT = 30.0
#: Request line + headers in bytes, enforced by h11 (chosen explicitly: the httptools parser
#: uvicorn prefers when installed has no such limit). A browser sends about 1 KiB.
DEFAULT_MAX_HEADER_BYTES = 16 * 1024


@dataclass(frozen=True)
class ServerLimits:
    """Connection limits and timeouts of a sice HTTP server (see the module notes)."""

    max_connections: int = DEFAULT_MAX_CONNECTIONS
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES

    def __post_init__(self):
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {self.max_connections}")
        if not self.header_timeout > 0 or not self.keep_alive_timeout > 0:
            raise ValueError("header_timeout and keep_alive_timeout must be > 0 seconds")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def server_config(app: Any, *, host: str = "127.0.0.1", port: int = 0,
                  limits: ServerLimits = ServerLimits()) -> "uvicorn.Config":
    """The uvicorn configuration every sice server runs with.

    Parameters
    ----------
    app : ASGI app
        A FastAPI app from one of sice's ``create_app`` factories.
    host, port : str, int
        Where to listen (ignored when the server is started with ``sockets=``).
    limits : ServerLimits
        Connection cap and timeouts; the cap is lowered to fit the file-descriptor limit.
    """
    import uvicorn

    return uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False,
        http=_header_timeout_protocol(limits.header_timeout),
        h11_max_incomplete_event_size=limits.max_header_bytes,
        limit_concurrency=min(limits.max_connections, _descriptor_budget()),
        timeout_keep_alive=limits.keep_alive_timeout,
    )


def run_server(app: Any, *, host: str, port: int, limits: ServerLimits = ServerLimits()) -> None:
    """Serve ``app`` until Ctrl+C, with :func:`server_config`'s limits.

    Raises the soft file-descriptor limit to the hard one first (as nginx does), so that the
    connection cap is not the 1024 descriptors most systems start a process with.
    """
    import uvicorn

    raise_descriptor_limit()
    uvicorn.Server(server_config(app, host=host, port=port, limits=limits)).run()


def raise_descriptor_limit(target: int = 65536) -> int:
    """Raise the soft ``RLIMIT_NOFILE`` towards ``target`` (never past the hard limit); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = target if hard == resource.RLIM_INFINITY else min(target, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    return soft


def _descriptor_budget() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return DEFAULT_MAX_CONNECTIONS
    return max(16, soft - FD_RESERVE)


def _header_timeout_protocol(header_timeout: float) -> type:
    """uvicorn's h11 protocol plus a request-head timeout.

    Written by hand because uvicorn has none: a connection that never sends a byte is kept for
    ever, and one that sends a byte after a response stops the keep-alive timer. The timer runs
    from the moment a connection opens, and from the first byte of each later request (the
    idle time between requests is the keep-alive timeout's business). When it fires and the
    client has still not sent a complete request head (h11's ``their_state`` is IDLE and no
    response is in progress), the connection is closed.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutH11Protocol(H11Protocol):
        _head_timer = None

        def connection_made(self, transport):
            super().connection_made(transport)
            self._head_timer = self.loop.call_later(header_timeout, self._head_timeout)

        def data_received(self, data):
            if self._head_timer is None and self._idle():
                self._head_timer = self.loop.call_later(header_timeout, self._head_timeout)
            super().data_received(data)
            if self._head_timer is not None and not self._idle():
                self._head_timer.cancel()
                self._head_timer = None

        def connection_lost(self, exc):
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            super().connection_lost(exc)

        def _idle(self) -> bool:
            """No complete request head since the last response, and no response in progress."""
            busy = self.cycle is not None and not self.cycle.response_complete
            return not busy and self.conn.their_state is h11.IDLE

        def _head_timeout(self):
            self._head_timer = None
            if self._idle() and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutH11Protocol


class HeadLimitMiddleware:
    """ASGI middleware: 431 (one-line JSON) for a request whose target and headers exceed ``max_bytes``.

    Written by hand because neither Starlette nor uvicorn caps the total header size (h11's
    limit only applies while a request is incomplete in its buffer).
    """

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
            size += sum(len(k) + len(v) for k, v in scope["headers"])
            if size > self.max_bytes:
                from starlette.responses import JSONResponse

                detail = f"request target and headers are larger than {self.max_bytes} bytes"
                await JSONResponse({"detail": detail}, status_code=431)(scope, receive, send)
                return
        await self.app(scope, receive, send)


# ------------------------------------------------------------------------------------------
# Strict JSON and one-line errors
# ------------------------------------------------------------------------------------------
class JsonBodyError(ValueError):
    """A request body that is not strict JSON (RFC 8259): its message says what is wrong."""


def parse_json_strict(raw: bytes) -> Any:
    """Parse a request body as strict JSON: UTF-8, no NaN/Infinity, no lone surrogates.

    Python's ``json.loads`` accepts the literals ``NaN``, ``Infinity`` and ``-Infinity`` and
    ``\\ud800``-style escapes of lone surrogates; neither is JSON (RFC 8259 sections 6 and 8.2),
    and both used to travel on until something (a JSON response, SQLite's UTF-8 encoder)
    failed with a 500.

    Raises
    ------
    JsonBodyError
        With a one-line message naming the problem.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonBodyError(f"body is not UTF-8 (invalid byte at offset {exc.start})") from None

    def refuse_constant(name: str):
        raise JsonBodyError(f"{name} is not a JSON value (JSON has no NaN or Infinity)")

    try:
        value = json.loads(text, parse_constant=refuse_constant)
        _refuse_surrogates(value)
    except json.JSONDecodeError as exc:
        raise JsonBodyError(f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise JsonBodyError("body is nested too deeply") from None
    return value


def _refuse_surrogates(value: Any) -> None:
    # An escaped lone surrogate decodes to a str that cannot be encoded as UTF-8.
    if isinstance(value, str):
        if any("\ud800" <= ch <= "\udfff" for ch in value):
            raise JsonBodyError("body holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is not Unicode text")
    elif isinstance(value, dict):
        for k, v in value.items():
            _refuse_surrogates(k)
            _refuse_surrogates(v)
    elif isinstance(value, list):
        for v in value:
            _refuse_surrogates(v)
    elif isinstance(value, float) and not math.isfinite(value):  # 1e999 parses as inf
        raise JsonBodyError("body holds a number too large for a float (JSON numbers must be finite)")


def validation_message(errors: list[dict]) -> str:
    """One line from pydantic/FastAPI validation errors: ``where: what; ...``.

    The rejected input itself is left out: it may not be representable as JSON (FastAPI's own
    422 echoes it, which is how a NaN in a request became a 500).
    """
    parts = []
    for err in errors:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
    return " ".join(("; ".join(parts) or "invalid request").split())


def install_json_errors(app: "FastAPI") -> None:
    """Make request-validation errors one-line JSON: ``{"detail": "strength: Input should be ..."}``."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    @app.exception_handler(RequestValidationError)
    async def request_validation_error(request, exc: RequestValidationError):
        return JSONResponse({"detail": validation_message(exc.errors())}, status_code=422)
