"""The state transition (state.transition) over MemoryKV and state.view.Layer: every kind's effect
and every rejection with its exact code and no state change (blocks and properties:
test_transition_blocks.py)."""
import dataclasses

import pytest

from core import codec, types
from core.errors import InvalidTx
from core.genesis import ChainParams
from state import schema
from state import transition as T
from state.rules import GENESIS_PARAMS
from state.view import Journal, Layer
from tests.conftest import (BALANCE, CHAIN_ID, MEMBERS, NOW_MS, STAKE, World, event, keypair,
                            node_keypair, post_body, ticket)


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
    assert T.get_tx_location(w.layer, tx) == (1, 0)


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
    fee = GENESIS_PARAMS["referral_fee"]
    w.do("bob", "transfer", {"to": "erin", "amount": fee + 300})
    w.do("erin", "transfer", {"to": "carol", "amount": 100})
    w.do("erin", "refer", {"new_account": "frank", "pubkey": keypair("frank").public_key})
    assert w.account("erin").balance == 200  # the referral fee went into the relationship pool
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
    assert T.get_tx_location(w.layer, tx) is None or code == "duplicate"


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
