"""Signed envelopes, per-peer rate limits and misbehaviour scores: the checks every inbound message
passes before the node service sees its content.

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
                       "bad_timestamp", "bad_height_or_slot", "bad_final_height", "bad_snapshot"})

# Misbehaviour score (Bitcoin Core's misbehaviour points, a ban at 100, with a decay in the spirit
# of Tendermint/CometBFT's p2p trust metric, kept to one number per sender): each fault adds its
# points, the score halves every SCORE_HALF_LIFE_S, and a peer reaching BAN_SCORE is ignored for
# BAN_SECONDS (its score back to zero afterwards, so one more fault does not ban it again at once).
# Invalid data no honest node sends bans at once; a fault an honest node commits under a race or
# a state difference costs so little that only a steady stream of them bans: unknown parents at
# 5 points take about 20 in a half-life to ban (an honest producer pushes about one block a slot,
# few of them racing their parent, and a node behind charges none, see p2p.routes); rate-limited
# messages at 1 point take a hundred.
FAULT_POINTS = {
    "invalid": 100,          # an invalid block, vote, tx or malformed message (PENALIZED codes)
    "wrong_producer": 20,    # a block for a slot its producer does not hold (or a stale schedule)
    "bad_tx_signature": 25,  # a relayed tx whose signature fails (honest only across a key change)
    "unknown_parent": 5,     # a block whose parent, at a height we hold, we never saw
    "flood": 1,              # a message over the sender's rate limit
}
BAN_SCORE = 100.0
SCORE_HALF_LIFE_S = 60.0
BAN_SECONDS = 60.0


class Unauthorized(ProtocolError):
    status = 401


class Forbidden(ProtocolError):
    """A known node key that may not push now (a candidate not in office)."""
    status = 403


class RateLimited(ProtocolError):
    status = 429


def seal(key: crypto.Keypair, chain_id: str, kind: str, sender: str, body: bytes) -> bytes:
    sig = key.sign("p2p", [chain_id, kind, sender, body])
    return msgpack.packb([sender, body, sig], use_bin_type=True)


def open_envelope(data: bytes, chain_id: str, kind: str, key_of) -> tuple[str, bytes]:
    """(sender, body) of an envelope whose signature verifies under `key_of(sender)` (which may
    itself refuse a known sender: Forbidden, before any signature is verified)."""
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
    """Inbound limits per sender (messages and bytes per second), a decaying misbehaviour score per
    sender and temporary bans of those whose score crossed BAN_SCORE. Bounded: at most `max_peers`
    buckets and scores are kept. `clock`: monotonic seconds (injected by tests)."""

    def __init__(self, msgs_per_s: float = 400, bytes_per_s: float = 64e6, max_peers: int = 1024,
                 clock=time.monotonic):
        self.msgs_per_s, self.bytes_per_s, self.max_peers = msgs_per_s, bytes_per_s, max_peers
        self.clock = clock
        self.buckets: dict[str, tuple[TokenBucket, TokenBucket]] = {}
        self.banned: dict[str, float] = {}
        self.scores: dict[str, tuple[float, float]] = {}  # who -> (score, when it was last decayed)
        self.faults: dict[str, int] = {}  # fault kind -> how many were charged (a metric)
        self.bans = 0  # how many bans were ever imposed (a metric)

    def score(self, who: str) -> float:
        """`who`'s score now, decayed since its last fault."""
        score, stamp = self.scores.get(who, (0.0, 0.0))
        return score * 0.5 ** ((self.clock() - stamp) / SCORE_HALF_LIFE_S) if score else 0.0

    def fault(self, who: str, kind: str) -> bool:
        """Charge `who` the points of a fault of `kind` (FAULT_POINTS); True if that bans it."""
        if self.is_banned(who):
            return True
        self.faults[kind] = self.faults.get(kind, 0) + 1
        score = self.score(who) + FAULT_POINTS[kind]
        if score >= BAN_SCORE:
            self.scores.pop(who, None)
            self.penalize(who)
            return True
        if who not in self.scores and len(self.scores) >= self.max_peers:
            self.scores.pop(next(iter(self.scores)))
        self.scores[who] = (score, self.clock())
        return False

    def report(self) -> dict:
        """Peers with a score or a ban now, and the counts of faults and bans so far."""
        now = self.clock()
        banned = {w: round(until - now, 1) for w, until in self.banned.items() if until > now}
        scores = {w: round(self.score(w), 1) for w in self.scores}
        return {"banned_s": banned, "scores": {w: v for w, v in scores.items() if v >= 0.1},
                "faults": dict(self.faults), "bans": self.bans}

    def is_banned(self, who: str) -> bool:
        until = self.banned.get(who)
        if until is None:
            return False
        if until < self.clock():
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
        """Ban `who` at once (for invalid data: the score of a fault that crosses BAN_SCORE)."""
        if who not in self.banned and len(self.banned) >= self.max_peers:
            self.banned.pop(next(iter(self.banned)))
        self.banned[who] = self.clock() + seconds
        self.scores.pop(who, None)
        self.bans += 1


def is_penalized(err: ProtocolError) -> bool:
    return err.code in PENALIZED


def fault_of(err: ProtocolError) -> str | None:
    """The FAULT_POINTS kind a peer committed by sending what raised `err`, None if it is no fault
    (unknown parents are charged by the caller, which knows whether we are behind)."""
    if err.code in PENALIZED:
        return "invalid"
    return "wrong_producer" if err.code == "wrong_producer" else None
