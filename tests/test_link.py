"""p2p.link against a real uvicorn server on loopback: answers, keep-alive across the server's
idle timeout, and every way of not answering ends in LinkError."""
import asyncio
import threading
import time

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from node.testnet import free_port_range
from p2p.link import Link, LinkError


async def _echo(request):
    return Response(b"got " + await request.body(), status_code=202)


async def _stream(request):
    async def chunks():
        yield b"no length"
    return StreamingResponse(chunks())


@pytest.fixture(scope="module")
def server_url():
    port = free_port_range(1)
    app = Starlette(routes=[Route("/echo", _echo, methods=["POST"]), Route("/stream", _stream)])
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="error", timeout_keep_alive=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


def test_answers_and_a_connection_the_server_closed_while_idle_is_replaced(server_url):
    async def go():
        link = Link(server_url)
        first = await link.request("POST", "/echo", b"one")
        kept = link._writer
        second = await link.request("POST", "/echo", b"two")
        assert link._writer is kept  # kept alive
        await asyncio.sleep(1.5)  # past the server's keep-alive timeout: it closes the connection
        third = await link.request("POST", "/echo", b"three")
        link.close()
        return first, second, third

    assert asyncio.run(go()) == ((202, b"got one"), (202, b"got two"), (202, b"got three"))


def test_no_listener_no_answer_and_no_length_are_link_errors(server_url):
    async def silent(reader, writer):
        await asyncio.sleep(10)

    async def go():
        errors = []
        dead = Link(f"http://127.0.0.1:{free_port_range(1)}")
        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        quiet = Link(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", timeout_s=0.3)
        for link, path in [(dead, "/echo"), (quiet, "/echo"), (Link(server_url), "/stream")]:
            started = time.monotonic()
            with pytest.raises(LinkError) as e:
                await link.request("GET" if path == "/stream" else "POST", path, b"x")
            errors.append((str(e.value), time.monotonic() - started))
        server.close()
        return errors

    (refused, _), (silent_error, waited), (unframed, _) = asyncio.run(go())
    assert "ConnectionRefused" in refused
    assert "no answer in 0.3 s" in silent_error and waited < 2
    assert "without Content-Length" in unframed
