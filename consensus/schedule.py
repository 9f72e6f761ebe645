"""DPoS election: who produces which slot.

Time is cut into epochs of `epoch_slots` slots (a genesis parameter). When the first final block of an epoch `e` becomes
final, the schedule for epoch `e + ELECTION_DELAY` is elected from the state after that block
(final state only) and recorded in the chain store in the same atomic batch as the block, so every
node that finalized the same chain holds the same table. The delay gives every honest node time to
finalize the triggering block before the new schedule is needed to check blocks.

An election takes the top `producer_count` registered producers by approving stake (ties by name)
and shuffles them with the triggering block's id as the seed. With no approved candidate at all the
genesis producers keep producing, in genesis order. A producer whose equivocation is recorded in
state (a `report_equivocation` tx, core.evidence) is never elected again, genesis producers too.
"""
from bisect import bisect_right
from collections import Counter

import msgpack

from core import codec
from core.genesis import Genesis
from state import schema
from state.governance import genesis_producers_in_office, get_elected_producers

ELECTION_DELAY = 2


def compute_schedule(view, genesis: Genesis, seed: bytes) -> tuple[str, ...]:
    """The elected producers for a state view: top by approval, then shuffled by `seed`."""
    top = get_elected_producers(view, genesis.params.producer_count)
    if not top:
        return genesis_producers_in_office(view, tuple(p.name for p in genesis.producers))
    return tuple(sorted(top, key=lambda n: codec.sha256(seed + n.encode())))


def slots_per_index(n: int, start: int, end: int) -> list[int]:
    """How many slots s in [start, end) have s % n == i, for each i (no loop over the slots)."""
    span = max(0, end - start)
    base, extra = divmod(span, n)
    return [base + (1 if (i - start) % n < extra else 0) for i in range(n)]


class ScheduleTable:
    """Every recorded election (epoch -> producers), plus the genesis schedule before the first."""

    def __init__(self, kv, genesis: Genesis):
        self.genesis = genesis
        self.epoch_slots = genesis.params.epoch_slots
        self.default = tuple(p.name for p in genesis.producers)
        self.table: dict[int, tuple[str, ...]] = {}
        for key, raw in kv.scan(schema.SCHEDULE):
            self.table[int.from_bytes(key[len(schema.SCHEDULE):], "big")] = tuple(msgpack.unpackb(raw))
        self._epochs = sorted(self.table)
        self.missed: Counter = Counter()
        for key, raw in kv.scan(schema.MISSED):
            self.missed[key[len(schema.MISSED):].decode()] = msgpack.unpackb(raw)

    def epoch_of(self, slot: int) -> int:
        return slot // self.epoch_slots

    def for_slot(self, slot: int) -> tuple[str, ...]:
        i = bisect_right(self._epochs, self.epoch_of(slot))
        return self.default if i == 0 else self.table[self._epochs[i - 1]]

    def producer_for_slot(self, slot: int) -> str:
        sched = self.for_slot(slot)
        return sched[slot % len(sched)]

    def missed_between(self, prev_slot: int, slot: int) -> Counter:
        """Producers scheduled in the empty slots strictly between two consecutive final blocks."""
        out: Counter = Counter()
        start = prev_slot + 1
        while start < slot:
            # the schedule is constant until the next recorded election
            i = bisect_right(self._epochs, self.epoch_of(start))
            end = slot if i == len(self._epochs) else min(slot, self._epochs[i] * self.epoch_slots)
            sched = self.for_slot(start)
            for idx, count in enumerate(slots_per_index(len(sched), start, end)):
                if count:
                    out[sched[idx]] += count
            start = end
        return out

    def on_commit(self, path, prev) -> tuple[dict, object]:
        """The store writes (elections, missed-slot counts) that finalizing `path` (oldest first,
        `prev` its final parent) triggers, for the commit batch, and a function that applies them
        to this table once the batch is written."""
        missed: Counter = Counter()
        elected: dict[int, tuple[str, ...]] = {}
        for b in path:
            if prev.height > 0:
                missed.update(self.missed_between(prev.slot, b.slot))
            if self.epoch_of(b.slot) > self.epoch_of(prev.slot):
                elected[self.epoch_of(b.slot) + ELECTION_DELAY] = compute_schedule(
                    b.layer, self.genesis, bytes(b.id))
            prev = b
        puts = {schema.schedule_key(e): codec.pack_flat(list(names)) for e, names in elected.items()}
        for name, count in missed.items():
            puts[schema.missed_key(name)] = codec.pack_flat(self.missed[name] + count)

        def apply() -> None:
            self.missed.update(missed)
            self.table.update(elected)
            self._epochs = sorted(self.table)
        return puts, apply
