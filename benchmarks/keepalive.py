"""A minimal HTTP/1.1 keep-alive client over asyncio streams: the benchmarks' load generator.

Why not httpx: its AsyncClient used 1.4 ms of CPU per request on this 2-core machine
(this client: 0.2 ms). Latency is measured by the client, so that cost landed in every
"HTTP p50" and, on two cores, competed with the server it was measuring. This client
does only what the benchmark needs: POST or GET on one connection, read the status line,
the headers and a body framed by Content-Length or chunked transfer encoding.
"""

from __future__ import annotations

import asyncio

MAX_HEADER_BYTES = 65_536


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.1 this client can read."""


class KeepAliveConnection:
    """One connection to one server; reconnects on the next request after a failure."""

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """Send one request and read its whole answer: (status, body).

        Raises:
            OSError, asyncio.IncompleteReadError, ProtocolError, TimeoutError: the
                connection is closed and the next request opens a new one.
        """
        try:
            return await asyncio.wait_for(self._exchange(method, path, body), self.timeout_s)
        except BaseException:
            await self.close()
            raise

    async def _exchange(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        head = (
            f"{method} {path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        )
        self._writer.write(head.encode("ascii") + body)
        await self._writer.drain()
        status, headers = await self._read_head()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            payload = await self._read_chunked()
        elif "content-length" in headers:
            payload = await self._reader.readexactly(int(headers["content-length"]))
        else:  # no framing: the body ends when the server closes the connection
            payload = await self._reader.read()
            await self.close()
            return status, payload
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, payload

    async def _read_head(self) -> tuple[int, dict[str, str]]:
        try:
            raw = await self._reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError as exc:
            raise ProtocolError("response headers too long") from exc
        if len(raw) > MAX_HEADER_BYTES:
            raise ProtocolError("response headers too long")
        status_line, *lines = raw.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
        headers = {}
        for line in lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        return int(parts[1]), headers

    async def _read_chunked(self) -> bytes:
        chunks = []
        while True:
            size_line = await self._reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while await self._reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailer fields, ignored
                return b"".join(chunks)
            chunks.append(await self._reader.readexactly(size))
            await self._reader.readexactly(2)  # the CRLF after each chunk

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass  # already reset by the peer
