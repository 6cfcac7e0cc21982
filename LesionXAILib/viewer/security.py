"""What the viewer's web server accepts: one secret per launch, its own address only, small messages, checked state.

trame and wslink serve any page that knows wslink's public default secret and accept any ``Origin``
and any ``Host``; after authentication wslink lets a client announce messages of up to 4 GB, which it
allocates before the bytes arrive. This module closes those doors for the viewer's server:

- **secret**: a random token per launch (:func:`new_secret`), handed to the browser in the printed URL
  (``?secret=...``; trame's page removes it from the address bar) and required by the websocket
  handshake and by the state endpoint;
- **Host and Origin** (:func:`request_refusal`): every HTTP request must name this server in ``Host:``
  (an IP literal, ``localhost``, this machine's name or the ``--host`` given, with the port it arrived
  on), so a page whose domain re-resolves to 127.0.0.1 (DNS rebinding) is refused; a websocket
  handshake must also carry an ``Origin`` equal to that address, so a page on another site cannot
  open one;
- **message size** (:class:`CappedUnChunker`): a client message, and all messages a client has
  announced but not finished, may total at most :data:`MAX_CLIENT_MESSAGE_BYTES`; a larger claim
  closes that socket before anything is allocated;
- **state** (:class:`StateGuard`): a client may change only the values a user can change in the page
  (overlay, opacity, table sort; the slice sliders belong to trame-slicer), each checked; a bad value
  is refused, the last good value is pushed back and the panel shows why;
- **errors** (:func:`guard_rpc`): an exception in any call a client makes is logged here and shown in
  the panel as one line; the client never receives a Python traceback.

wslink offers no hooks for the last three: :func:`harden_wslink` wraps its handler's entry points, and
``Testing/test_viewer_security.py`` fails if a wslink update moves them.
"""

from __future__ import annotations

import functools
import hmac
import inspect
import ipaddress
import logging
import math
import secrets
import socket
from typing import Any, Callable, Mapping, Optional
from urllib.parse import urlsplit

log = logging.getLogger("LesionXAILib.viewer")

# the page sends small JSON-like updates (a slider value, a sort order); nothing near this size
MAX_CLIENT_MESSAGE_BYTES = 1 << 20
# unfinished messages one client may have announced at once
MAX_PENDING_MESSAGES = 4
SECRET_PARAMETER = "secret"
LOCAL_NAMES = ("localhost",)


def new_secret() -> str:
    """Return a fresh random session secret (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def secret_matches(given: Any, secret: str) -> bool:
    """Return True if ``given`` equals the session secret (constant-time comparison)."""
    return isinstance(given, str) and hmac.compare_digest(given.encode(), secret.encode())


def _split_host(value: str) -> tuple[str, Optional[int]]:
    """Return (host, port or None) of a ``Host:`` value or URL netloc; IPv6 brackets removed."""
    parts = urlsplit("//" + value)
    try:
        port = parts.port
    except ValueError:
        port = -1  # malformed port: never equal to a real one
    return (parts.hostname or "").lower(), port


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def machine_names() -> set[str]:
    """Return the names this machine answers to (for a server bound to a wildcard or external address)."""
    names = set(LOCAL_NAMES)
    for name in (socket.gethostname(), socket.getfqdn()):
        if name:
            names.add(name.lower())
    return names


def host_allowed(host_header: Optional[str], port: int, bound_host: str = "") -> bool:
    """Return True if a ``Host:`` header names this server: an IP literal or a name of this machine, and ``port``.

    DNS rebinding needs a domain name the attacker controls, so names are accepted only if they are
    this machine's own (or the host the server was told to bind); IP literals cannot be rebound.
    """
    if not host_header:
        return False
    host, given_port = _split_host(host_header)
    if given_port is None:
        given_port = 80
    if given_port != int(port) or not host:
        return False
    if _is_ip_literal(host):
        return True
    return host in machine_names() or (bool(bound_host) and host == bound_host.lower().strip("[]"))


def origin_allowed(origin: Optional[str], host_header: Optional[str]) -> bool:
    """Return True if a websocket ``Origin`` is this server's own page (http, same host and port as ``Host:``)."""
    if not origin or not host_header:
        return False
    parts = urlsplit(origin)
    if parts.scheme != "http" or parts.path not in ("", "/"):  # the viewer serves plain HTTP only
        return False
    try:
        origin_port = parts.port or 80
    except ValueError:
        return False
    host, port = _split_host(host_header)
    return (parts.hostname or "").lower() == host and origin_port == (port or 80)


def request_refusal(
    headers: Mapping[str, str], local_port: int, bound_host: str = "", websocket: bool = False
) -> Optional[str]:
    """Return why a request must be refused (a short reason), or None if it may be served."""
    host = headers.get("Host")
    if not host_allowed(host, local_port, bound_host):
        return f"foreign Host header {host!r}"
    if websocket and not origin_allowed(headers.get("Origin"), host):
        return f"cross-origin websocket (Origin {headers.get('Origin')!r})"
    return None


def guard_middleware(bound_host: str = "") -> Callable:
    """Return an aiohttp middleware refusing (403) requests that :func:`request_refusal` rejects."""
    from aiohttp import web

    @web.middleware
    async def guard(request: Any, handler: Callable) -> Any:
        sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
        port = int(sockname[1]) if sockname else -1
        websocket = request.headers.get("Upgrade", "").lower() == "websocket"
        reason = request_refusal(request.headers, port, bound_host, websocket)
        if reason is not None:
            log.warning("refused %s %s from %s: %s", request.method, request.path, request.remote, reason)
            raise web.HTTPForbidden(text="LesionXAI viewer: request refused\n")
        return await handler(request)

    return guard


class MessageTooLarge(ValueError):
    """A client announced more bytes than the viewer accepts."""


def capped_unchunker_class() -> type:
    """Return :class:`CappedUnChunker` (built on wslink's UnChunker, imported lazily)."""
    from wslink.chunking import HEADER_LENGTH, UnChunker, _decode_header

    class CappedUnChunker(UnChunker):
        """wslink's chunk reassembly with a hard cap on each message and on all unfinished ones of a client."""

        def __init__(self, cap: int = MAX_CLIENT_MESSAGE_BYTES, max_pending: int = MAX_PENDING_MESSAGES) -> None:
            super().__init__()
            self.cap = int(cap)
            self.max_pending = int(max_pending)
            self.max_message_size = min(self.max_message_size, self.cap)

        def set_max_message_size(self, size: int) -> None:
            # wslink raises the limit to 4 GB once a client authenticates; keep ours
            self.max_message_size = min(int(size), self.cap)

        def process_chunk(self, chunk: bytes) -> Any:
            if len(chunk) < HEADER_LENGTH:
                raise MessageTooLarge(f"websocket chunk of {len(chunk)} bytes has no wslink header")
            msg_id, _offset, total = _decode_header(chunk[:HEADER_LENGTH])
            if msg_id not in self.pending_messages:
                pending = sum(len(p["content"]) for p in self.pending_messages.values())
                if total > self.max_message_size or pending + total > self.cap:
                    raise MessageTooLarge(f"client message of {total} bytes exceeds the {self.cap}-byte limit")
                if len(self.pending_messages) >= self.max_pending:
                    raise MessageTooLarge(f"more than {self.max_pending} unfinished client messages")
            return super().process_chunk(chunk)

    return CappedUnChunker


# ------------------------------------------------------------------ client state


def _overlay_checker(available: Callable[[], Any]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        names = tuple(available() or ())
        if not isinstance(value, str) or value not in names:
            raise ValueError(f"unknown overlay {str(value)[:40]!r} (available: {', '.join(names)})")
        return value

    return check


def check_opacity(value: Any) -> float:
    """Return an opacity in [0, 1] from a client value, or raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"opacity must be a number in 0..1, got {str(value)[:40]!r}")
    value = float(value)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"opacity must be a number in 0..1, got {value!r}")
    return value


def sort_checker(columns: Any) -> Callable[[Any], Any]:
    """Return a checker of the table's sort state: a short list of {key: a column, order: asc|desc}."""
    keys = set(columns)

    def check(value: Any) -> Any:
        if not isinstance(value, list) or len(value) > len(keys):
            raise ValueError("table sort must be a list of columns")
        for item in value:
            if not isinstance(item, dict) or item.get("key") not in keys or item.get("order", "asc") not in ("asc", "desc"):
                raise ValueError(f"bad table sort entry {str(item)[:60]!r}")
        return value

    return check


class StateGuard:
    """Checks state changes sent by clients: known keys through their checker, the server's own keys refused.

    ``checkers`` maps a key a user may change to a function returning the value to keep (or raising
    ValueError); keys starting with ``owned_prefix`` and not in ``checkers`` belong to the server.
    Other keys (trame's and trame-slicer's widgets) pass unchanged.
    """

    def __init__(self, checkers: Mapping[str, Callable[[Any], Any]], owned_prefix: str = "lx_") -> None:
        self.checkers = dict(checkers)
        self.owned_prefix = owned_prefix

    def filter(self, changes: Any) -> tuple[list[dict], list[tuple[str, str]]]:
        """Return (accepted changes, [(key, reason)] refused) of a ``trame.state.update`` argument."""
        accepted: list[dict] = []
        refused: list[tuple[str, str]] = []
        if not isinstance(changes, list):
            return accepted, [("", "state update is not a list")]
        for change in changes:
            if not isinstance(change, dict) or not isinstance(change.get("key"), str):
                refused.append(("", "malformed state change"))
                continue
            key = change["key"]
            checker = self.checkers.get(key)
            if checker is not None:
                try:
                    accepted.append({"key": key, "value": checker(change.get("value"))})
                except (ValueError, TypeError) as exc:
                    refused.append((key, str(exc)))
            elif key.startswith(self.owned_prefix):
                refused.append((key, "set by the server only"))
            else:
                accepted.append(change)
        return accepted, refused


def guard_rpc(func: Callable, on_error: Callable[[str, BaseException], None], name: str) -> Callable:
    """Return ``func`` (a wslink RPC) wrapped so that an exception is reported to ``on_error`` and returns None."""

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = func(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return result
        except Exception as exc:  # never to the client: wslink would send it the traceback
            log.exception("client call %s failed", name)
            on_error(name, exc)
            return None

    return wrapper


def harden_wslink(
    wslink_server: Any,
    guard: StateGuard,
    on_refused: Callable[[list[tuple[str, str]]], None],
    on_error: Callable[[str, BaseException], None],
    cap: int = MAX_CLIENT_MESSAGE_BYTES,
) -> int:
    """Cap client messages, filter state updates and guard every RPC of the server's websocket handlers; return how many."""
    unchunker = capped_unchunker_class()
    handlers = list(getattr(wslink_server, "_ws_handlers", []))
    if not handlers:
        raise RuntimeError("wslink's websocket handlers were not found: the viewer cannot be secured with this wslink")
    for handler in handlers:
        _cap_messages(handler, unchunker, cap)
        for uri, (obj, func) in list(handler.functionMap.items()):
            if uri == "trame.state.update":
                func = _filtered_state_update(func, guard, on_refused)
            handler.functionMap[uri] = (obj, guard_rpc(func, on_error, uri))
    return len(handlers)


def _cap_messages(handler: Any, unchunker: type, cap: int) -> None:
    original = handler.onConnect

    async def on_connect(request: Any, client_id: str) -> None:
        await original(request, client_id)
        handler.unchunkers[client_id] = unchunker(cap)

    handler.onConnect = on_connect


def _filtered_state_update(func: Callable, guard: StateGuard, on_refused: Callable) -> Callable:
    def update_state(protocol: Any, changes: Any) -> Any:
        accepted, refused = guard.filter(changes)
        if refused:
            on_refused(refused)
        if accepted:
            return func(protocol, accepted)
        return None

    return update_state
