"""DPoS election: the schedule is elected from final state at epoch boundaries and takes effect two
epochs later; it changes by so little that the producers kept from the previous schedule can
always finalize; a candidate needs the minimum approval; absent producers are jailed until they
send `unjail`; all of it survives a restart. Missed slots are counted per producer."""
import dataclasses

from hypothesis import given, strategies as st

from consensus.chain import Chain
from consensus.schedule import ELECTION_DELAY, MAX_JAIL_DOUBLINGS, elect, slots_per_index
from core.quorum import notarization_quorum
from core.types import Vote
from state import transition as T
from state.kv import MemoryKV
from tests.conftest import CHAIN_ID, STAKE, TEST_PARAMS, make_genesis, make_tx, node_keypair

ALICE = node_keypair("alice")
EPOCH = 10
FOUR = ("alice", "bob", "carol", "dave")
PARAMS = dataclasses.replace(TEST_PARAMS, epoch_slots=EPOCH)


def produce(chain: Chain, slot: int, txs=(), absent=()):
    """The scheduled producer builds a block for `slot` (none if it is absent), and every
    scheduled producer that is present votes for it."""
    producer = chain.producer_for_slot(slot)
    if producer in absent:
        return None
    block, layer, rejected = chain.build_block(node_keypair(producer), producer, slot, list(txs))
    assert not rejected, rejected
    node = chain.add_block(block, None, own_layer=layer)
    for voter in chain.schedule(slot):
        if voter not in absent:
            chain.add_vote(Vote.create(node_keypair(voter), CHAIN_ID, node.id, node.height, node.slot, voter))
    return node


def run(chain: Chain, slots, absent=(), txs_at=None):
    for slot in slots:
        produce(chain, slot, (txs_at or {}).get(slot, ()), absent)


def expiring(slot: int, genesis) -> int:
    return genesis.slot_start_ms(slot) + 60_000


def registration(name: str, slot: int, genesis):
    return make_tx(name, "register_producer", {"node_key": node_keypair(name).public_key, "url": f"http://{name}"},
                   expires_at=expiring(slot, genesis))


def approval(voter: str, name: str, slot: int, genesis, salt: int = 0):
    return make_tx(voter, "vote", {"producer": name, "approve": True}, expires_at=expiring(slot, genesis), salt=salt)


# ------------------------------------------------------------------------------ the rule
@given(st.integers(1, 25), st.integers(0, 10_000), st.integers(0, 500))
def test_slots_per_index_matches_counting(n, start, span):
    expected = [0] * n
    for s in range(start, start + span):
        expected[s % n] += 1
    assert slots_per_index(n, start, start + span) == expected


NAMES = [f"p{i:02d}" for i in range(30)]


@given(previous=st.lists(st.sampled_from(NAMES), min_size=1, max_size=25, unique=True),
       approvals=st.dictionaries(st.sampled_from(NAMES), st.integers(0, 10**12)),
       eligible=st.sets(st.sampled_from(NAMES)),
       producer_count=st.integers(1, 21), min_approval=st.integers(1, 10**12),
       genesis=st.sets(st.sampled_from(NAMES)))
def test_for_any_approvals_the_schedule_is_never_empty_and_changes_within_the_bound(
        previous, approvals, eligible, producer_count, min_approval, genesis):
    office = elect(tuple(previous), approvals, eligible, producer_count, min_approval, frozenset(genesis))
    assert office and list(office) == sorted(set(office))
    kept = set(office) & set(previous)
    if not set(previous) & eligible:  # nobody left to hand over to: the old set stays
        assert office == tuple(sorted(previous))
        return
    # the producers kept from the previous schedule hold a notarization quorum of the new one
    assert len(kept) >= notarization_quorum(len(office))
    assert len(office) <= max(producer_count, 1)
    for name in set(office) - set(previous):  # every newcomer may hold office and has the approval
        assert name in eligible and (approvals.get(name, 0) >= min_approval or name in genesis)
    for name in set(previous) - set(office):  # an incumbent leaves only disqualified or outranked
        assert name not in eligible or len(previous) > producer_count or any(
            approvals.get(n, 0) > approvals.get(name, 0) for n in set(office) - set(previous))


def test_a_single_producer_chain_never_hands_over_to_a_newcomer():
    # one genesis producer and a candidate with every approval: the newcomer could halt the chain
    assert elect(("alice",), {"mallory": 10**15}, {"alice", "mallory"}, 21, 1, frozenset({"alice"})) == ("alice",)


def test_four_producers_take_one_newcomer_per_election_and_dust_never():
    approvals = {"erin": 10**9, "frank": 10**9, "mallory": 1}
    eligible = set(FOUR) | set(approvals)
    office = elect(FOUR, approvals, eligible, 21, 1000, frozenset(FOUR))
    assert office == ("alice", "bob", "carol", "dave", "erin")  # 4 kept of 5: quorum 4
    office = elect(office, approvals, eligible, 21, 1000, frozenset(FOUR))
    assert office == ("alice", "bob", "carol", "dave", "erin", "frank")  # 5 of 6: quorum 5
    assert "mallory" not in elect(office, approvals, eligible, 21, 1000, frozenset(FOUR))
    # a full set: the newcomer replaces the incumbent with the least approval
    assert elect(FOUR, {"erin": 10**9, "alice": 5}, set(FOUR) | {"erin"}, 4, 1000, frozenset(FOUR)) == \
        ("alice", "bob", "carol", "erin")  # dave: no approval, last by name


# ------------------------------------------------------------------------------ on a chain
def test_no_approved_candidate_keeps_the_genesis_producers():
    chain = Chain(MemoryKV(), make_genesis())
    run(chain, range(1, 3 * EPOCH + 5))
    assert chain.schedule(10 * EPOCH) == ["alice"]


def test_a_dust_staked_self_approved_member_is_never_elected():
    g = make_genesis(PARAMS, producers=FOUR[:3])
    chain = Chain(MemoryKV(), g)
    attack = [make_tx("dave", "unstake", {"amount": STAKE - 1}, expires_at=expiring(2, g)),
              registration("dave", 2, g), approval("dave", "dave", 2, g)]
    run(chain, range(1, 6 * EPOCH), txs_at={2: attack})
    assert chain.final.slot > 5 * EPOCH - 5
    assert sorted(chain.schedule(8 * EPOCH)) == ["alice", "bob", "carol"]


def test_election_takes_effect_two_epochs_after_its_block_is_final_and_survives_restart():
    kv = MemoryKV()
    g = make_genesis(PARAMS, producers=FOUR[:3])
    chain = Chain(kv, g)
    txs = [registration("dave", 2, g), approval("alice", "dave", 2, g)]
    run(chain, range(1, EPOCH + 3), txs_at={2: txs})
    assert chain.final.slot >= EPOCH
    effective = (1 + ELECTION_DELAY) * EPOCH
    assert sorted(chain.schedule(effective - 1)) == ["alice", "bob", "carol"]
    assert sorted(chain.schedule(effective)) == ["alice", "bob", "carol", "dave"]  # 3 kept of 4
    assert Chain(kv, g).schedule(effective) == chain.schedule(effective)  # recorded in the store


def test_election_order_is_seeded_by_the_triggering_block():
    g = make_genesis(PARAMS, producers=FOUR)
    chain = Chain(MemoryKV(), g)
    run(chain, range(1, 12 * EPOCH))
    orders = {tuple(chain.schedule(e * EPOCH)) for e in range(3, 12)}
    assert all(sorted(o) == list(FOUR) for o in orders) and len(orders) > 1


def test_an_absent_producer_is_jailed_and_returns_after_unjail():
    kv = MemoryKV()
    g = make_genesis(PARAMS, producers=FOUR)
    chain = Chain(kv, g)
    # dave's node is down from the start: its slots stay empty, the other three finalize
    run(chain, range(1, 2 * EPOCH + 3), absent={"dave"})
    assert chain.schedules.jailed == {"dave": chain.schedules.jailed["dave"]}
    first_without = (2 + ELECTION_DELAY) * EPOCH  # epoch 1 judged when epoch 2 began (not epoch 0)
    assert "dave" in chain.schedule(first_without - 1) and sorted(chain.schedule(first_without)) == list(FOUR[:3])
    run(chain, range(2 * EPOCH + 3, 5 * EPOCH), absent={"dave"})
    assert chain.final.slot > 5 * EPOCH - 5  # finality went on all along
    assert "dave" not in chain.schedule(7 * EPOCH)
    assert Chain(kv, g).schedules.jailed == chain.schedules.jailed
    # dave is back and says so; the next election seats it again (a genesis producer needs no approval)
    assert chain.schedules.jails["dave"][1] == 1  # one outage is one jailing, however long
    unjail = make_tx("dave", "unjail", {}, expires_at=expiring(5 * EPOCH, g))
    run(chain, range(5 * EPOCH, 9 * EPOCH), txs_at={5 * EPOCH + 1: [unjail]})
    assert sorted(chain.schedule(10 * EPOCH)) == list(FOUR)
    assert chain.final.slot > 9 * EPOCH - 5


def test_a_producer_jailed_again_after_coming_back_stays_out_twice_as_long():
    chain = Chain(MemoryKV(), make_genesis(PARAMS, producers=FOUR))
    g = chain.genesis
    run(chain, range(1, 5 * EPOCH), absent={"dave"})
    unjail = make_tx("dave", "unjail", {}, expires_at=expiring(5 * EPOCH, g))
    run(chain, range(5 * EPOCH, 9 * EPOCH), txs_at={5 * EPOCH + 1: [unjail]})
    assert "dave" in chain.schedule(10 * EPOCH)
    # back in office, and gone again: a second jailing, with twice the term
    run(chain, range(9 * EPOCH, 14 * EPOCH), absent={"dave"})
    height, times = chain.schedules.jails["dave"]
    assert times == 2 and chain.schedules.jail_term(2) == 2 * chain.schedules.jail_term(1) == 2 * EPOCH
    again = make_tx("dave", "unjail", {}, salt=1, expires_at=expiring(14 * EPOCH, g))
    run(chain, range(14 * EPOCH, 14 * EPOCH + 3), txs_at={14 * EPOCH + 1: [again]})
    record = T.get_producer(chain.final.layer, "dave")
    assert record.unjailed_height > height  # it said it is back at once...
    assert not chain.schedules.is_eligible_again("dave", record, height + 2 * EPOCH - 1)  # ...too soon
    assert chain.schedules.is_eligible_again("dave", record, height + 2 * EPOCH)
    assert chain.schedules.jail_term(100) == EPOCH << MAX_JAIL_DOUBLINGS  # bounded


def test_one_election_jails_fewer_than_a_third_of_the_office():
    """Validators restarted one by one leave their first slots empty while the first one's blocks
    become final: that is no reason to shrink four producers to one."""
    chain = Chain(MemoryKV(), make_genesis(PARAMS, producers=FOUR))
    run(chain, range(1, EPOCH))
    for slot in range(EPOCH, 2 * EPOCH):
        producer = chain.producer_for_slot(slot)
        if producer == "alice":  # the only node up after a restart; its block is notarized later
            block, layer, _ = chain.build_block(node_keypair(producer), producer, slot, [])
            node = chain.add_block(block, None, own_layer=layer)
            for voter in FOUR:
                chain.add_vote(Vote.create(node_keypair(voter), CHAIN_ID, node.id, node.height, node.slot, voter))
    run(chain, range(2 * EPOCH, 5 * EPOCH))
    assert list(chain.schedules.jailed) == ["bob"]  # of three absent: one (least approval, then name)
    assert sorted(chain.schedule(4 * EPOCH)) == ["alice", "carol", "dave"]


def test_missed_slots_are_counted_per_producer_when_final():
    kv, g = MemoryKV(), make_genesis()
    chain = Chain(kv, g)
    for slot in (100, 101, 102, 110, 111, 112):
        produce(chain, slot)
    assert chain.final_height >= 5
    assert chain.missed_slots == {"alice": 7}  # slots 103..109
    assert Chain(kv, g).missed_slots == {"alice": 7}


