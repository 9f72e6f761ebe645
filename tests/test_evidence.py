"""Equivocation evidence (core.evidence) and its report on chain (`report_equivocation`): a pair
of conflicting messages checks out only when one producer signed both for one slot, and a reported
producer is never elected again."""
import asyncio
import dataclasses
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.schedule import elect
from core.errors import InvalidTx, InvalidVote
from core.evidence import Equivocation, SignedHeader
from core.genesis import Producer
from core.types import ZERO_HASH, Block, BlockHeader, Hash, Vote
from node.config import NodeConfig
from node.keystore import write_key_file
from node.service import NodeService
from p2p.gossip import Peer
from state import governance
from state import transition as T
from state.kv import MemoryKV
from tests.conftest import CHAIN_ID, World, keypair, make_tx, node_keypair

ALICE_NODE = node_keypair("alice")


def vote(block_byte: int, slot: int = 7, voter: str = "alice", key=ALICE_NODE, chain_id=CHAIN_ID) -> Vote:
    return Vote.create(key, chain_id, Hash(bytes([block_byte]) * 32), 3, slot, voter)


def block(state_byte: int, slot: int = 7, producer: str = "alice", key=ALICE_NODE) -> Block:
    header = BlockHeader(CHAIN_ID, 3, Hash(bytes(32)), slot, 1_700_000_000_000 + slot * 500, producer,
                         ZERO_HASH, Hash(bytes([state_byte]) * 32), 1)
    return Block.create(key, header, ())


def report(w: World, evidence: Equivocation, sender: str = "bob"):
    return w.tx(sender, "report_equivocation", evidence.body())


# ------------------------------------------------------------------------------ the pair
def test_two_votes_for_different_blocks_in_one_slot_are_a_double_vote():
    a, b = vote(1), vote(2)
    ev = Equivocation.of_votes(a, b)
    assert (ev.kind, ev.producer, ev.slot, ev.chain_id) == ("double_vote", "alice", 7, CHAIN_ID)
    assert ev.targets == (a.block_id, b.block_id)
    assert ev.verify(ALICE_NODE.public_key)
    assert not ev.verify(keypair("alice").public_key)  # the account key is not the node key
    assert Equivocation.parse(**ev.body()) == ev


def test_two_signed_headers_for_one_slot_are_a_double_proposal():
    a, b = block(1), block(2)
    ev = Equivocation.of_blocks(a, b)
    assert (ev.kind, ev.producer, ev.slot) == ("double_proposal", "alice", 7)
    assert ev.targets == (a.id, b.id)
    assert ev.verify(ALICE_NODE.public_key)
    assert SignedHeader.decode(ev.first) == SignedHeader.of(a)


def test_a_pair_that_is_no_conflict_is_refused():
    bob_node = node_keypair("bob")
    cases = {
        "the same vote twice": ("double_vote", vote(1).encode(), vote(1).encode()),
        "two slots": ("double_vote", vote(1, slot=7).encode(), vote(2, slot=8).encode()),
        "two voters": ("double_vote", vote(1).encode(), vote(2, voter="bob", key=bob_node).encode()),
        "two chains": ("double_vote", vote(1).encode(), vote(2, chain_id="other").encode()),
        "the same block twice": ("double_proposal", SignedHeader.of(block(1)).encode(),
                                 SignedHeader.of(block(1)).encode()),
        "a vote and a header": ("double_vote", vote(1).encode(), SignedHeader.of(block(1)).encode()),
        "an unknown kind": ("double_spend", vote(1).encode(), vote(2).encode()),
        "not msgpack": ("double_vote", b"\xc1", vote(2).encode()),
        "not bytes": ("double_vote", "text", vote(2).encode()),
        "too large": ("double_vote", vote(1).encode() + bytes(1024), vote(2).encode()),
    }
    for why, (kind, first, second) in cases.items():
        with pytest.raises(InvalidTx) as e:
            Equivocation.parse(kind, first, second)
        assert e.value.code == "invalid_evidence", why


def test_a_pair_signed_by_someone_else_does_not_verify():
    forged = Equivocation.of_votes(vote(1, key=node_keypair("mallory")), vote(2, key=node_keypair("mallory")))
    assert not forged.verify(ALICE_NODE.public_key)
    half = Equivocation.of_votes(vote(1), vote(2, key=node_keypair("mallory")))
    assert not half.verify(ALICE_NODE.public_key)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(["double_vote", "double_proposal"]), cut=st.integers(0, 300),
       flip=st.integers(0, 300), junk=st.binary(max_size=64), which=st.booleans())
def test_any_mangled_pair_is_refused_with_invalid_evidence_or_still_checks_out(kind, cut, flip, junk, which):
    good = Equivocation.of_votes(vote(1), vote(2)) if kind == "double_vote" else Equivocation.of_blocks(block(1), block(2))
    part = bytearray(good.first if which else good.second)
    if flip < len(part):
        part[flip] ^= 0x5A
    mangled = bytes(part[:cut]) + junk if cut < len(part) else bytes(part)
    first, second = (mangled, good.second) if which else (good.first, mangled)
    try:
        ev = Equivocation.parse(kind, first, second)
    except InvalidTx as e:
        assert e.code == "invalid_evidence"
    else:  # still a well-formed conflicting pair: its signatures decide
        assert ev.verify(ALICE_NODE.public_key) == (mangled == (good.first if which else good.second))


# ------------------------------------------------------------------------------ on chain
def test_a_reported_equivocation_is_recorded_and_the_producer_never_elected_again(genesis):
    w = World(genesis)
    w.do("bob", "vote", {"producer": "alice", "approve": True})
    assert "alice" in governance.get_candidates(w.layer)
    ev = Equivocation.of_votes(vote(1), vote(2))
    w.apply(report(w, ev))
    record = T.get_equivocation(w.layer, "alice")
    assert (record.kind, record.slot, record.first, record.second, record.reporter, record.reported_height) == \
        ("double_vote", 7, ev.first, ev.second, "bob", w.ctx.height)
    assert "alice" not in governance.get_candidates(w.layer)
    # re-registering, with any key, does not bring it back
    with pytest.raises(InvalidTx) as e:
        w.do("alice", "register_producer", {"node_key": node_keypair("alice2").public_key, "url": "http://x"})
    assert (e.value.code, e.value.status) == ("producer_equivocated", 403)
    # one record per producer
    with pytest.raises(InvalidTx) as e:
        w.apply(report(w, Equivocation.of_blocks(block(1), block(2))))
    assert (e.value.code, e.value.status) == ("already_reported", 409)


def test_an_equivocating_genesis_producer_leaves_the_schedule_unless_it_is_the_last_one(genesis):
    two = dataclasses.replace(genesis, producers=genesis.producers + (
        Producer("bob", node_keypair("bob").public_key, "http://bob.test"),))
    w = World(two)

    def next_office():
        candidates = governance.get_candidates(w.layer)
        return elect(("alice", "bob"), {n: r.approval for n, r in candidates.items()}, set(candidates),
                     21, 1, frozenset({"alice", "bob"}))
    assert next_office() == ("alice", "bob")
    w.apply(report(w, Equivocation.of_votes(vote(1), vote(2)), sender="carol"))
    assert next_office() == ("bob",)
    bob = node_keypair("bob")
    w.apply(report(w, Equivocation.of_votes(vote(1, voter="bob", key=bob), vote(2, voter="bob", key=bob)),
                   sender="carol"))
    assert next_office() == ("alice", "bob")  # rather than no producer at all


def test_reports_that_prove_nothing_are_refused_and_change_nothing(genesis):
    w = World(genesis)
    mallory = node_keypair("mallory")
    cases = {
        ("invalid_evidence", 400): Equivocation.of_votes(vote(1, key=mallory), vote(2, key=mallory)),
        ("unknown_producer", 404): Equivocation.of_votes(vote(1, voter="dave", key=mallory),
                                                         vote(2, voter="dave", key=mallory)),
    }
    other_chain = Equivocation.of_votes(vote(1, chain_id="other"), vote(2, chain_id="other"))
    cases[("invalid_evidence", 400, "chain")] = other_chain
    before = w.snapshot()
    for (code, status, *_), ev in cases.items():
        with pytest.raises(InvalidTx) as e:
            w.apply(report(w, ev))
        assert (e.value.code, e.value.status) == (code, status)
    assert w.snapshot() == before
    tx = report(w, Equivocation.of_votes(vote(1), vote(2)))
    with pytest.raises(InvalidTx) as e:  # the static checks of the body
        w.tx("bob", "report_equivocation", dict(tx.body, kind="double_spend"))
    assert e.value.code == "invalid_field"


# ------------------------------------------------------------------------------ a node
def test_a_node_that_sees_two_blocks_of_one_slot_reports_them_and_the_report_is_recorded(genesis, tmp_path):
    """bob's node (signing with bob's account key, as testnet producers do) is handed two blocks
    alice signed for one slot: it reports her with a tx of its own, which the next block records."""
    two = dataclasses.replace(genesis, producers=tuple(
        Producer(n, keypair(n).public_key, f"http://{n}.test") for n in ("alice", "bob")))
    (tmp_path / "genesis.json").write_text(json.dumps(two.to_json()))
    write_key_file(tmp_path / "key.json", "bob", keypair("bob"))
    service = NodeService(NodeConfig(genesis=str(tmp_path / "genesis.json"),
                                     key_file=str(tmp_path / "key.json")), kv=MemoryKV())
    chain = service.chain
    slot = two.slot_at(time.time_ns() // 1_000_000)
    slot += chain.producer_for_slot(slot) != "alice"
    payment = make_tx("carol", "transfer", {"to": "dave", "amount": 5},
                      expires_at=two.slot_start_ms(slot) + 600_000)
    first, _, _ = chain.build_block(keypair("alice"), "alice", slot, [])
    second, _, _ = chain.build_block(keypair("alice"), "alice", slot, [payment])
    chain.add_block(first, slot)
    assert chain.evidence == {} and len(service.mempool) == 0
    chain.add_block(second, slot)
    assert chain.evidence == {("alice", "double_proposal"): Equivocation.of_blocks(first, second)}
    # her votes for both are a second kind of evidence, kept, but not reported again
    votes = [Vote.create(keypair("alice"), CHAIN_ID, b.id, b.header.height, slot, "alice") for b in (first, second)]
    for v in votes:
        chain.add_vote(v)
    assert chain.evidence[("alice", "double_vote")] == Equivocation.of_votes(*votes)
    reports = [tx for tx in service.mempool.take(100) if tx.kind == "report_equivocation"]
    assert [(tx.sender, tx.body) for tx in reports] == [("bob", Equivocation.of_blocks(first, second).body())]
    block, layer, rejected = chain.build_block(keypair("bob"), "bob", slot + 1, reports)
    assert rejected == [] and T.get_equivocation(layer, "alice").reporter == "bob"


def test_a_producer_cannot_change_its_key_out_of_reach_of_a_report(genesis):
    """What a producer signed with the node key it replaced last still convicts it, and it may
    change that key only once per KEY_CHANGE_INTERVAL_BLOCKS, so a report has that long to land."""
    new, newer = node_keypair("alice-2"), node_keypair("alice-3")

    def changed_once() -> World:
        w = World(genesis)
        w.do("alice", "register_producer", {"node_key": ALICE_NODE.public_key, "url": "http://moved"})
        assert (w.producer("alice").previous_key, w.producer("alice").url) == (b"", "http://moved")
        w.do("alice", "register_producer", {"node_key": new.public_key, "url": "http://a"})
        assert (w.producer("alice").previous_key, w.producer("alice").key_changed_height) == (
            ALICE_NODE.public_key, w.ctx.height)
        return w

    for key in (ALICE_NODE, new):  # signed before the change or after it: both convict
        w = changed_once()
        w.apply(report(w, Equivocation.of_votes(vote(1, key=key), vote(2, key=key))))
        assert governance.has_equivocated(w.layer, "alice")
    w = changed_once()
    before = w.snapshot()
    with pytest.raises(InvalidTx) as e:
        w.do("alice", "register_producer", {"node_key": newer.public_key, "url": "http://a"})
    assert (e.value.code, e.value.status) == ("key_change_too_soon", 429)
    assert w.snapshot() == before
    # an interval later it may change again; the key two changes back no longer verifies
    w.ctx = dataclasses.replace(w.ctx, height=w.ctx.height + T.KEY_CHANGE_INTERVAL_BLOCKS)
    w.do("alice", "register_producer", {"node_key": newer.public_key, "url": "http://a"})
    assert w.producer("alice").previous_key == new.public_key
    with pytest.raises(InvalidTx) as e:
        w.apply(report(w, Equivocation.of_votes(vote(1), vote(2))))
    assert e.value.code == "invalid_evidence"


def test_a_producers_third_block_for_a_slot_is_held_until_other_producers_vote_for_it(genesis, tmp_path):
    """Every block of an equivocating producer used to be applied in full. Now the first two of a
    slot are (the second is the evidence); a third is held unapplied, and applied once n/3+1 of
    the slot's producers verifiably voted for it (here 2 of 4: its producer and one more), since
    then an honest node voted for it and it may be notarized. A forged vote is refused."""
    names = ("alice", "bob", "carol", "dave")
    four = dataclasses.replace(genesis, producers=tuple(
        Producer(n, keypair(n).public_key, f"http://{n}.test") for n in names))
    (tmp_path / "genesis.json").write_text(json.dumps(four.to_json()))
    service = NodeService(NodeConfig(genesis=str(tmp_path / "genesis.json"), key_file=""), kv=MemoryKV())
    chain = service.chain
    slot = four.slot_at(time.time_ns() // 1_000_000)
    while chain.producer_for_slot(slot) != "alice":
        slot -= 1  # (a block may be at most one slot ahead of now)
    blocks = [chain.build_block(keypair("alice"), "alice", slot, [make_tx(
        "carol", "transfer", {"to": "dave", "amount": 1 + i}, expires_at=four.slot_start_ms(slot) + 600_000)])[0]
        for i in range(4)]
    imported = [asyncio.run(service.import_block_bytes(b.encode(), source="bob")) for b in blocks]
    assert imported == [True, True, False, False]
    third, fourth = blocks[2].id, blocks[3].id
    assert set(chain.held) == {third, fourth} and third not in chain.nodes
    assert ("alice", "double_proposal") in chain.evidence

    def vote(voter, key=None):
        b = blocks[2]
        return Vote.create(key or keypair(voter), CHAIN_ID, b.id, b.header.height, slot, voter)
    service.on_vote(vote("alice"), source="bob")  # the equivocator's own vote: 1 of the 2 needed
    assert third in chain.held
    with pytest.raises(InvalidVote) as e:
        service.on_vote(vote("bob", key=node_keypair("mallory")), source="carol")
    assert e.value.code == "bad_signature" and third in chain.held
    service.on_vote(vote("bob"), source="bob")
    assert third not in chain.held and sorted(chain.nodes[third].votes) == ["alice", "bob"]
    assert set(chain.held) == {fourth}
    # a node that missed the votes for a held block learns them by sync, which sends each block
    # with its votes: the block is released there
    b = blocks[3]
    votes = [Vote.create(keypair(v), CHAIN_ID, b.id, b.header.height, slot, v).to_list() for v in ("carol", "dave")]
    asyncio.run(service.net._apply([[b.id, b.encode(), votes]], Peer("http://carol.test")))
    assert not chain.held and sorted(chain.nodes[fourth].votes) == ["carol", "dave"]
