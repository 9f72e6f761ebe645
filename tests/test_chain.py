"""The block tree: what a producer may include depends on the branch it builds on."""
from consensus.chain import Chain
from core.types import Vote
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
