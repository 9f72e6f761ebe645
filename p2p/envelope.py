"""Signed envelopes, per-peer rate limits and penalties: the checks every inbound message passes
before the node service sees its content.

envelope = msgpack [sender, body, signature], signature = Ed25519 of
sign_bytes("p2p", [chain_id, kind, sender, body]) by the sender's node key. The kind ("txs",
"block", "votes") and chain id are signed so a message cannot be replayed on another endpoint or
chain; replaying the same message is harmless (everything it carries is deduplicated).
"""
import time

import msgpack

from core import crypto
from core.errors import Malformed, ProtocolError
from core.types import is_name

# what a peer got wrong on purpose or through a bug; anything else (unknown parent, stale, future,
# a tx that is already known or expired) is a timing difference between honest nodes
PENALIZED = frozenset({"malformed", "non_canonical", "bad_signature", "bad_tx_root",
                       "bad_state_root", "invalid_tx", "wrong_chain", "too_large", "too_many_txs",
                       "bad_timestamp", "bad_height_or_slot", "bad_final_height"})
BAN_SECONDS = 30.0


class Unauthorized(ProtocolError):
    status = 401


class RateLimited(ProtocolError):
    status = 429


def seal(key: crypto.Keypair, chain_id: str, kind: str, sender: str, body: bytes) -> bytes:
    sig = key.sign("p2p", [chain_id, kind, sender, body])
    return msgpack.packb([sender, body, sig], use_bin_type=True)


def open_envelope(data: bytes, chain_id: str, kind: str, key_of) -> tuple[str, bytes]:
    """(sender, body) of an envelope whose signature verifies under `key_of(sender)`."""
    try:
        obj = msgpack.unpackb(data, raw=False)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        raise Malformed("malformed", "an envelope is a msgpack [sender, body, signature]") from None
    if (type(obj) is not list or len(obj) != 3 or not is_name(obj[0]) or type(obj[1]) is not bytes
            or type(obj[2]) is not bytes):
        raise Malformed("malformed", "an envelope is a msgpack [sender, body, signature]")
    sender, body, sig = obj
    key = key_of(sender)
    if key is None:
        raise Unauthorized("unknown_peer", f"{sender} is not a known node")
    if not crypto.verify(key, "p2p", [chain_id, kind, sender, body], sig):
        raise Unauthorized("bad_signature", "envelope signature does not verify")
    return sender, body


class TokenBucket:
    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float):
        self.rate, self.burst, self.tokens, self.stamp = rate, burst, burst, time.monotonic()

    def take(self, amount: float = 1.0) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < amount:
            return False
        self.tokens -= amount
        return True


class PeerGuard:
    """Inbound limits per sender (messages and bytes per second) and temporary bans of peers that
    sent invalid data. Bounded: at most `max_peers` buckets are kept."""

    def __init__(self, msgs_per_s: float = 400, bytes_per_s: float = 64e6, max_peers: int = 1024):
        self.msgs_per_s, self.bytes_per_s, self.max_peers = msgs_per_s, bytes_per_s, max_peers
        self.buckets: dict[str, tuple[TokenBucket, TokenBucket]] = {}
        self.banned: dict[str, float] = {}

    def is_banned(self, who: str) -> bool:
        until = self.banned.get(who)
        if until is None:
            return False
        if until < time.monotonic():
            del self.banned[who]
            return False
        return True

    def admit(self, who: str, size: int) -> None:
        """Raise if `who` is banned or over its rate; else charge it one message of `size` bytes."""
        if self.is_banned(who):
            raise RateLimited("peer_banned", f"{who} sent invalid data and is ignored for a while")
        pair = self.buckets.get(who)
        if pair is None:
            if len(self.buckets) >= self.max_peers:
                self.buckets.pop(next(iter(self.buckets)))
            pair = (TokenBucket(self.msgs_per_s, 2 * self.msgs_per_s),
                    TokenBucket(self.bytes_per_s, 2 * self.bytes_per_s))
            self.buckets[who] = pair
        if not pair[0].take() or not pair[1].take(size):
            raise RateLimited("rate_limited", f"{who} is over its rate limit")

    def penalize(self, who: str, seconds: float = BAN_SECONDS) -> None:
        self.banned[who] = time.monotonic() + seconds


def is_penalized(err: ProtocolError) -> bool:
    return err.code in PENALIZED
