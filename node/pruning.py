"""Block pruning: a node that need not serve history keeps only its recent final blocks.

With `retain_blocks` set, final blocks more than that many below the final height are deleted with
their votes, height index and tx locations, a few hundred per finalization so that no commit waits
behind a long delete. Blocks from the oldest kept snapshot on are never deleted: they prove and
extend the snapshot for a node that starts from it. A peer asking this node for pruned blocks gets
410 `pruned` and syncs from another peer (an archive node, `retain_blocks = 0`, serves them all).
"""
import msgpack

from core import codec
from core.types import Block
from state import schema

PRUNE_PER_CALL = 256  # blocks deleted per finalization at most: a catch-up spreads over many


class Pruner:
    def __init__(self, kv, chain, retain_blocks: int):
        self.kv, self.chain, self.retain = kv, chain, retain_blocks
        raw = kv.get(schema.PRUNED_BELOW)
        self.below = 1 if raw is None else msgpack.unpackb(raw)  # lowest final block held (0: genesis)

    def is_pruned(self, height: int) -> bool:
        return 0 < height < self.below

    def prune(self, floor: int) -> int:
        """Delete the oldest final blocks beyond the retained ones and below `floor` (the oldest
        kept snapshot); how many were deleted."""
        if not self.retain:
            return 0
        end = min(self.chain.final_height - self.retain, floor, self.below + PRUNE_PER_CALL)
        if end <= self.below:
            return 0
        deletes = set()
        for height in range(self.below, end):
            block_id = self.chain.final_block_id(height)
            raw = None if block_id is None else self.kv.get(schema.block_key(block_id))
            if raw is not None:
                deletes.update(schema.tx_location_key(tx.id) for tx in Block.decode(raw).txs)
                deletes.update((schema.block_key(block_id), schema.votes_key(block_id)))
            deletes.add(schema.final_at_height_key(height))
        self.kv.write({schema.PRUNED_BELOW: codec.pack_flat(end)}, deletes, durable=False)
        pruned, self.below = end - self.below, end
        return pruned
