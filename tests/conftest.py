"""Shared test fixtures: a small in-memory genesis and helpers to sign transactions against it.

Nothing here reads the top-level genesis.json: keys come from sha256 of a name, so every run and
every test sees the same chain.
"""
import hashlib
from functools import lru_cache

import pytest

from core.crypto import Keypair
from core.genesis import ChainParams, Genesis, Member, Producer
from core.types import Tx

CHAIN_ID = "test-chain"
GENESIS_MS = 1_700_000_000_000
MEMBERS = ("alice", "bob", "carol", "dave")
PRODUCERS = ("alice",)
BALANCE = 1_000_000
STAKE = 50_000
# a block timestamp safely after genesis, and a default expiry inside the maximum window
NOW_MS = GENESIS_MS + 60_000
EXPIRES = NOW_MS + 30_000


@lru_cache(maxsize=None)
def keypair(name: str) -> Keypair:
    """The deterministic account key of `name` (seed = sha256(name))."""
    return Keypair(hashlib.sha256(name.encode()).digest())


@lru_cache(maxsize=None)
def node_keypair(name: str) -> Keypair:
    return Keypair(hashlib.sha256(b"node:" + name.encode()).digest())


def make_genesis(params: ChainParams | None = None) -> Genesis:
    g = Genesis(
        chain_id=CHAIN_ID,
        genesis_time_ms=GENESIS_MS,
        params=params or ChainParams(),
        members=tuple(Member(n, keypair(n).public_key, BALANCE, STAKE) for n in MEMBERS),
        producers=tuple(Producer(n, node_keypair(n).public_key, f"http://{n}.test") for n in PRODUCERS),
    )
    # the same object must survive the genesis.json validation path
    assert Genesis.from_json(g.to_json()) == g
    return g


def make_tx(sender: str, kind: str, body: dict, *, expires_at: int = EXPIRES, salt: int = 0,
            key: Keypair | None = None, chain_id: str = CHAIN_ID) -> Tx:
    """A signed tx from `sender` (signed with sender's own key unless `key` is given)."""
    return Tx.create(key or keypair(sender), chain_id, kind, sender, expires_at, body, salt=salt)


@pytest.fixture(scope="session")
def genesis() -> Genesis:
    return make_genesis()


@pytest.fixture(scope="session")
def keys() -> dict[str, Keypair]:
    return {n: keypair(n) for n in MEMBERS}
