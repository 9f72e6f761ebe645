"""What a client may hold of a node before any request of it is handled: connections, time and
request-body bytes. Nothing here knows the chain; it is the HTTP edge in front of node/api.py.

uvicorn's httptools protocol times out only an idle kept-alive connection (after a response);
a fresh connection that never sends a byte, a request whose headers or body trickle in, and
`limit_concurrency` counting every open socket alike let 1,000 silent sockets take every slot.
`IntakeProtocol` adds what is missing:

- a deadline for the request headers (from the connection's opening, or from a kept-alive
  request's first byte) and one for its body (from the end of the headers): past it the socket is
  closed;
- at most `client_connections` open connections per client address (an IPv6 /64 counts as one
  address): further ones are closed at once, so they cost the node no descriptor;
- two pools: connections from the addresses of the configured `peers` count against
  `peer_connections`, everyone else's against `max_connections`, so wallets cannot take the
  capacity consensus traffic needs. With the wallet pool full, the oldest connection with no
  request being served of the address holding the most (two or more above the newcomer's) is
  closed to make room, so silent sockets from many addresses cannot keep a new wallet out either;
  only when no address holds more does the newcomer get 503 `overloaded` to its request, then the
  close (as many again at most are kept to be told; beyond that, closed at once).

`BodyBudget` (ASGI, wrapping the app) charges every body byte a request receives to its client
address and to a node-wide budget of bytes in flight (peers' addresses to a pool of their own),
before the handler can keep it; past the client's share 429 `body_budget`, past the node's 503
`overloaded`, and the connection is closed after that answer. The bytes are released when the
request ends, however it ends (a disconnect included).

Loopback clients (local tools, the testnet, the bench, a reverse proxy on the same host) are
exempt from the per-address caps unless `limit_loopback` is set; they always count in the pools.
"""
import ctypes
import ctypes.util
import json
import logging
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from core.errors import ProtocolError
from node.http import client_key, is_loopback
from p2p.envelope import RateLimited

log = logging.getLogger("intake")


class Overloaded(ProtocolError):
    status = 503


def resolve_peer_hosts(peers: tuple) -> frozenset:
    """The addresses (as `client_key` spells them) of the configured peer URLs, resolved once at
    start-up; a name that does not resolve is left out (logged) and its node treated as a wallet."""
    hosts = set()
    for url in peers:
        name = urlsplit(url).hostname
        try:
            for info in socket.getaddrinfo(name, None, type=socket.SOCK_STREAM):
                hosts.add(client_key(info[4][0]))
        except (OSError, ValueError, UnicodeError) as e:
            log.warning("peer %s does not resolve (%s): its connections count as a wallet's", url, e)
    return frozenset(hosts)


@dataclass(frozen=True)
class IntakeLimits:
    max_connections: int = 1000
    peer_connections: int = 256
    client_connections: int = 32
    header_timeout_s: float = 5.0
    body_timeout_s: float = 30.0
    body_bytes_in_flight: int = 64 * 1024 * 1024
    client_body_bytes: int = 16 * 1024 * 1024
    limit_loopback: bool = False

    @classmethod
    def from_config(cls, config) -> "IntakeLimits":
        return cls(**{name: getattr(config, name) for name in cls.__dataclass_fields__})


class Intake:
    """The counts both layers share: open connections and body bytes in flight, per pool and per
    client address. One per node, used from the event loop only."""

    def __init__(self, limits: IntakeLimits, peer_hosts: frozenset = frozenset()):
        self.limits, self.peer_hosts = limits, peer_hosts
        self.connections = {"peer": 0, "wallet": 0}
        self.refused_connections = 0  # connections kept only to be answered 503
        self.per_client: dict[str, dict] = {}  # wallet pool: key -> its connections, oldest first
        self.body_bytes = {"peer": 0, "wallet": 0}
        self.client_bytes: dict[str, int] = {}
        self.closed_at_once = self.timed_out = self.evicted = self.bodies_refused = 0
        self._trim_at = 0

    def classify(self, host: str | None) -> tuple[str, str, bool]:
        """(pool, client key, whether the per-client caps apply) of a client address."""
        key = client_key(host)
        if key in self.peer_hosts:
            return "peer", key, False
        return "wallet", key, self.limits.limit_loopback or not is_loopback(host)

    # connections
    def open(self, host: str | None, conn) -> tuple | str | None:
        """A slot for a new connection `conn` (which has `evictable` and `evict()`): (pool, key,
        capped) if it may be served; "refuse" if it is to be answered 503 and closed; None if it is
        to be closed at once. When the wallet pool is full, the oldest evictable connection of the
        address holding the most (at least two more than this one's) is closed to make room: so
        many addresses holding silent sockets share the pool down to a connection or two each,
        while a new wallet still gets in."""
        pool, key, capped = self.classify(host)
        mine = self.per_client.get(key)
        if capped and mine is not None and len(mine) >= self.limits.client_connections:
            self.closed_at_once += 1
            return None
        cap = self.limits.peer_connections if pool == "peer" else self.limits.max_connections
        if self.connections[pool] >= cap and not (pool == "wallet" and self._evict_for(key)):
            if self.refused_connections >= self.limits.max_connections:
                self.closed_at_once += 1
                return None
            self.refused_connections += 1
            return "refuse"
        self.connections[pool] += 1
        if pool == "wallet":
            self.per_client.setdefault(key, {})[conn] = None
        return pool, key, capped

    def _evict_for(self, key: str) -> bool:
        """Close the oldest evictable connection of the address holding the most, if it holds two
        or more above `key`'s (one pass over the addresses, only while the pool is full)."""
        if not self.per_client:
            return False
        victims = max(self.per_client.values(), key=len)
        if len(victims) < len(self.per_client.get(key, ())) + 2:
            return False
        victim = next((c for c in victims if c.evictable), None)
        if victim is None:
            return False
        self.evicted += 1
        self.close(victim.evict(), victim)
        return True

    def close(self, slot, conn) -> None:
        if slot == "refuse":
            self.refused_connections -= 1
            return
        pool, key, capped = slot
        self.connections[pool] -= 1
        if pool == "wallet":
            conns = self.per_client[key]
            conns.pop(conn, None)
            if not conns:
                del self.per_client[key]

    # body bytes
    def charge(self, host: str | None, size: int) -> tuple[str, str, bool]:
        """Count `size` more body bytes in flight from `host`, or raise (nothing counted)."""
        pool, key, capped = self.classify(host)
        if capped and self.client_bytes.get(key, 0) + size > self.limits.client_body_bytes:
            self.bodies_refused += 1
            raise RateLimited("body_budget", f"more than {self.limits.client_body_bytes} bytes of "
                              f"request bodies in flight from {key}: retry later")
        if self.body_bytes[pool] + size > self.limits.body_bytes_in_flight:
            self.bodies_refused += 1
            raise Overloaded("overloaded", "the node is receiving as many request bodies as it "
                             "takes at once: retry later")
        self.body_bytes[pool] += size
        if capped:
            self.client_bytes[key] = self.client_bytes.get(key, 0) + size
        return pool, key, capped

    def release(self, charged: tuple[str, str, bool], size: int) -> None:
        pool, key, capped = charged
        self.body_bytes[pool] -= size
        if capped:
            left = self.client_bytes[key] - size
            if left:
                self.client_bytes[key] = left
            else:
                del self.client_bytes[key]
        self._trim_at += size
        if self._trim_at >= self.limits.client_body_bytes and not any(self.body_bytes.values()):
            self._trim_at = 0
            _malloc_trim()


def _load_malloc_trim():
    """glibc's malloc_trim, or None. Bodies arrive in chunks of 64-256 KiB, below glibc's mmap
    threshold once a large body has raised it, so a freed body stays in the heap: with no budget a
    node kept 1.27 GB after a slow-body attack had ended (`bench attacks`). The trim hands the
    free heap back once no body is in flight (after every 16 MiB released at most)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _load_malloc_trim()


def _malloc_trim() -> None:
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


# ------------------------------------------------------------------------ connections (protocol)
def make_protocol(intake: Intake) -> type:
    """An httptools protocol class for uvicorn's `http=` that applies `intake`."""
    return type("IntakeProtocol", (IntakeProtocol,), {"intake": intake})


class IntakeProtocol(HttpToolsProtocol):
    intake: Intake

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._deadline = None
        self.evictable = True  # no request of it is being handled (node.intake.Intake.open)
        self._slot = self.intake.open(self.client[0] if self.client else None, self)
        if self._slot is None:
            transport.close()
            return
        if self._slot == "refuse":
            self.app = refuse_overloaded
        self._arm(self.intake.limits.header_timeout_s)

    def evict(self):
        """Close this connection to make room for another; its slot, which the caller releases."""
        slot, self._slot = self._slot, None
        self._disarm()
        self.transport.close()
        return slot

    def connection_lost(self, exc) -> None:
        self._disarm()
        if self._slot is not None:
            self.intake.close(self._slot, self)
            self._slot = None
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        self.evictable = True
        super().on_response_complete()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # a kept-alive connection's next request: its first byte
            self._arm(self.intake.limits.header_timeout_s)

    def on_headers_complete(self) -> None:
        self._arm(self.intake.limits.body_timeout_s)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self.evictable = False  # a whole request: it is served, not evicted
        super().on_message_complete()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.intake.timed_out += 1
            self.transport.close()


async def refuse_overloaded(scope, receive, send) -> None:
    await _send_error(send, Overloaded("overloaded", "the node has as many connections open as it "
                                       "serves: retry later"), close=True)


async def _send_error(send, e: ProtocolError, close: bool = False) -> None:
    payload = json.dumps({"error": {"code": e.code, "message": e.message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": e.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


# ------------------------------------------------------------------------------ body bytes (ASGI)
class BodyBudget:
    """ASGI middleware: every body chunk a request receives is charged (`Intake.charge`) before the
    handler sees it; a declared Content-Length is charged whole on the first read, so a request
    over budget is refused before its body is read. Everything is released when the request ends."""

    def __init__(self, app, intake: Intake):
        self.app, self.intake = app, intake

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared, chunked = b"", False
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            elif name == b"transfer-encoding":
                chunked = True
        if not chunked and declared in (b"", b"0"):  # no body to charge (a GET): no wrapping
            return await self.app(scope, receive, send)
        declared = int(declared) if declared.isdigit() and len(declared) < 16 else 0
        host = scope["client"][0] if scope.get("client") else None
        state = {"charged": None, "bytes": 0, "seen": 0, "refused": False}

        def charge(total: int) -> None:
            extra = total - state["bytes"]
            if extra <= 0:
                return
            try:
                state["charged"] = self.intake.charge(host, extra)
            except ProtocolError:
                state["refused"] = True
                raise
            state["bytes"] += extra

        async def counted_receive():
            if state["seen"] == 0 and declared:
                charge(declared)
            message = await receive()
            if message["type"] == "http.request":
                state["seen"] += len(message.get("body", b""))
                charge(state["seen"])
            return message

        async def closing_send(message):
            if state["refused"] and message["type"] == "http.response.start":
                message = dict(message, headers=[*message.get("headers", ()), (b"connection", b"close")])
            await send(message)

        try:
            await self.app(scope, counted_receive, closing_send)
        finally:
            if state["bytes"]:
                self.intake.release(state["charged"], state["bytes"])
