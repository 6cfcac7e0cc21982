"""What the viewer's server accepts, tried as a hostile client would, over real sockets on 127.0.0.1.

The real ``lesionxai view`` (phantom + demo model) runs as a subprocess; a raw wslink client written
here (aiohttp websocket + msgpack + wslink's chunk header) speaks to it the way trame's page does, with
whatever Origin, Host, secret and payload a test chooses. Memory is the server's own /proc figure.
"""

from __future__ import annotations

import asyncio
import json
import math
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional

import pytest

pytestmark = [pytest.mark.slicer]

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
MiB = 1 << 20


@pytest.fixture(scope="module")
def server():
    """The viewer on the default phantom, small settings (fast lesions); always stopped by its PID."""
    pytest.importorskip("trame_slicer")
    pytest.importorskip("aiohttp")
    from support.viewer_harness import serving

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    args = ["--samples", "2", "--max-radius-mm", "3", "--methods", "smoothgrad", "--no-3d"]
    with serving(args, ARTIFACTS / "viewer-security-server.log") as srv:
        yield srv


class WslinkClient:
    """A minimal wslink client: chunked msgpack frames in and out, like trame's page."""

    def __init__(self, ws: Any) -> None:
        from wslink.chunking import UnChunker

        self.ws = ws
        self.unchunker = UnChunker()
        self.unchunker.set_max_message_size(64 * MiB)
        self.serial = 0
        self.client_id = "c0"

    async def send(self, method: str, args: list, rpc_id: Optional[str] = None) -> str:
        import msgpack
        from wslink.chunking import generate_chunks

        self.serial += 1
        rpc_id = rpc_id or f"rpc:{self.client_id}:{self.serial}"
        packed = msgpack.packb({"wslink": "1.0", "id": rpc_id, "method": method, "args": args, "kwargs": {}})
        for chunk in generate_chunks(packed, 4 * MiB):
            await self.ws.send_bytes(chunk)
        return rpc_id

    async def reply(self, rpc_id: str, timeout: float = 30.0) -> dict:
        """Return the reply to ``rpc_id`` (published state messages in between are skipped)."""
        import aiohttp

        while True:
            msg = await self.ws.receive(timeout=timeout)
            if msg.type != aiohttp.WSMsgType.BINARY:
                raise ConnectionError(f"websocket closed or unexpected frame: {msg.type}")
            message = self.unchunker.process_chunk(msg.data)
            if message is not None and message.get("id") == rpc_id:
                return message

    async def call(self, method: str, args: list) -> dict:
        return await self.reply(await self.send(method, args))

    async def hello(self, secret: str) -> dict:
        reply = await self.reply(await self.send("wslink.hello", [{"secret": secret}], rpc_id="system:c0:0"))
        if "result" in reply:
            self.client_id = reply["result"]["clientID"]
        return reply


def _headers(server, origin: Optional[str] = "same", host: Optional[str] = None) -> dict:
    host = host or f"127.0.0.1:{server.port}"
    headers = {"Host": host}
    if origin == "same":
        headers["Origin"] = f"http://{host}"
    elif origin is not None:
        headers["Origin"] = origin
    return headers


async def _session(server, work, origin: Optional[str] = "same", host: Optional[str] = None):
    """Open a websocket to the server with the given headers and run ``work(client)``; return its result."""
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"ws://127.0.0.1:{server.port}/ws", headers=_headers(server, origin, host)) as ws:
            return await work(WslinkClient(ws))


def run(coro):
    return asyncio.run(coro)


def _handshake_status(server, origin: Optional[str] = "same", host: Optional[str] = None) -> int:
    """Return 101 if the websocket opened, else the HTTP status the server refused it with."""
    import aiohttp

    async def attempt() -> int:
        try:
            await _session(server, lambda client: asyncio.sleep(0), origin, host)
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
        return 101

    return run(attempt())


def _http_status(url: str, host: Optional[str] = None) -> int:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_printed_url_carries_a_random_secret_that_the_websocket_and_state_require(server):
    from LesionXAILib.viewer.security import new_secret

    assert server.secret and server.secret != "wslink-secret" and len(server.secret) >= 40
    assert new_secret() != new_secret()
    assert server.url.endswith(f"?secret={server.secret}")

    async def hellos(client: WslinkClient) -> tuple:
        wrong = await client.hello("wslink-secret")  # wslink's public default
        right = await client.hello(server.secret)
        return wrong, right

    wrong, right = run(_session(server, hellos))
    assert "error" in wrong and "result" not in wrong
    assert "result" in right and right["result"]["clientID"]
    assert _http_status(f"{server.base_url}lesionxai/state") == 403
    assert _http_status(f"{server.base_url}lesionxai/state?secret=wslink-secret") == 403
    assert server.state()["ready"]


def test_cross_origin_websocket_clients_are_refused(server):
    assert _handshake_status(server) == 101  # the page's own origin
    assert _handshake_status(server, origin=f"http://localhost:{server.port}", host=f"localhost:{server.port}") == 101
    for origin in ("http://evil.example", f"http://evil.example:{server.port}", "null",
                   f"http://127.0.0.1:{server.port + 1}", f"https://127.0.0.1:{server.port}", None):  # fmt: skip
        assert _handshake_status(server, origin=origin) == 403, origin


def test_a_foreign_host_header_is_refused_dns_rebinding(server):
    page = f"{server.base_url}index.html"
    assert _http_status(page) == 200
    for host in (f"evil.example:{server.port}", f"127.0.0.1.nip.io:{server.port}", "127.0.0.1:1", "127.0.0.1"):
        assert _http_status(page, host) == 403, host
        assert _http_status(f"{server.base_url}lesionxai/state?secret={server.secret}", host) == 403, host
        assert _handshake_status(server, host=host, origin=f"http://{host}") == 403, host
    assert "foreign Host header" in server.log_path.read_text()


@pytest.mark.parametrize("authenticated", [False, True])
def test_chunk_claims_beyond_the_cap_close_the_socket_without_allocating(server, authenticated):
    import aiohttp
    from wslink.chunking import _encode_header

    before = server.state()["rss_mb"]

    async def claim(client: WslinkClient) -> tuple:
        if authenticated:
            assert "result" in await client.hello(server.secret)
        # two 26-byte messages, each announcing a 256 MB message (wslink used to allocate both at once)
        for msg_id in (1, 2):
            await client.ws.send_bytes(_encode_header(msg_id, 0, 256 * MiB) + b"\x00" * 14)
        await asyncio.sleep(1.0)
        # measured while this socket would still be open: wslink held the allocation until it closed
        during = await asyncio.get_running_loop().run_in_executor(None, server.state)
        try:
            msg = await client.ws.receive(timeout=20)
        except asyncio.TimeoutError:
            return None, during
        return msg.type, during

    kind, after = run(_session(server, claim))
    grown = after["rss_mb"] - before
    (ARTIFACTS / f"viewer-chunk-claim-rss-{'auth' if authenticated else 'anon'}.json").write_text(
        json.dumps({"rss_before_mb": before, "rss_after_mb": after["rss_mb"], "grown_mb": grown})
    )
    assert grown < 64, f"the server grew by {grown:.0f} MB after a 2 x 256 MB claim"
    assert kind in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR)
    assert "exceeds" in server.log_path.read_text() or "limit" in server.log_path.read_text()
    # and a normal client still works afterwards
    assert run(_session(server, lambda c: c.hello(server.secret)))["result"]


def _wait(server, predicate, timeout: float = 120.0) -> dict:
    return server.wait_for(predicate, timeout=timeout)


def test_bad_state_values_are_refused_and_the_next_good_display_works(server):
    state = server.state()
    overlay, opacity = state["overlay"], state["opacity"]
    refused_before = len(state["refused"])

    async def bad_values(client: WslinkClient) -> list:
        await client.hello(server.secret)
        replies = []
        for key, value in (("lx_opacity", "abc"), ("lx_opacity", 5.0), ("lx_opacity", math.nan), ("lx_opacity", True),
                           ("lx_overlay", "bogus"), ("lx_overlay", ["smoothgrad_flair"]),
                           ("lx_curve_svg", "<img src=x onerror=alert(1)>"), ("lx_rows", "junk"),
                           ("lx_sort", [{"key": "__proto__", "order": "asc"}])):  # fmt: skip
            replies.append(await client.call("trame.state.update", [[{"key": key, "value": value}]]))
        replies.append(await client.call("trame.state.update", ["not a list"]))
        return replies

    replies = run(_session(server, bad_values))
    assert all("error" not in r and "trace" not in json.dumps(r, default=str) for r in replies)
    state = server.state()
    assert state["overlay"] == overlay and state["opacity"] == opacity
    refused = state["refused"][refused_before:]
    assert [r["key"] for r in refused] == ["lx_opacity"] * 4 + ["lx_overlay"] * 2 + ["lx_curve_svg", "lx_rows", "lx_sort", ""]
    assert state["error"].startswith("Refused:")

    # the next good values and a selection display normally
    lesion_id = sorted(state["lesion_ids"])[0]

    async def good(client: WslinkClient) -> list:
        await client.hello(server.secret)
        return [
            await client.call("trame.state.update", [[{"key": "lx_opacity", "value": 0.4}]]),
            await client.call("trame.trigger", ["lx_select_row", [lesion_id], {}]),
        ]

    replies = run(_session(server, good))
    assert all("error" not in r for r in replies)
    state = _wait(server, lambda s: s["selected_id"] == lesion_id and not s["busy"] or bool(s["error"]))
    assert not state["error"], state["error"]
    assert state["opacity"] == pytest.approx(0.4)
    assert state["timings"]["history"][-1]["overlay_shown"] and state["timings"]["history"][-1]["complete"]


def test_bad_table_selections_and_failing_calls_give_a_panel_error_never_a_traceback(server):
    selected = server.state()["selected_id"]

    async def calls(client: WslinkClient, batch: list) -> list:
        await client.hello(server.secret)
        return [await client.call(method, args) for method, args in batch]

    for ids in (["abc"], [99999], [[1, 2]], [None], [1e300], [True]):
        reply = run(_session(server, lambda c: calls(c, [("trame.trigger", ["lx_select_row", ids, {}])])))[0]
        assert "error" not in reply and "trace" not in json.dumps(reply, default=str)
        state = server.state()
        assert state["error"].startswith("No lesion") and "\n" not in state["error"], (ids, state["error"])
        assert state["selected_id"] == selected and not state["busy"]
    # too few arguments: the call itself raises (TypeError) inside the server
    reply = run(_session(server, lambda c: calls(c, [("trame.trigger", ["lx_select_row", [], {}])])))[0]
    text = json.dumps(reply, default=str)
    assert "error" not in reply and "Traceback" not in text and "trace" not in text and 'File "' not in text
    state = server.state()
    assert state["error"].startswith("internal error (TypeError)") and "\n" not in state["error"]
    assert "Traceback" in server.log_path.read_text()  # the details stay in the server's log
