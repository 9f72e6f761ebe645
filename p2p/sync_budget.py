"""How many bytes of sync pages (`GET /p2p/blocks`) a node serves, and to whom: catch-up is the
one public request whose answer is large, so it is metered in bytes, per client address, for all
public clients together, and by the bytes of public pages held in memory until sent."""
import time

from p2p.envelope import RateLimited

# Bytes of sync pages served per client address: a public client gets 8 MiB/s (thousands of
# ordinary blocks of a few KB with their votes a second, for a new full node) with a 32 MiB burst;
# the hosts of our configured peers, as their URLs spell them, 8x that, so a validator that was
# down catches up at full speed. 40 requests of ~100 bytes, 387 MB before, now get the burst and
# one page more, then 429s.
SYNC_BYTES_PER_S = 8 * 1024 * 1024
SYNC_BURST_BYTES = 32 * 1024 * 1024
PEER_SYNC_FACTOR = 8
SYNC_CLIENTS = 4096  # buckets kept; the oldest is dropped beyond (it then starts full again)
# All public clients together get 4 clients' worth: many addresses multiply nothing (measured with
# `bench attacks`, 40 clients on 20 addresses pulled 160 MiB/s and held 466 MB of pages before).
PUBLIC_SYNC_FACTOR = 4
PUBLIC = "*public*"  # the key of that shared bucket (not an address)
# Bytes of public clients' pages built and not yet sent: a page may hold one 8 MiB block, and a
# slow reader keeps its page in memory, so beyond this a public request waits its turn (429).
MAX_PUBLIC_SYNC_IN_FLIGHT = 24 * 1024 * 1024


class SyncBudget:
    """Bytes of sync pages served, metered per client address and for all public (non-peer)
    clients together: a token bucket each, that a page may overdraw (its size is known only once
    built), so a client in debt is refused until its tokens come back; and the bytes of public
    pages not yet sent, capped. Bounded: at most SYNC_CLIENTS buckets."""

    def __init__(self, peer_hosts=(), bytes_per_s: float = SYNC_BYTES_PER_S,
                 burst: float = SYNC_BURST_BYTES, clock=time.monotonic):
        self.peer_hosts = frozenset(peer_hosts)
        self.bytes_per_s, self.burst, self.clock = bytes_per_s, burst, clock
        self.buckets: dict[str, list[float]] = {}  # host -> [tokens, when they were counted]
        self.public_in_flight = 0  # bytes of public pages built and not yet sent

    def _keys(self, host: str) -> tuple[str, ...]:
        return (host,) if host in self.peer_hosts else (host, PUBLIC)

    def _refill(self, host: str) -> tuple[list[float], float]:
        factor = PEER_SYNC_FACTOR if host in self.peer_hosts else PUBLIC_SYNC_FACTOR if host == PUBLIC else 1
        now, bucket = self.clock(), self.buckets.get(host)
        if bucket is None:
            if len(self.buckets) >= SYNC_CLIENTS:
                self.buckets.pop(next(iter(self.buckets)))
            bucket = self.buckets[host] = [self.burst * factor, now]
        rate = self.bytes_per_s * factor
        bucket[0], bucket[1] = min(self.burst * factor, bucket[0] + (now - bucket[1]) * rate), now
        return bucket, rate

    def admit(self, host: str) -> None:
        """Raise RateLimited (429 `sync_rate_limited`) while `host`, or the public clients
        together, have no bytes left, or public pages in flight are at their cap."""
        if host not in self.peer_hosts and self.public_in_flight >= MAX_PUBLIC_SYNC_IN_FLIGHT:
            raise RateLimited("sync_rate_limited", "sync pages of public clients are at their cap "
                              "in memory; try again in 1 s")
        for key in self._keys(host):
            bucket, rate = self._refill(key)
            if bucket[0] <= 0:
                who = "the public clients together are" if key == PUBLIC else f"{host} is"
                raise RateLimited("sync_rate_limited", f"{who} over the sync allowance of "
                                  f"{rate / 2**20:.3g} MiB/s; try again in {-bucket[0] / rate + 0.1:.1f} s")

    def charge(self, host: str, size: int) -> None:
        for key in self._keys(host):
            self._refill(key)[0][0] -= size
        if host not in self.peer_hosts:
            self.public_in_flight += size

    def sent(self, host: str, size: int) -> None:
        """A page charged to `host` has been sent (or its client went away)."""
        if host not in self.peer_hosts:
            self.public_in_flight -= size
