"""The state transition (state.transition) over MemoryKV and state.view.Layer: every kind's effect,
every rejection with its exact code and no state change, blocks, and determinism properties."""
import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note_event
from hypothesis import strategies as st

from core import codec, types
from core.errors import InvalidBlock, InvalidTx
from core.genesis import ChainParams
from core.types import Block, BlockHeader, Tx, make_ticket, merkle_root
from state import schema
from state import transition as T
from state.kv import MemoryKV
from state.view import Journal, Layer
from tests.conftest import (BALANCE, CHAIN_ID, MEMBERS, NOW_MS, STAKE, keypair, make_genesis,
                            make_tx, node_keypair)


class World:
    """Genesis state in a MemoryKV, a committed base layer over it, and one block's layer on top."""

    def __init__(self, genesis, height: int = 1, ts: int = NOW_MS):
        self.genesis = genesis
        self.kv = MemoryKV()
        self.kv.write(T.genesis_writes(genesis))
        self.base = Layer(None, self.kv)
        self.layer = Layer(self.base)
        self.ctx = T.BlockContext(genesis.chain_id, height, height, ts, genesis.params.max_tx_expiry_ms,
                                  genesis.params.max_producer_approvals)
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


# ---------------------------------------------------------------------------------- genesis
def test_genesis_state(genesis, w):
    for name in MEMBERS:
        acct = w.account(name)
        assert (acct.public_key, acct.balance, acct.stake, acct.approvals) == (
            keypair(name).public_key, BALANCE, STAKE, [])
    prod = w.producer("alice")
    assert (prod.node_key, prod.url, prod.approval) == (node_keypair("alice").public_key, "http://alice.test", 0)
    assert w.producer("bob") is None
    header = T.genesis_header(genesis)
    assert header.state_root == T.compute_state_root(types.ZERO_HASH, T.genesis_writes(genesis))
    assert header.prev_id == genesis.hash and header.height == 0


# ---------------------------------------------------------------------------------- effects
def test_post(w):
    tx = w.do("bob", "post", post_body("hello", tags=["a", "b"]))
    p = w.post("bob/hello")
    assert (p.author, p.permlink, p.title, p.body, p.tags, p.parent, p.event) == (
        "bob", "hello", "title hello", "text", ["a", "b"], "", None)
    assert (p.created_height, p.created_ms, p.net_votes, p.vote_count, p.children) == (1, NOW_MS, 0, 0, 0)
    assert T.get_tx_location(w.layer, tx.id) == (1, 0)


def test_comment_increments_parents_children(w):
    w.do("bob", "post", post_body("hello"))
    w.do("carol", "post", post_body("re-hello", parent="bob/hello"))
    w.do("dave", "post", post_body("re-hello", parent="bob/hello"))
    w.do("bob", "post", post_body("re-re", parent="carol/re-hello"))
    assert w.post("bob/hello").children == 2
    assert w.post("carol/re-hello").children == 1
    assert w.post("carol/re-hello").parent == "bob/hello"


def test_event_post(w):
    w.do("alice", "post", post_body("meetup", event=event(capacity=3)))
    assert w.post("alice/meetup").event == event(capacity=3)
    assert w.post("alice/meetup").attendees == 0


def test_vote_on_post_and_revote_replaces_weight(w):
    w.do("bob", "post", post_body("hello"))
    w.do("carol", "vote", {"post": "bob/hello", "weight": 5000})
    p = w.post("bob/hello")
    assert (p.net_votes, p.vote_count) == (5000, 1)
    w.do("carol", "vote", {"post": "bob/hello", "weight": -3000})
    p = w.post("bob/hello")
    assert (p.net_votes, p.vote_count) == (-3000, 1)
    w.do("dave", "vote", {"post": "bob/hello", "weight": 1000})
    p = w.post("bob/hello")
    assert (p.net_votes, p.vote_count) == (-2000, 2)
    assert codec.unpack(w.layer.get(schema.post_vote_key("bob/hello", "carol")), 16) == -3000


def test_producer_approval_follows_stake(w):
    w.do("bob", "vote", {"producer": "alice", "approve": True})
    assert w.account("bob").approvals == ["alice"]
    assert w.producer("alice").approval == STAKE
    w.do("carol", "vote", {"producer": "alice", "approve": True})
    assert w.producer("alice").approval == 2 * STAKE
    w.do("bob", "stake", {"amount": 1000})
    assert w.producer("alice").approval == 2 * STAKE + 1000
    w.do("bob", "unstake", {"amount": 400})
    assert w.producer("alice").approval == 2 * STAKE + 600
    w.do("bob", "vote", {"producer": "alice", "approve": True})  # approving twice changes nothing
    assert w.producer("alice").approval == 2 * STAKE + 600
    assert w.account("bob").approvals == ["alice"]
    w.do("bob", "vote", {"producer": "alice", "approve": False})
    assert w.producer("alice").approval == STAKE
    assert w.account("bob").approvals == []
    w.do("bob", "vote", {"producer": "alice", "approve": False})  # revoking twice changes nothing
    assert w.producer("alice").approval == STAKE
    w.do("carol", "unstake", {"amount": STAKE})
    assert w.producer("alice").approval == 0


def test_approvals_are_kept_sorted_and_each_gets_the_stake(w):
    for name in ("dave", "bob"):
        w.do(name, "register_producer", {"node_key": node_keypair(name).public_key, "url": ""})
    for name in ("dave", "alice", "bob"):
        w.do("carol", "vote", {"producer": name, "approve": True})
    assert w.account("carol").approvals == ["alice", "bob", "dave"]
    w.do("carol", "stake", {"amount": 7})
    assert [w.producer(n).approval for n in ("alice", "bob", "dave")] == [STAKE + 7] * 3


def test_attend_with_a_valid_ticket_inside_the_window(w):
    # the window is inclusive at both ends
    w.do("alice", "post", post_body("meetup", event=event(starts=NOW_MS, ends=NOW_MS + 1, capacity=2)))
    w.do("alice", "post", post_body("party", event=event(starts=NOW_MS - 1, ends=NOW_MS, capacity=1)))
    w.do("bob", "attend", {"event": "alice/meetup", "ticket": ticket("alice", "alice/meetup", "bob")})
    w.do("alice", "attend", {"event": "alice/meetup", "ticket": ticket("alice", "alice/meetup", "alice")})
    w.do("bob", "attend", {"event": "alice/party", "ticket": ticket("alice", "alice/party", "bob")})
    assert w.post("alice/meetup").attendees == 2
    assert w.post("alice/party").attendees == 1
    assert w.layer.get(schema.attendance_key("alice/meetup", "bob")) == codec.pack(1)


def test_refer_creates_a_member_who_can_transact(w):
    w.do("alice", "refer", {"new_account": "erin", "pubkey": keypair("erin").public_key})
    erin = w.account("erin")
    assert (erin.public_key, erin.balance, erin.stake, erin.referrer, erin.joined_height) == (
        keypair("erin").public_key, 0, 0, "alice", 1)
    w.do("erin", "post", post_body("first"))
    w.do("bob", "transfer", {"to": "erin", "amount": 300})
    w.do("erin", "transfer", {"to": "carol", "amount": 100})
    w.do("erin", "refer", {"new_account": "frank", "pubkey": keypair("frank").public_key})
    assert w.account("erin").balance == 200
    assert w.account("frank").referrer == "erin"


def test_transfer(w):
    w.do("alice", "transfer", {"to": "bob", "amount": 1234, "memo": "thanks"})
    assert (w.account("alice").balance, w.account("bob").balance) == (BALANCE - 1234, BALANCE + 1234)
    w.do("alice", "transfer", {"to": "bob", "amount": BALANCE - 1234})  # the whole balance
    assert w.account("alice").balance == 0


def test_transfer_to_self_changes_nothing_but_is_valid(w):
    w.do("alice", "transfer", {"to": "alice", "amount": 500})
    assert w.account("alice").balance == BALANCE
    with pytest.raises(InvalidTx) as e:
        w.do("alice", "transfer", {"to": "alice", "amount": BALANCE + 1})
    assert e.value.code == "insufficient_balance"


def test_stake_and_unstake(w):
    w.do("dave", "stake", {"amount": 1000})
    a = w.account("dave")
    assert (a.balance, a.stake) == (BALANCE - 1000, STAKE + 1000)
    w.do("dave", "unstake", {"amount": STAKE + 1000})
    a = w.account("dave")
    assert (a.balance, a.stake) == (BALANCE + STAKE, 0)


def test_register_producer_and_reregister_keeps_approval(w):
    w.do("bob", "register_producer", {"node_key": node_keypair("bob").public_key, "url": "http://b"})
    p = w.producer("bob")
    assert (p.node_key, p.url, p.approval, p.registered_height) == (node_keypair("bob").public_key, "http://b", 0, 1)
    w.do("carol", "vote", {"producer": "bob", "approve": True})
    w.do("bob", "register_producer", {"node_key": node_keypair("bob2").public_key, "url": "http://b2"})
    p = w.producer("bob")
    assert (p.node_key, p.url, p.approval) == (node_keypair("bob2").public_key, "http://b2", STAKE)


def test_apply_tx_calls_verify_exactly_once_per_tx(w):
    calls = []

    def counting_verify(tx, public_key):
        calls.append(tx.id)
        return T.verify_signature(tx, public_key)

    txs = [w.tx("alice", "post", post_body("p")), w.tx("bob", "vote", {"post": "alice/p", "weight": 1}),
           w.tx("carol", "stake", {"amount": 5}), w.tx("dave", "transfer", {"to": "bob", "amount": 5}),
           w.tx("bob", "refer", {"new_account": "erin", "pubkey": keypair("erin").public_key}),
           w.tx("erin", "register_producer", {"node_key": bytes(32), "url": ""})]
    for tx in txs:
        w.apply(tx, verify=counting_verify)
    assert calls == [tx.id for tx in txs]
    # a tx whose signature is checked and fails is also verified once, and rejected
    bad = w.tx("alice", "stake", {"amount": 1}, key=keypair("bob"))
    with pytest.raises(InvalidTx):
        w.apply(bad, verify=counting_verify)
    assert calls[-1] == bad.id and len(calls) == len(txs) + 1


def test_the_injected_verifier_decides(w):
    forged = w.tx("alice", "stake", {"amount": 1}, key=keypair("bob"))
    w.apply(forged, verify=lambda tx, key: True)  # a node that already verified it may skip the check
    assert w.account("alice").stake == STAKE + 1
    with pytest.raises(InvalidTx) as e:
        w.apply(w.tx("alice", "stake", {"amount": 1}), verify=lambda tx, key: False)
    assert e.value.code == "bad_signature"


# ---------------------------------------------------------------------------------- rejections
def _c(sender, kind, body, **kw):
    """A case with no setup: just this tx."""
    return lambda w: w.tx(sender, kind, body, **kw)


def _event_setup(w, **ev):
    w.do("alice", "post", post_body("meetup", event=event(**ev)))


def _attend(attendee, organizer="alice", ref="alice/meetup", chain_id=CHAIN_ID):
    return {"event": ref, "ticket": ticket(organizer, ref, attendee, chain_id)}


def case_duplicate(w):
    tx = w.do("alice", "stake", {"amount": 1})
    return tx


def case_unknown_event_not_an_event(w):
    w.do("alice", "post", post_body("plain"))
    return w.tx("bob", "attend", _attend("bob", ref="alice/plain"))


def case_already_attended(w):
    _event_setup(w)
    w.do("bob", "attend", _attend("bob"))
    return w.tx("bob", "attend", _attend("bob"))


def case_not_open_yet(w):
    _event_setup(w, starts=NOW_MS + 1, ends=NOW_MS + 1000)
    return w.tx("bob", "attend", _attend("bob"))


def case_closed(w):
    _event_setup(w, starts=NOW_MS - 1000, ends=NOW_MS - 1)
    return w.tx("bob", "attend", _attend("bob"))


def case_event_full(w):
    _event_setup(w, capacity=1)
    w.do("bob", "attend", _attend("bob"))
    return w.tx("carol", "attend", _attend("carol"))


def with_event(make):
    def case(w):
        _event_setup(w)
        return make(w)
    return case


def case_post_exists(w):
    w.do("bob", "post", post_body("hello"))
    return w.tx("bob", "post", post_body("hello", title="again"))


def case_post_exists_as_comment(w):
    w.do("bob", "post", post_body("hello"))
    w.do("bob", "post", post_body("re", parent="bob/hello"))
    return w.tx("bob", "post", post_body("re"))


def case_too_many_approvals(w):
    w.ctx = dataclasses.replace(w.ctx, max_producer_approvals=1)
    w.do("bob", "register_producer", {"node_key": bytes(32), "url": ""})
    w.do("carol", "vote", {"producer": "alice", "approve": True})
    return w.tx("carol", "vote", {"producer": "bob", "approve": True})


def case_unstake_after_unstake(w):
    w.do("bob", "unstake", {"amount": STAKE - 10})
    return w.tx("bob", "unstake", {"amount": 11})


def case_spent_balance(w):
    w.do("bob", "transfer", {"to": "carol", "amount": BALANCE - 5})
    return w.tx("bob", "stake", {"amount": 6})


MAX_EXPIRY = ChainParams().max_tx_expiry_ms
REJECTIONS = [
    ("wrong_chain", _c("alice", "stake", {"amount": 1}, chain_id="other-chain"), "wrong_chain", 400),
    ("expired_now", _c("alice", "stake", {"amount": 1}, expires_at=NOW_MS), "expired", 400),
    ("expired_before", _c("alice", "stake", {"amount": 1}, expires_at=NOW_MS - 1), "expired", 400),
    ("expiry_too_far", _c("alice", "stake", {"amount": 1}, expires_at=NOW_MS + MAX_EXPIRY + 1),
     "expiry_too_far", 400),
    ("duplicate", case_duplicate, "duplicate", 409),
    ("not_member", _c("zed", "stake", {"amount": 1}), "not_member", 403),
    ("not_member_yet", _c("erin", "post", post_body("x")), "not_member", 403),
    ("bad_signature", _c("alice", "stake", {"amount": 1}, key=keypair("bob")), "bad_signature", 400),
    ("unknown_post_vote", _c("bob", "vote", {"post": "alice/nope", "weight": 1}), "unknown_post", 404),
    ("unknown_post_parent", _c("bob", "post", post_body("re", parent="alice/nope")), "unknown_post", 404),
    ("unknown_event_missing", _c("bob", "attend", _attend("bob")), "unknown_event", 404),
    ("unknown_event_not_an_event", case_unknown_event_not_an_event, "unknown_event", 404),
    ("already_attended", case_already_attended, "already_attended", 409),
    ("event_not_open_yet", case_not_open_yet, "event_not_open", 400),
    ("event_closed", case_closed, "event_not_open", 400),
    ("event_full", case_event_full, "event_full", 400),
    ("bad_ticket_non_organizer", with_event(lambda w: w.tx("bob", "attend", _attend("bob", organizer="carol"))),
     "bad_ticket", 400),
    ("bad_ticket_self_signed", with_event(lambda w: w.tx("bob", "attend", _attend("bob", organizer="bob"))),
     "bad_ticket", 400),
    ("bad_ticket_other_attendee", with_event(
        lambda w: w.tx("bob", "attend", {"event": "alice/meetup", "ticket": ticket("alice", "alice/meetup", "carol")})),
     "bad_ticket", 400),
    ("bad_ticket_other_chain", with_event(lambda w: w.tx("bob", "attend", _attend("bob", chain_id="other-chain"))),
     "bad_ticket", 400),
    ("account_exists", _c("alice", "refer", {"new_account": "bob", "pubkey": keypair("x").public_key}),
     "account_exists", 409),
    ("account_exists_self", _c("alice", "refer", {"new_account": "alice", "pubkey": keypair("x").public_key}),
     "account_exists", 409),
    ("post_exists", case_post_exists, "post_exists", 409),
    ("post_exists_as_comment", case_post_exists_as_comment, "post_exists", 409),
    ("unknown_account", _c("alice", "transfer", {"to": "nobody", "amount": 1}), "unknown_account", 404),
    ("insufficient_balance_transfer", _c("alice", "transfer", {"to": "bob", "amount": BALANCE + 1}),
     "insufficient_balance", 400),
    ("insufficient_balance_stake", _c("alice", "stake", {"amount": BALANCE + 1}), "insufficient_balance", 400),
    ("insufficient_balance_after_spending", case_spent_balance, "insufficient_balance", 400),
    ("insufficient_stake", _c("alice", "unstake", {"amount": STAKE + 1}), "insufficient_stake", 400),
    ("insufficient_stake_after_unstake", case_unstake_after_unstake, "insufficient_stake", 400),
    ("unknown_producer_approve", _c("alice", "vote", {"producer": "bob", "approve": True}), "unknown_producer", 404),
    ("unknown_producer_revoke", _c("alice", "vote", {"producer": "bob", "approve": False}), "unknown_producer", 404),
    ("too_many_approvals", case_too_many_approvals, "too_many_approvals", 400),
]


@pytest.mark.parametrize("make,code,status", [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS])
def test_rejection_has_its_code_and_changes_nothing(genesis, make, code, status):
    w = World(genesis)
    tx = make(w)
    before = w.snapshot()
    with pytest.raises(InvalidTx) as e:
        w.apply(tx)
    assert (e.value.code, e.value.status) == (code, status), str(e.value)
    assert w.snapshot() == before
    assert T.get_tx_location(w.layer, tx.id) is None or code == "duplicate"


def test_expiry_boundaries_are_accepted(w):
    w.do("alice", "stake", {"amount": 1}, expires_at=NOW_MS + 1)
    w.do("alice", "stake", {"amount": 1}, expires_at=NOW_MS + MAX_EXPIRY)
    assert w.account("alice").stake == STAKE + 2


def test_duplicate_is_found_in_parent_layers_and_the_store(genesis):
    w = World(genesis)
    tx = w.do("alice", "stake", {"amount": 1})
    # the block's writes committed to the store; a later block sees the id there
    w.kv.write({k: v for k, v in w.layer.writes.items() if v is not None})
    for layer in (Layer(Layer(None, w.kv)), Layer(w.layer)):
        with pytest.raises(InvalidTx) as e:
            T.apply_tx(layer, tx, w.ctx, 0)
        assert e.value.code == "duplicate"
        assert layer.writes == {}


class FailingRules:
    """A rules hook that writes, then rejects: none of the tx's writes may survive."""

    def on_tx(self, journal: Journal, tx, ctx):
        journal.put(b"v1/s/rules/scratch", b"x")
        raise InvalidTx("rules_reject", "the rules contract said no")


def test_rules_rejection_after_base_writes_leaves_nothing(w):
    w.do("bob", "post", post_body("hello"))
    before = w.snapshot()
    tx = w.tx("carol", "post", post_body("re", parent="bob/hello"))
    with pytest.raises(InvalidTx) as e:
        w.apply(tx, rules=FailingRules())
    assert e.value.code == "rules_reject"
    assert w.snapshot() == before
    assert w.post("bob/hello").children == 0


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
    assert [T.get_tx_location(layer, t.id) for t in block.txs] == [(1, 0), (1, 1), (1, 2)]
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
    assert sum(a.balance + a.stake for a in accounts.values()) == len(MEMBERS) * (BALANCE + STAKE)
    assert all(a.balance >= 0 and a.stake >= 0 for a in accounts.values())
    for k, _ in w.layer.scan(schema.PRODUCER):
        name = k[len(schema.PRODUCER):].decode()
        expected = sum(a.stake for a in accounts.values() if name in a.approvals)
        assert T.get_producer(w.layer, name).approval == expected
    for a in accounts.values():
        assert a.approvals == sorted(set(a.approvals))
