"""HTTP helpers shared by the wallet API (node/api.py) and the peer API (p2p/routes.py)."""
import ipaddress
import json

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from core.errors import Malformed
from p2p.envelope import RateLimited, TokenBucket

MAX_BATCH_TXS = 2000  # txs in one POST /v1/transactions/batch at most
MAX_BODY_BYTES = 13 * 1024 * 1024  # above the largest body any endpoint takes (/p2p/txs, 12 MiB)


def json_response(body, status: int = 200) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status_code=status,
                    media_type="application/json")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or 413 `too_large` as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdecimal() and int(declared) > limit:
        raise Malformed("too_large", f"body of {declared} bytes > limit {limit}", status=413)
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Malformed("too_large", f"body > limit {limit} bytes", status=413)
            chunks.append(chunk)
    except ClientDisconnect:  # (or closed at its body deadline, node.intake): no one to answer
        raise Malformed("malformed", "client disconnected") from None
    return b"".join(chunks)


def is_loopback(host: str) -> bool:
    return host.startswith(("127.", "::ffff:127.")) or host == "::1"


def client_key(host: str | None) -> str:
    """The address a client is limited by: an IPv4 address (IPv4-mapped IPv6 included) as is, an
    IPv6 address by its /64, one subscriber's prefix, whose 2^64 addresses cost it nothing to
    rotate through (a fresh bucket per address would be no limit)."""
    if host is None:
        return "?"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class ClientLimits:
    """Per-client budgets on the wallet API: requests, and txs submitted, per second, each with a
    burst of twice that, so that one wallet or script in a loop cannot take the event loop that
    consensus shares (429 `rate_limited`). A rate of 0 is no limit. Clients are told apart by IP
    address, IPv6 ones by their /64 (`client_key`); loopback clients (local tools, tests, the
    bench) are not limited, so a node behind a reverse proxy on its own host must be limited at
    the proxy. At most MAX_CLIENTS addresses are tracked, the longest known dropped first."""

    MAX_CLIENTS = 4096

    def __init__(self, requests_per_s: int, txs_per_s: int):
        self.requests_per_s, self.txs_per_s = requests_per_s, txs_per_s
        self.buckets: dict[str, tuple[TokenBucket | None, TokenBucket | None]] = {}

    def _buckets(self, client: str | None) -> tuple[TokenBucket | None, TokenBucket | None]:
        if client is None or is_loopback(client):
            return None, None
        key = client_key(client)
        pair = self.buckets.get(key)
        if pair is None:
            if len(self.buckets) >= self.MAX_CLIENTS:
                self.buckets.pop(next(iter(self.buckets)))
            pair = self.buckets[key] = tuple(
                TokenBucket(rate, 2 * rate) if rate else None for rate in (self.requests_per_s, self.txs_per_s))
        return pair

    def admit_request(self, client: str | None) -> None:
        requests = self._buckets(client)[0]
        if requests is not None and not requests.take():
            raise RateLimited("rate_limited", f"more than {self.requests_per_s} requests a second "
                              f"from {client}: retry later")

    def admit_txs(self, client: str | None, count: int) -> None:
        txs = self._buckets(client)[1]
        if txs is not None and not txs.take(count):
            raise RateLimited("rate_limited", f"more than {self.txs_per_s} txs a second from "
                              f"{client}: retry later")
