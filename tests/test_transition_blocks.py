"""Blocks of the state transition (roots, bad blocks, verify once) and its determinism properties
(hypothesis: the same txs on two stores, rejected txs leave no trace, conservation)."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note_event
from hypothesis import strategies as st

from core import codec, types
from core.errors import InvalidBlock, InvalidTx
from core.genesis import ChainParams
from core.types import Block, BlockHeader, merkle_root
from state import schema
from state import transition as T
from state.kv import MemoryKV
from state.view import Journal, Layer
from state.rules import get_pool
from tests.conftest import (BALANCE, CHAIN_ID, MEMBERS, NOW_MS, STAKE, World, event, keypair,
                            make_genesis, make_tx, node_keypair, post_body, ticket)

MAX_EXPIRY = ChainParams().max_tx_expiry_ms


# ---------------------------------------------------------------------------------- blocks
def build_block(genesis, parent: Layer, parent_root: bytes, txs, height=1, ts=NOW_MS, *,
                tx_root=None, state_root=None):
    """A block whose roots are right unless overridden (the roots computed on a scratch layer)."""
    scratch = Layer(parent)
    ctx = T.BlockContext(genesis.chain_id, height, height, ts, genesis.params.max_tx_expiry_ms,
                         genesis.params.max_producer_approvals)
    for i, tx in enumerate(txs):
        try:
            T.apply_tx(scratch, tx, ctx, i)
        except InvalidTx:
            pass
    header = BlockHeader(genesis.chain_id, height, types.ZERO_HASH, height, ts, "alice",
                         tx_root or merkle_root([t.id for t in txs]),
                         state_root or T.compute_state_root(parent_root, scratch.writes), height - 1)
    return Block.create(node_keypair("alice"), header, tuple(txs)), scratch


def genesis_world(genesis):
    kv = MemoryKV()
    kv.write(T.genesis_writes(genesis))
    return kv, Layer(None, kv), T.compute_state_root(types.ZERO_HASH, T.genesis_writes(genesis))


def some_txs():
    return [make_tx("alice", "post", post_body("p"), salt=1),
            make_tx("bob", "vote", {"post": "alice/p", "weight": 10}, salt=2),
            make_tx("carol", "transfer", {"to": "dave", "amount": 10}, salt=3)]


def test_apply_block(genesis):
    kv, root_layer, root = genesis_world(genesis)
    block, scratch = build_block(genesis, root_layer, root, some_txs())
    block = Block.decode(block.encode())  # what a peer would send
    layer = T.apply_block(root_layer, root, genesis, block)
    assert layer.writes == scratch.writes
    assert layer.parent is root_layer and root_layer.writes == {}
    assert T.get_post(layer, "alice", "p").net_votes == 10
    assert [T.get_tx_location(layer, t) for t in block.txs] == [(1, 0), (1, 1), (1, 2)]
    # the next block builds on it; a replayed tx is rejected there
    block2, _ = build_block(genesis, layer, block.header.state_root,
                            [make_tx("dave", "stake", {"amount": 1}, salt=4)], height=2)
    layer2 = T.apply_block(layer, block.header.state_root, genesis, block2)
    assert T.get_account(layer2, "dave").stake == STAKE + 1
    replay, _ = build_block(genesis, layer, block.header.state_root, [block.txs[0]], height=2)
    with pytest.raises(InvalidBlock) as e:
        T.apply_block(layer, block.header.state_root, genesis, replay)
    assert e.value.code == "invalid_tx"


def test_empty_block(genesis):
    kv, root_layer, root = genesis_world(genesis)
    block, _ = build_block(genesis, root_layer, root, [])
    layer = T.apply_block(root_layer, root, genesis, block)
    assert layer.writes == {} and block.header.tx_root == types.ZERO_HASH
    assert block.header.state_root == T.compute_state_root(root, {}) != root


def _wrong_tx_root(genesis, parent, root):
    return build_block(genesis, parent, root, some_txs(), tx_root=merkle_root([b"x"]))[0]


def _reordered_txs(genesis, parent, root):
    txs = some_txs()
    good, _ = build_block(genesis, parent, root, txs)
    return Block.create(node_keypair("alice"), good.header, tuple(reversed(txs)))


def _wrong_state_root(genesis, parent, root):
    return build_block(genesis, parent, root, some_txs(), state_root=codec.sha256(b"x"))[0]


def _state_root_from_other_parent(genesis, parent, root):
    return build_block(genesis, parent, codec.sha256(b"another parent"), some_txs())[0]


def _invalid_tx(genesis, parent, root):
    txs = some_txs() + [make_tx("alice", "transfer", {"to": "bob", "amount": 10 * BALANCE}, salt=9)]
    return build_block(genesis, parent, root, txs)[0]


def _duplicate_in_block(genesis, parent, root):
    txs = some_txs()
    return build_block(genesis, parent, root, txs + [txs[0]])[0]


def _forged_tx(genesis, parent, root):
    return build_block(genesis, parent, root, [make_tx("alice", "stake", {"amount": 1}, key=keypair("bob"))])[0]


BAD_BLOCKS = [
    ("wrong_tx_root", _wrong_tx_root, "bad_tx_root"),
    ("reordered_txs", _reordered_txs, "bad_tx_root"),
    ("wrong_state_root", _wrong_state_root, "bad_state_root"),
    ("state_root_from_other_parent", _state_root_from_other_parent, "bad_state_root"),
    ("invalid_tx", _invalid_tx, "invalid_tx"),
    ("duplicate_tx_in_block", _duplicate_in_block, "invalid_tx"),
    ("forged_tx", _forged_tx, "invalid_tx"),
]


@pytest.mark.parametrize("make,code", [b[1:] for b in BAD_BLOCKS], ids=[b[0] for b in BAD_BLOCKS])
def test_bad_block_is_rejected_and_parent_untouched(genesis, make, code):
    kv, root_layer, root = genesis_world(genesis)
    parent = Layer(root_layer)
    T.apply_tx(parent, make_tx("dave", "stake", {"amount": 3}, salt=77), T.block_context(
        genesis, BlockHeader(CHAIN_ID, 1, types.ZERO_HASH, 1, NOW_MS, "alice", types.ZERO_HASH,
                             types.ZERO_HASH, 0)), 0)
    before = (dict(parent.writes), dict(root_layer.writes), list(kv.scan(b"")))
    block = make(genesis, parent, root)
    with pytest.raises(InvalidBlock) as e:
        T.apply_block(parent, root, genesis, block)
    assert e.value.code == code, str(e.value)
    assert (dict(parent.writes), dict(root_layer.writes), list(kv.scan(b""))) == before


def test_too_many_txs(genesis):
    g = make_genesis(ChainParams(max_block_txs=2))
    kv, root_layer, root = genesis_world(g)
    block, _ = build_block(g, root_layer, root, some_txs())
    with pytest.raises(InvalidBlock) as e:
        T.apply_block(root_layer, root, g, block)
    assert e.value.code == "too_many_txs"
    assert root_layer.writes == {}


def test_apply_block_verifies_each_tx_once(genesis):
    kv, root_layer, root = genesis_world(genesis)
    block, _ = build_block(genesis, root_layer, root, some_txs())
    calls = []
    T.apply_block(root_layer, root, genesis, block, verify=lambda tx, k: calls.append(tx.id) or tx.verify(k))
    assert calls == [t.id for t in block.txs]


def test_state_root_commits_to_every_write():
    writes = {b"a": b"1", b"b": b"2"}
    root = T.compute_state_root(types.ZERO_HASH, writes)
    assert T.compute_state_root(types.ZERO_HASH, dict(reversed(list(writes.items())))) == root
    assert T.compute_state_root(types.ZERO_HASH, {b"a": b"1"}) != root
    assert T.compute_state_root(types.ZERO_HASH, {**writes, b"c": None}) != root  # a delete counts
    assert T.compute_state_root(types.ZERO_HASH, {b"a": b"1", b"b": b"3"}) != root
    assert T.compute_state_root(codec.sha256(b"p"), writes) != root


def test_layer_scan_merges_overlays_and_deletes():
    kv = MemoryKV()
    kv.write({b"p/a": b"1", b"p/b": b"2", b"q": b"3"})
    base = Layer(None, kv)
    mid = Layer(base)
    mid.writes.update({b"p/b": None, b"p/c": b"4"})
    top = Layer(mid)
    top.writes.update({b"p/a": b"10", b"p/b": b"5"})
    assert list(mid.scan(b"p/")) == [(b"p/a", b"1"), (b"p/c", b"4")]
    assert list(top.scan(b"p/")) == [(b"p/a", b"10"), (b"p/b", b"5"), (b"p/c", b"4")]
    assert (mid.get(b"p/b"), top.get(b"p/b"), top.get(b"q"), top.get(b"zz")) == (None, b"5", b"3", None)
    j = Journal(top)
    j.delete(b"p/c")
    j.put(b"p/d", b"6")
    assert list(j.scan(b"p/")) == [(b"p/a", b"10"), (b"p/b", b"5"), (b"p/d", b"6")]
    j.commit()
    assert top.writes[b"p/c"] is None and top.get(b"p/d") == b"6"


# ---------------------------------------------------------------------------------- properties
SENDERS = ["alice", "bob", "carol", "dave"] * 2 + ["erin", "zed"]
EVENTS = [None, event(), event(capacity=1), event(starts=NOW_MS + 10, ends=NOW_MS + 20)]
ENVELOPES = ["ok"] * 12 + ["expired", "far", "wrong_chain", "bad_sig"]

ops = st.one_of(
    # a post has a fresh permlink or a reused one; a comment answers an earlier post or a missing one
    st.tuples(st.just("post"), st.sampled_from(SENDERS), st.sampled_from(["new", "new", "new", "p0"]),
              st.one_of(st.none(), st.none(), st.integers(-1, 30)), st.sampled_from([0, 1, 1, 2, 2, 3])),
    st.tuples(st.just("vote_post"), st.sampled_from(SENDERS), st.integers(-1, 30),
              st.sampled_from([-10000, -1, 0, 7, 10000])),
    st.tuples(st.just("vote_producer"), st.sampled_from(SENDERS), st.sampled_from(["alice", "bob", "erin"]),
              st.booleans()),
    # the event to attend is one of the posts built so far (or one that was never posted)
    attends := st.tuples(st.just("attend"), st.sampled_from(SENDERS), st.integers(-1, 30),
                         st.sampled_from([True, True, True, False])),
    attends,  # twice: attendance needs an event post first, so it is drawn more often
    st.tuples(st.just("refer"), st.sampled_from(SENDERS), st.sampled_from(["erin", "frank", "bob"])),
    st.tuples(st.just("transfer"), st.sampled_from(SENDERS), st.sampled_from(["alice", "bob", "erin", "nobody"]),
              st.sampled_from([1, 999, BALANCE, 3 * BALANCE])),
    st.tuples(st.sampled_from(["stake", "unstake"]), st.sampled_from(SENDERS),
              st.sampled_from([1, 999, STAKE, 3 * BALANCE])),
    st.tuples(st.just("register_producer"), st.sampled_from(SENDERS)),
    st.tuples(st.just("replay"), st.integers(0, 50)),
)


def build_txs(op_list, envelopes):
    """Deterministic signed txs for a list of ops (salt = position, so ids differ unless replayed)."""
    txs, posted = [], []
    for i, (op, env) in enumerate(zip(op_list, envelopes)):
        kind = op[0]
        if kind == "replay":
            if txs:
                txs.append(txs[op[1] % len(txs)])
                continue
            op, kind = ("stake", "alice", 1), "stake"
        sender = op[1]
        if kind == "post":
            extra = {}
            if op[3] is not None:
                extra["parent"] = posted[op[3] % len(posted)] if posted and op[3] >= 0 else "dave/never"
            elif EVENTS[op[4]] is not None:
                extra["event"] = EVENTS[op[4]]
            body = post_body(f"p{i}" if op[2] == "new" else op[2], **extra)
            posted.append(f"{sender}/{body['permlink']}")
        elif kind == "vote_post":
            ref = posted[op[2] % len(posted)] if posted and op[2] >= 0 else "dave/never"
            kind, body = "vote", {"post": ref, "weight": op[3]}
        elif kind == "vote_producer":
            kind, body = "vote", {"producer": op[2], "approve": op[3]}
        elif kind == "attend":
            ref = posted[op[2] % len(posted)] if posted and op[2] >= 0 else "dave/never"
            organizer = ref.split("/")[0] if op[3] else "carol"
            body = {"event": ref, "ticket": ticket(organizer, ref, sender)}
        elif kind == "refer":
            body = {"new_account": op[2], "pubkey": keypair(op[2]).public_key}
        elif kind == "transfer":
            body = {"to": op[2], "amount": op[3]}
        elif kind in ("stake", "unstake"):
            body = {"amount": op[2]}
        else:
            body = {"node_key": node_keypair(sender).public_key, "url": f"http://{sender}"}
        kw = {"salt": i}
        if env == "expired":
            kw["expires_at"] = NOW_MS
        elif env == "far":
            kw["expires_at"] = NOW_MS + MAX_EXPIRY + 1
        elif env == "wrong_chain":
            kw["chain_id"] = "other-chain"
        elif env == "bad_sig":
            kw["key"] = keypair("mallory")
        txs.append(make_tx(sender, kind, body, **kw))
    return txs


def run(genesis, txs, only=None):
    """Apply txs (or only those at the given positions, keeping their positions as indexes);
    return the world and each tx's outcome ("ok" or the rejection code)."""
    w = World(genesis)
    outcomes = []
    for i, tx in enumerate(txs):
        if only is not None and i not in only:
            continue
        try:
            T.apply_tx(w.layer, tx, w.ctx, i)
            outcomes.append("ok")
        except InvalidTx as e:
            outcomes.append(e.code)
    return w, outcomes


tx_sequences = st.lists(st.tuples(ops, st.sampled_from(ENVELOPES)), min_size=8, max_size=40).map(
    lambda pairs: ([p[0] for p in pairs], [p[1] for p in pairs]))
GENESIS = make_genesis()


@given(tx_sequences)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_same_txs_on_two_stores_give_the_same_state(seq):
    txs = build_txs(*seq)
    w1, out1 = run(GENESIS, txs)
    w2, out2 = run(GENESIS, txs)
    assert out1 == out2
    assert w1.layer.writes == w2.layer.writes
    assert list(w1.layer.writes) == list(w2.layer.writes)  # even the insertion order
    root = T.compute_state_root(types.ZERO_HASH, T.genesis_writes(GENESIS))
    assert T.compute_state_root(root, w1.layer.writes) == T.compute_state_root(root, w2.layer.writes)
    # committing the writes gives byte-identical stores
    for w in (w1, w2):
        w.kv.write({k: v for k, v in w.layer.writes.items() if v is not None},
                   {k for k, v in w.layer.writes.items() if v is None})
    assert list(w1.kv.scan(b"")) == list(w2.kv.scan(b""))


@given(tx_sequences)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_rejected_txs_leave_no_trace(seq):
    txs = build_txs(*seq)
    w_all, outcomes = run(GENESIS, txs)
    accepted = {i for i, o in enumerate(outcomes) if o == "ok"}
    for o in set(outcomes):
        note_event(o)
    w_ok, ok_outcomes = run(GENESIS, txs, only=accepted)
    assert ok_outcomes == ["ok"] * len(accepted)
    assert w_all.layer.writes == w_ok.layer.writes
    root = T.compute_state_root(types.ZERO_HASH, T.genesis_writes(GENESIS))
    assert T.compute_state_root(root, w_all.layer.writes) == T.compute_state_root(root, w_ok.layer.writes)


@given(tx_sequences)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_supply_is_conserved_and_approvals_equal_approving_stake(seq):
    w, _ = run(GENESIS, build_txs(*seq))
    accounts = {k[len(schema.ACCOUNT):].decode(): T.get_account(w.layer, k[len(schema.ACCOUNT):].decode())
                for k, _ in w.layer.scan(schema.ACCOUNT)}
    fees = get_pool(w.layer, "relationship")  # referral fees, the only way CP leaves accounts here
    assert sum(a.balance + a.stake for a in accounts.values()) + fees == len(MEMBERS) * (BALANCE + STAKE)
    assert all(a.balance >= 0 and a.stake >= 0 for a in accounts.values())
    for k, _ in w.layer.scan(schema.PRODUCER):
        name = k[len(schema.PRODUCER):].decode()
        expected = sum(a.stake for a in accounts.values() if name in a.approvals)
        assert T.get_producer(w.layer, name).approval == expected
    for a in accounts.values():
        assert a.approvals == sorted(set(a.approvals))
