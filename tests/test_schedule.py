"""DPoS election: the schedule is elected from final state at epoch boundaries, takes effect two
epochs later, survives a restart, and missed slots are counted per producer."""
from hypothesis import given, strategies as st

from consensus.chain import Chain
from consensus.schedule import ELECTION_DELAY, compute_schedule, slots_per_index
from core.types import Vote
from state.kv import MemoryKV
from tests.conftest import CHAIN_ID, make_genesis, make_tx, node_keypair

ALICE = node_keypair("alice")


def produce(chain: Chain, slot: int, txs=()):
    block, layer, rejected = chain.build_block(ALICE, "alice", slot, list(txs))
    assert not rejected, rejected
    node = chain.add_block(block, None, own_layer=layer)
    return chain.add_vote(Vote.create(ALICE, CHAIN_ID, node.id, node.height, node.slot, "alice"))


def election_txs():
    return [make_tx("bob", "register_producer", {"node_key": node_keypair("bob").public_key, "url": "http://b"}),
            make_tx("carol", "register_producer", {"node_key": node_keypair("carol").public_key, "url": "http://c"}),
            make_tx("dave", "vote", {"producer": "bob", "approve": True}),
            make_tx("dave", "vote", {"producer": "carol", "approve": True}),
            make_tx("alice", "vote", {"producer": "carol", "approve": True})]


@given(st.integers(1, 25), st.integers(0, 10_000), st.integers(0, 500))
def test_slots_per_index_matches_counting(n, start, span):
    expected = [0] * n
    for s in range(start, start + span):
        expected[s % n] += 1
    assert slots_per_index(n, start, start + span) == expected


def test_no_approved_candidate_keeps_the_genesis_producers():
    g = make_genesis()
    chain = Chain(MemoryKV(), g)
    assert compute_schedule(chain.final.layer, g, b"seed") == ("alice",)


def test_election_takes_effect_two_epochs_after_its_block_is_final_and_survives_restart():
    kv, g = MemoryKV(), make_genesis()
    chain = Chain(kv, g)
    first = g.params.epoch_slots + 40  # the first block of epoch 1, inside the txs' expiry window
    produce(chain, first, election_txs())
    produce(chain, first + 1)
    assert not chain.schedules.table  # not final yet: nothing elected
    produce(chain, first + 2)
    assert chain.final.slot >= first
    effective = (1 + ELECTION_DELAY) * g.params.epoch_slots
    assert chain.schedule(effective - 1) == ["alice"]
    elected = chain.schedule(effective)
    assert sorted(elected) == ["bob", "carol"]  # approvals 50k and 100k; alice has none
    assert chain.producer_for_slot(effective + 1) == elected[(effective + 1) % 2]
    assert Chain(kv, g).schedule(effective) == elected  # recorded in the store


def test_election_order_is_by_approval_then_name_and_seeded():
    g = make_genesis()
    chain = Chain(MemoryKV(), g)
    produce(chain, 100, election_txs())
    produce(chain, 101)
    produce(chain, 102)
    layer = chain.final.layer
    assert compute_schedule(layer, g, b"a") == compute_schedule(layer, g, b"a")
    assert {compute_schedule(layer, g, bytes([i])) for i in range(16)} == {("bob", "carol"), ("carol", "bob")}


def test_missed_slots_are_counted_per_producer_when_final():
    kv, g = MemoryKV(), make_genesis()
    chain = Chain(kv, g)
    for slot in (100, 101, 102, 110, 111, 112):
        produce(chain, slot)
    assert chain.final_height >= 5
    assert chain.missed_slots == {"alice": 7}  # slots 103..109
    assert Chain(kv, g).missed_slots == {"alice": 7}
