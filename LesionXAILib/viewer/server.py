"""Starting the viewer's trame server: localhost by default, no browser, the URL printed once it listens.

Besides the page, the server answers ``GET /lesionxai/state?secret=...`` with :meth:`LesionViewer.snapshot`
as JSON (selection, timings, view geometry, memory) for scripts, tests and the benchmark. It reveals
nothing the page does not show and, like the websocket, needs the launch's secret (printed in the URL);
what else the server accepts is :mod:`LesionXAILib.viewer.security`.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, Callable, Optional
from urllib.parse import quote

from LesionXAILib.viewer.security import SECRET_PARAMETER, secret_matches

if TYPE_CHECKING:
    from LesionXAILib.viewer.app import LesionViewer

STATE_ROUTE = "/lesionxai/state"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
URL_PREFIX = "LesionXAI viewer running at "


def viewer_url(host: str, port: int, secret: Optional[str] = None) -> str:
    """Return the page URL for a bound host and port (IPv6 hosts in brackets; a wildcard bind shown as localhost).

    With ``secret`` the URL carries it as ``?secret=``: the page hands it to the websocket handshake.
    """
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    if ":" in shown:
        shown = f"[{shown}]"
    url = f"http://{shown}:{int(port)}/"
    return f"{url}?{SECRET_PARAMETER}={quote(secret)}" if secret else url


def add_routes(app: Any, viewer: "LesionViewer") -> None:
    """Register the state endpoint on the aiohttp application of the trame server."""
    from aiohttp import web

    async def state(request: Any) -> Any:
        if not secret_matches(request.query.get(SECRET_PARAMETER), viewer.secret):
            raise web.HTTPForbidden(text="LesionXAI viewer: the state needs the session secret\n")
        return web.json_response(viewer.snapshot(), dumps=lambda obj: json.dumps(obj, default=str))

    app.router.add_get(STATE_ROUTE, state)


def trame_argv(program: list[str], secret: str) -> list[str]:
    """Return the command line trame parses: the program name and the session secret, nothing of the viewer's own.

    The secret is joined to its option with ``=``: a URL-safe token starts with ``-`` once in 64 launches and
    argparse would then read it as an option of its own ("--authKey: expected one argument").
    """
    return [*program, f"--authKey={secret}"]


def serve(
    viewer: "LesionViewer",
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    on_url: Optional[Callable[[str], None]] = None,
) -> None:
    """Run the viewer's server until it is stopped (blocking); call ``on_url(url)`` once it accepts connections."""

    def ready(**_: Any) -> None:
        viewer.url = viewer_url(host, viewer.server.port)
        (on_url or _print_url)(viewer_url(host, viewer.server.port, viewer.secret))

    viewer.bind_host = host
    viewer.server.controller.on_server_ready.add(ready)
    # trame parses sys.argv for its own options; the viewer's options were parsed already and must not leak
    # into trame's (e.g. a user's --port would be read twice, --timeout not at all). The secret goes to
    # wslink this way (the process's own command line, /proc/PID/cmdline, is not changed by it).
    argv = sys.argv
    sys.argv = trame_argv(argv[:1], viewer.secret)
    try:
        viewer.server.start(
            host=host,
            port=int(port),
            open_browser=False,
            show_connection_info=False,
            timeout=0,  # wslink would otherwise exit 300 s after the last browser tab closed
            disable_logging=True,
        )
    finally:
        sys.argv = argv
        viewer.close()


def _print_url(url: str) -> None:
    print(f"{URL_PREFIX}{url}  (Ctrl+C to stop)", flush=True)
