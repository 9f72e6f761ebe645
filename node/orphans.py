"""Votes that arrived before their block, kept until it does (gossip does not order votes after
blocks), in a buffer a peer cannot use against the node or against other peers."""
from collections import OrderedDict

from core.types import Vote

MAX_ORPHAN_VOTES = 4096
MAX_ORPHAN_VOTES_PER_SOURCE = 512  # of those, from one peer: a flood displaces only its own


class OrphanVotes:
    """Votes by the block they are for, oldest blocks first, each with the peer it came from (None:
    this node or sync). Each source holds at most MAX_ORPHAN_VOTES_PER_SOURCE, so a peer sending
    votes for blocks that never come fills only its own share and cannot push out the early votes
    of others; all hold at most MAX_ORPHAN_VOTES, the oldest blocks' votes dropped first. Constant
    time per vote (the count per source is kept, never recounted)."""

    def __init__(self):
        self._by_block: OrderedDict[bytes, list[tuple[Vote, str | None]]] = OrderedDict()
        self._from: dict[str | None, int] = {}  # source -> how many of its votes wait

    def keep(self, vote: Vote, source: str | None) -> None:
        waiting = self._from.get(source, 0)
        if waiting >= MAX_ORPHAN_VOTES_PER_SOURCE:
            return
        self._from[source] = waiting + 1
        self._by_block.setdefault(vote.block_id, []).append((vote, source))
        total = len(self)
        while total > MAX_ORPHAN_VOTES:
            total -= len(self._forget(self._by_block.popitem(last=False)[1]))

    def take(self, block_id: bytes) -> list[tuple[Vote, str | None]]:
        """The votes waiting for block_id, now handed over and forgotten."""
        return self._forget(self._by_block.pop(block_id, []))

    def waiting_from(self, source: str | None) -> int:
        return self._from.get(source, 0)

    def __len__(self) -> int:
        return sum(self._from.values())  # one entry per source: the peers and None

    def _forget(self, entries: list[tuple[Vote, str | None]]) -> list[tuple[Vote, str | None]]:
        for _, source in entries:
            self._from[source] -= 1
            if not self._from[source]:
                del self._from[source]
        return entries
