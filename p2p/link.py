"""A minimal keep-alive HTTP/1.1 connection to one node, for the requests a node sends most: its
gossip of txs, blocks and votes to each peer (one `Link` per peer and lane), and the bench's load.

httpx costs 0.7-1.3 ms of CPU per request here (anyio cancel scopes, sniffio and h11 on every
call; measured with a uvicorn peer on loopback), this about 0.1 ms: at 3,000 tx/s httpx was about
9 % of a validator's CPU. The other end is a node of this project (uvicorn), whose answers always
carry Content-Length, so that is all the HTTP spoken here: one request at a time, the body read
by its length, `https://` through the default TLS context (certificates verified). Status polls,
sync and wallets keep using httpx.

A connection reused after the peer closed it while idle (uvicorn's keep-alive timeout) fails on
its first read: the request is sent once more on a new connection. Gossip can repeat a request
safely; a receiver drops what it already holds.
"""
import asyncio
import ssl
from urllib.parse import urlsplit

_ERRORS = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)


class LinkError(Exception):
    """The peer could not be reached, or did not answer in time or in HTTP/1.1 with a length."""


class Link:
    def __init__(self, url: str, timeout_s: float = 5.0, connect_timeout_s: float = 1.0):
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        self.timeout_s, self.connect_timeout_s = timeout_s, connect_timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"",
                      content_type: str = "application/msgpack") -> tuple[int, bytes]:
        """(status, body) of the answer; LinkError if there is none."""
        reused = self._writer is not None
        while True:
            try:
                return await asyncio.wait_for(self._exchange(method, path, body, content_type),
                                              self.timeout_s)
            except asyncio.TimeoutError:  # (an OSError too, so first)
                self.close()  # the connection is out of step now
                raise LinkError(f"no answer in {self.timeout_s} s") from None
            except _ERRORS as e:
                self.close()
                if not reused:
                    raise LinkError(f"{type(e).__name__}: {e}") from None
                reused = False  # the peer had closed the idle connection: once more, on a new one

    async def _exchange(self, method: str, path: str, body: bytes,
                        content_type: str) -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port,
                                        ssl=ssl.create_default_context() if self.tls else None),
                self.connect_timeout_s)
        self._writer.write(f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: "
                           f"{content_type}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        head = await self._reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 "):
            raise ValueError("not an HTTP/1.1 answer")
        length, close = None, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        if length is None:
            raise ValueError("an answer without Content-Length")
        status, answer = int(head[9:12]), await self._reader.readexactly(length)
        if close:
            self.close()
        return status, answer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
