"""State that serves no purpose is pruned (state.replay, state.governance.close_due): replay keys
once their tx has expired, a closed proposal's code, a lapsed proposal a while later. Replay
protection still holds (a copy of a pruned tx is `expired`), and a final tx's status still reads
its height and index from the node's chain store."""
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.chain import Chain
from core.errors import InvalidTx
from core.types import Vote
from state import governance, replay, schema
from state import transition as T
from state.kv import MemoryKV
from tests.conftest import CHAIN_ID, NOW_MS, World, make_genesis, make_tx, node_keypair
from tests.test_rules_chain import VALID_UPGRADE, Ledger, rules_genesis, set_param, upgrade

GENESIS = make_genesis()


class Blocks(World):
    def next_block(self, ms: int) -> None:
        self.ctx = T.make_context(self.genesis, self.ctx.height + 1, self.ctx.slot + 1,
                                  self.ctx.timestamp_ms + ms)
        T.begin_block(self.layer, self.ctx)
        self.index = 0

    def send(self, expires_in: int, sender: str = "bob"):
        return self.do(sender, "transfer", {"to": "carol", "amount": 1},
                       expires_at=self.ctx.timestamp_ms + expires_in)


def replay_keys(layer) -> list[bytes]:
    return [k for k, _ in layer.scan(schema.TX_SEEN)]


def index_is_consistent(layer) -> bool:
    """The cursor's total and the per-second counts agree with the keys there are."""
    keys = replay_keys(layer)
    counts = {}
    for k in keys:
        bucket = int.from_bytes(k[len(schema.TX_SEEN):len(schema.TX_SEEN) + 8], "big")
        counts[bucket] = counts.get(bucket, 0) + 1
    stored = {int.from_bytes(k[len(schema.TX_EXPIRY_COUNT):], "big"): msgpack.unpackb(v)
              for k, v in layer.scan(schema.TX_EXPIRY_COUNT)}
    cursor = layer.get(schema.TX_PRUNE_NEXT)
    if cursor is None:
        return not keys and not stored
    first, total = msgpack.unpackb(cursor)
    return stored == counts and total == len(keys) and first <= min(counts)


def test_a_replay_key_goes_once_its_tx_expired_and_a_replay_is_still_refused():
    w = Blocks(GENESIS)
    tx = w.send(10_000)
    assert T.get_tx_location(w.layer, tx) == (1, 0) and len(replay_keys(w.layer)) == 1
    w.next_block(9_000)  # not yet expired: the key stays, a copy is a duplicate
    with pytest.raises(InvalidTx) as e:
        w.apply(tx)
    assert e.value.code == "duplicate" and len(replay_keys(w.layer)) == 1
    w.next_block(1_000)  # timestamp == expires_at: the tx can never be valid again ...
    with pytest.raises(InvalidTx) as e:
        w.apply(tx)
    assert e.value.code == "expired"
    w.next_block(999)  # ... and its key goes with the rest of its second of expiry
    assert replay_keys(w.layer) == [] and w.layer.get(schema.TX_PRUNE_NEXT) is None
    assert list(w.layer.scan(schema.TX_EXPIRY_COUNT)) == []
    with pytest.raises(InvalidTx) as e:
        w.apply(tx)
    assert e.value.code == "expired"


def test_pruning_is_capped_per_block_and_goes_oldest_first(monkeypatch):
    monkeypatch.setattr(replay, "MAX_PRUNED_PER_BLOCK", 3)
    w = Blocks(GENESIS)
    early = [w.send(5_000) for _ in range(5)]
    late = [w.send(8_000) for _ in range(2)]
    w.next_block(60_000)  # everything expired: 3 go now, all of the earliest second first
    assert sum(replay.is_seen(w.layer, t) for t in early) == 2 and all(replay.is_seen(w.layer, t) for t in late)
    assert index_is_consistent(w.layer)
    w.next_block(500)
    assert not any(replay.is_seen(w.layer, t) for t in early) and sum(replay.is_seen(w.layer, t) for t in late) == 1
    w.next_block(500)
    assert replay_keys(w.layer) == [] and w.layer.get(schema.TX_PRUNE_NEXT) is None


def test_empty_seconds_are_skipped_a_bounded_number_per_block(monkeypatch):
    monkeypatch.setattr(replay, "MAX_BUCKETS_PER_BLOCK", 10)
    w = Blocks(GENESIS)
    first, second = w.send(1_000), w.send(51_000)  # 49 empty seconds between them
    w.next_block(100_000)
    assert not replay.is_seen(w.layer, first) and replay.is_seen(w.layer, second)
    for _ in range(4):
        w.next_block(500)
    assert replay.is_seen(w.layer, second)  # 10 + 4 * 10 seconds visited so far: not yet the 51st
    w.next_block(500)
    assert replay_keys(w.layer) == [] and w.layer.get(schema.TX_PRUNE_NEXT) is None


ops = st.lists(st.tuples(st.integers(0, 3), st.integers(1, 20), st.integers(0, 8_000)), min_size=1, max_size=25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops, st.integers(1, 4))
def test_replay_protection_holds_and_the_index_stays_consistent(op_list, cap):
    """Random txs with random expiries over random block times, with a small pruning cap: every
    applied tx is refused again in every later block (duplicate while its key is kept, expired
    after), a key is never pruned before its tx expired, and the counts agree with the keys."""
    replay.MAX_PRUNED_PER_BLOCK, saved = cap, replay.MAX_PRUNED_PER_BLOCK
    try:
        w = Blocks(GENESIS)
        sent = []
        for n, expires_s, wait_ms in op_list:
            for _ in range(n):
                sent.append(w.send(expires_s * 1000 + len(sent) % 997))
            w.next_block(wait_ms)
            assert index_is_consistent(w.layer)
            for tx in sent:
                if tx.expires_at > w.ctx.timestamp_ms:
                    assert replay.is_seen(w.layer, tx)
                with pytest.raises(InvalidTx) as e:
                    T.apply_tx(T.Layer(w.layer), tx, w.ctx, 0)
                assert e.value.code in ("duplicate", "expired")
        for _ in range(200):
            w.next_block(25_000)
        assert replay_keys(w.layer) == []
    finally:
        replay.MAX_PRUNED_PER_BLOCK = saved


def test_a_final_txs_status_outlives_its_replay_key():
    alice = node_keypair("alice")
    chain = Chain(MemoryKV(), GENESIS)
    slot = GENESIS.slot_at(NOW_MS)
    tx = make_tx("bob", "transfer", {"to": "carol", "amount": 1}, salt=7,
                 expires_at=GENESIS.slot_start_ms(slot) + 5_000)

    def block_at(s, txs=()):
        block, layer, rejected = chain.build_block(alice, "alice", s, list(txs))
        chain.add_block(block, None, own_layer=layer)
        chain.add_vote(Vote.create(alice, CHAIN_ID, block.id, block.header.height, block.header.slot, "alice"))
        return block, rejected

    block, _ = block_at(slot, [tx])
    for i in range(1, 4):
        block_at(slot + i)
    assert chain.tx_status(tx.id) == ("final", block.header.height, 0)
    assert replay.is_seen(chain.final.layer, tx)
    for i in range(4, 40):  # 0.5 s slots: past the tx's expiry
        block_at(slot + 20 + i)
    assert not replay.is_seen(chain.final.layer, tx)  # pruned from the state ...
    assert chain.tx_status(tx.id) == ("final", block.header.height, 0)  # ... still final, here
    _, rejected = block_at(slot + 100, [tx])
    assert [e.code for _, e in rejected] == ["expired"]


# ------------------------------------------------------------------------------ proposals
def test_a_lapsed_upgrades_code_goes_at_its_effective_height_and_the_proposal_later(monkeypatch):
    monkeypatch.setattr(governance, "EXPIRED_PROPOSAL_KEEP_BLOCKS", 5)
    ledger = Ledger(rules_genesis(producers=("alice", "bob", "carol")))
    [tx] = ledger.block(("alice", "govern", upgrade(VALID_UPGRADE, 4)))  # 1 approval of 3 needed
    assert ledger.layer.get(schema.proposal_code_key(tx.id)) is not None
    ledger.until(3)
    assert ledger.layer.get(schema.proposal_code_key(tx.id)) is not None
    ledger.until(4)
    assert ledger.layer.get(schema.proposal_code_key(tx.id)) is None  # it lapsed: its code is gone
    proposal = governance.get_proposal(ledger.layer, tx.id)
    assert governance.compute_status(proposal, 4) == "expired"  # still shown a while
    ledger.until(8)
    assert governance.get_proposal(ledger.layer, tx.id) is not None
    ledger.until(9)
    assert governance.get_proposal(ledger.layer, tx.id) is None
    assert list(ledger.layer.scan(schema.PROPOSALS_CLOSE)) == list(ledger.layer.scan(schema.PROPOSALS_PRUNE)) == []


def test_enacted_and_refused_proposals_stay_without_code(monkeypatch):
    monkeypatch.setattr(governance, "EXPIRED_PROPOSAL_KEEP_BLOCKS", 2)
    ledger = Ledger(rules_genesis())  # one producer: a proposal is approved at once
    [up] = ledger.block(("alice", "govern", upgrade(VALID_UPGRADE, 3)))
    [param] = ledger.block(("alice", "govern", set_param("attend_points", 5, 3)))
    ledger.until(10)
    assert governance.get_proposal(ledger.layer, up.id).status == "enacted"
    assert governance.get_proposal(ledger.layer, param.id).status == "enacted"
    assert list(ledger.layer.scan(schema.PROPOSAL_CODE)) == []
