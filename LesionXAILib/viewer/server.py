"""Starting the viewer's trame server: localhost by default, no browser, the URL printed once it listens.

Besides the page, the server answers ``GET /lesionxai/state`` with :meth:`LesionViewer.snapshot` as JSON
(selection, timings, view geometry, memory) for scripts, tests and the benchmark. It reveals nothing
the page does not show, and like the page it is reachable only from the bound host.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:
    from LesionXAILib.viewer.app import LesionViewer

STATE_ROUTE = "/lesionxai/state"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
URL_PREFIX = "LesionXAI viewer running at "


def viewer_url(host: str, port: int) -> str:
    """Return the page URL for a bound host and port (IPv6 hosts in brackets; a wildcard bind shown as localhost)."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{int(port)}/"


def add_routes(app: Any, viewer: "LesionViewer") -> None:
    """Register the state endpoint on the aiohttp application of the trame server."""
    from aiohttp import web

    async def state(_request: Any) -> Any:
        return web.json_response(viewer.snapshot(), dumps=lambda obj: json.dumps(obj, default=str))

    app.router.add_get(STATE_ROUTE, state)


def serve(
    viewer: "LesionViewer",
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    on_url: Optional[Callable[[str], None]] = None,
) -> None:
    """Run the viewer's server until it is stopped (blocking); call ``on_url(url)`` once it accepts connections."""

    def ready(**_: Any) -> None:
        viewer.url = viewer_url(host, viewer.server.port)
        (on_url or _print_url)(viewer.url)

    viewer.server.controller.on_server_ready.add(ready)
    # trame parses sys.argv for its own options; the viewer's options were parsed already and must not leak
    # into trame's (e.g. a user's --port would be read twice, --timeout not at all)
    argv = sys.argv
    sys.argv = argv[:1]
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
