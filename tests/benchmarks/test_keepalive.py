"""The benchmarks' HTTP/1.1 client against a real asyncio server on loopback."""

from __future__ import annotations

import asyncio
import socket

import pytest

from benchmarks.keepalive import KeepAliveConnection, ProtocolError

pytestmark = pytest.mark.integration

ANSWERS = {
    b"/length": b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
    b"/chunked": (
        b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n"
        b"3\r\nhel\r\n2;ext=1\r\nlo\r\n0\r\nx-trailer: 1\r\n\r\n"
    ),
    b"/close": b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\r\nbusy",
    b"/cut": b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\nshort",
    b"/garbage": b"SMTP ready\r\n\r\n",
}


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, log: list) -> None:
    """Answer requests on one connection until the client or an answer closes it."""
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            break
        method, path = head.split(b" ")[:2]
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.startswith(b"content-length")
            ),
            0,
        )
        body = await reader.readexactly(length)
        log.append((method, path, body))
        writer.write(ANSWERS[path])
        await writer.drain()
        if path in (b"/close", b"/cut"):
            break
    writer.close()


def exchange(*requests: tuple[str, str, bytes]) -> tuple[list, list, int]:
    """Send `requests` over one KeepAliveConnection: outcomes, what the server saw, connections."""

    async def run() -> tuple[list, list, int]:
        log: list = []
        connections = 0

        async def on_connect(reader, writer):
            nonlocal connections
            connections += 1
            await serve(reader, writer, log)

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = KeepAliveConnection("127.0.0.1", port, timeout_s=5)
        outcomes = []
        for method, path, body in requests:
            try:
                outcomes.append(await client.request(method, path, body))
            except (asyncio.IncompleteReadError, ProtocolError) as exc:
                outcomes.append(type(exc).__name__)
        await client.close()
        server.close()
        await server.wait_closed()
        return outcomes, log, connections

    return asyncio.run(run())


def test_reads_length_and_chunked_bodies_on_one_connection():
    outcomes, log, connections = exchange(
        ("POST", "/length", b'{"a": 1}'), ("GET", "/chunked", b""), ("POST", "/length", b"x")
    )
    assert outcomes == [(200, b"hello"), (201, b"hello"), (200, b"hello")]
    assert log == [
        (b"POST", b"/length", b'{"a": 1}'),
        (b"GET", b"/chunked", b""),
        (b"POST", b"/length", b"x"),
    ]
    assert connections == 1


def test_reconnects_after_connection_close_and_after_a_cut_answer():
    outcomes, _, connections = exchange(
        ("GET", "/close", b""),
        ("GET", "/length", b""),
        ("GET", "/cut", b""),
        ("GET", "/length", b""),
    )
    assert outcomes == [(503, b"busy"), (200, b"hello"), "IncompleteReadError", (200, b"hello")]
    assert connections == 3


def test_refuses_an_answer_that_is_not_http():
    outcomes, _, _ = exchange(("GET", "/garbage", b""))
    assert outcomes == ["ProtocolError"]


def test_connection_refused_raises_oserror():
    with socket.socket() as s:  # a port nothing listens on: bound, then released
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = KeepAliveConnection("127.0.0.1", port, timeout_s=5)
    with pytest.raises(OSError):
        asyncio.run(client.request("GET", "/"))
