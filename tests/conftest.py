"""Shared test fixtures: a small in-memory genesis, helpers to sign transactions against it, and
`World` (that genesis in a MemoryKV with one block layer on top) for the state-transition tests.

Nothing here reads the top-level genesis.json: keys come from sha256 of a name, so every run and
every test sees the same chain.
"""
import hashlib
import json
import time
from functools import lru_cache

import pytest

from core.crypto import Keypair
from core.genesis import ChainParams, Genesis, Member, Producer
from core.types import Tx, make_ticket
from node.config import NodeConfig
from node.keystore import write_key_file
from node.service import NodeService
from state import transition as T
from state.kv import MemoryKV
from state.view import Layer

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


# stake acts at once unless a test sets the delays; one founder's stake elects a candidate
TEST_PARAMS = ChainParams(unstake_delay_ms=0, stake_activation_delay_ms=0, min_producer_approval=STAKE)


def make_genesis(params: ChainParams | None = None, producers: tuple[str, ...] = PRODUCERS) -> Genesis:
    g = Genesis(
        chain_id=CHAIN_ID,
        genesis_time_ms=GENESIS_MS,
        params=params or TEST_PARAMS,
        members=tuple(Member(n, keypair(n).public_key, BALANCE, STAKE) for n in MEMBERS),
        producers=tuple(Producer(n, node_keypair(n).public_key, f"http://{n}.test") for n in producers),
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


class World:
    """Genesis state in a MemoryKV, a committed base layer over it, and one block's layer on top."""

    def __init__(self, genesis, height: int = 1, ts: int = NOW_MS):
        self.genesis = genesis
        self.kv = MemoryKV()
        self.kv.write(T.genesis_writes(genesis))
        self.base = Layer(None, self.kv)
        self.layer = Layer(self.base)
        self.ctx = T.make_context(genesis, height, height, ts)
        self.index = 0
        self.salt = 0

    def tx(self, sender, kind, body, **kw) -> Tx:
        self.salt += 1
        kw.setdefault("salt", self.salt)
        return make_tx(sender, kind, body, **kw)

    def apply(self, tx: Tx, verify=T.verify_signature, rules=None) -> None:
        T.apply_tx(self.layer, tx, self.ctx, self.index, verify, rules)
        self.index += 1

    def do(self, sender, kind, body, **kw) -> Tx:
        tx = self.tx(sender, kind, body, **kw)
        self.apply(tx)
        return tx

    def account(self, name):
        return T.get_account(self.layer, name)

    def post(self, ref):
        author, permlink = ref.split("/")
        return T.get_post(self.layer, author, permlink)

    def producer(self, name):
        return T.get_producer(self.layer, name)

    def snapshot(self):
        return dict(self.layer.writes), dict(self.base.writes), list(self.kv.scan(b""))


def post_body(permlink, **extra):
    return {"permlink": permlink, "title": f"title {permlink}", "body": "text", "tags": ["t"], **extra}


def event(starts=NOW_MS - 1000, ends=NOW_MS + 1000, capacity=10):
    return {"starts_at": starts, "ends_at": ends, "capacity": capacity}


def ticket(organizer, ref, attendee, chain_id=CHAIN_ID):
    return make_ticket(keypair(organizer), chain_id, ref, attendee)


@pytest.fixture
def w(genesis):
    return World(genesis)


@pytest.fixture
def service(tmp_path):
    """A node service producing as alice, on a MemoryKV, not started (no producer loop, no peers):
    for requests straight into its ASGI app."""
    (tmp_path / "genesis.json").write_text(json.dumps(make_genesis().to_json()))
    write_key_file(tmp_path / "key.json", "alice", node_keypair("alice"))
    return NodeService(NodeConfig(genesis=str(tmp_path / "genesis.json"),
                                  key_file=str(tmp_path / "key.json")), kv=MemoryKV())


def wait_until(cond, timeout_s: float, what: str, poll_s: float = 0.2):
    """Poll `cond` until it returns something true (returned), or fail after `timeout_s`."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
