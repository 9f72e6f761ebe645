"""The block tree: what a producer may include depends on the branch it builds on; blocks that
leave it are freed."""
import dataclasses
import gc
import json
import time
import weakref

import pytest

from consensus.chain import Chain
from core.errors import InvalidVote
from core.types import Tx, Vote
from node.config import NodeConfig
from node.keystore import write_key_file
from node.service import NodeService
from state.kv import MemoryKV
from tests.conftest import CHAIN_ID, make_genesis, make_tx, node_keypair

ALICE = node_keypair("alice")


def test_a_tx_of_a_branch_that_lost_can_be_included_on_the_one_that_won():
    chain = Chain(MemoryKV(), make_genesis())
    tx = make_tx("bob", "stake", {"amount": 5})
    first = chain.genesis.slot_at(chain.genesis.genesis_time_ms + 60_000)
    block, layer, _ = chain.build_block(ALICE, "alice", first, [tx])
    losing = chain.add_block(block, None, own_layer=layer)  # never notarized: no vote comes
    assert chain.pending_tx_ids(losing) == {tx.id}
    assert chain.pending_tx_ids(chain.head()) == set()  # the head is still the genesis block
    block, layer, rejected = chain.build_block(ALICE, "alice", first + 1, [tx])
    assert rejected == [] and [t.id for t in block.txs] == [tx.id]
    winning = chain.add_block(block, None, own_layer=layer)
    chain.add_vote(Vote.create(ALICE, CHAIN_ID, winning.id, winning.height, winning.slot, "alice"))
    assert chain.head() is winning and chain.pending_tx_ids(winning) == {tx.id}


def test_a_copy_of_a_counted_vote_costs_no_signature_check_and_a_forged_one_still_does(monkeypatch):
    """Votes are relayed to every peer, so each arrives n-1 times: 21 producers would make a node
    verify ~8,800 signatures a slot for 441 votes."""
    chain = Chain(MemoryKV(), make_genesis(producers=("alice", "bob", "carol", "dave")))
    slot = chain.genesis.slot_at(chain.genesis.genesis_time_ms + 60_000)
    producer = chain.producer_for_slot(slot)
    block, layer, _ = chain.build_block(node_keypair(producer), producer, slot, [])
    node = chain.add_block(block, None, own_layer=layer)
    vote = Vote.create(node_keypair("bob"), CHAIN_ID, node.id, node.height, node.slot, "bob")
    checks = []
    verify = Vote.verify
    monkeypatch.setattr(Vote, "verify", lambda self, key: checks.append(self) or verify(self, key))
    chain.add_vote(vote)
    chain.add_vote(Vote.from_list(vote.to_list()))  # the same vote, relayed by another peer
    assert len(checks) == 1
    forged = dataclasses.replace(vote, signature=bytes(64))
    with pytest.raises(InvalidVote) as e:
        chain.add_vote(forged)
    assert e.value.code == "bad_signature" and len(checks) == 2 and node.votes["bob"] == vote


def test_blocks_that_leave_the_tree_are_freed_at_once():
    """The tree links blocks both ways (parent, children). A block that became final behind the
    new final head, or was dropped with its branch, must keep no link into the rest: otherwise
    each commit leaves a cycle that only a full collection frees, and one linked to an object
    frozen at start-up (`gc.freeze`: the genesis node) is never freed; a validator grew by ~1 KB
    per tx, every block and tx it ever saw. With the cycle collector off, refcounting alone
    must free them."""
    chain = Chain(MemoryKV(), make_genesis())
    first = chain.genesis.slot_at(chain.genesis.genesis_time_ms + 60_000)
    left = [weakref.ref(chain.final)]
    gc.disable()
    try:
        for i in range(8):
            tx = make_tx("bob", "stake", {"amount": 1 + i})
            block, layer, _ = chain.build_block(ALICE, "alice", first + i, [tx])
            node = chain.add_block(block, None, own_layer=layer)
            if i < 4:
                left.append(weakref.ref(node))
            node = None
            header = block.header
            chain.add_vote(Vote.create(ALICE, CHAIN_ID, block.id, header.height, header.slot, "alice"))
        assert chain.final_height == 7  # the first commit finalized blocks 1 and 2 together
        assert [ref() for ref in left] == [None] * 5
    finally:
        gc.enable()


def test_a_node_keeps_no_tx_of_the_blocks_it_finalized(tmp_path):
    """The whole path of a tx through a node (admission, mempool, its block, the vote that
    finalizes it) leaves nothing behind but the store's record: with the cycle collector off, the
    decoded txs of final blocks are freed."""
    now = time.time_ns() // 1_000_000
    genesis = dataclasses.replace(make_genesis(), genesis_time_ms=now - 60_000)
    (tmp_path / "genesis.json").write_text(json.dumps(genesis.to_json()))
    write_key_file(tmp_path / "key.json", "alice", ALICE)
    config = NodeConfig(genesis=str(tmp_path / "genesis.json"), key_file=str(tmp_path / "key.json"))
    service = NodeService(config, kv=MemoryKV())
    slot = genesis.slot_at(now)
    gc.collect()
    before = sum(1 for o in gc.get_objects() if type(o) is Tx)
    gc.disable()
    try:
        for i in range(12):
            for j in range(20):
                service.submit(make_tx("bob", "transfer", {"to": "carol", "amount": 1}, salt=20 * i + j,
                                       expires_at=now + 600_000))
            service.produce(slot + i)
        assert service.chain.final_height == 11
        live = sum(1 for o in gc.get_objects() if type(o) is Tx) - before
        assert live <= 20 * 3  # of 240: those of the final head's block and of the blocks after it
    finally:
        gc.enable()
