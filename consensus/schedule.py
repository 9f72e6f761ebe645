"""DPoS election: who produces which slot.

Time is cut into epochs of `epoch_slots` slots (a genesis parameter). When the first final block of
an epoch `e` becomes final, the schedule for epoch `e + ELECTION_DELAY` is elected from the state
after that block (final state only) and recorded in the chain store in the same atomic batch as the
block, so every node that finalized the same chain holds the same table. The delay gives every
honest node time to finalize the triggering block before the new schedule is needed to check blocks.

An election never lets a small stake halt or capture the chain (`elect`):
- a candidate needs `min_producer_approval` of approving (active) stake to be elected; the
  producers in office, genesis producers included, keep their seats until such a candidate with
  more approval takes one (or a free seat while fewer than `producer_count` hold office);
- the set changes by so little per election that the producers kept from the previous schedule
  still hold a notarization quorum (2n/3 + 1) of the new one: if every newcomer is absent, the
  others still notarize, finalize, and so hold the next election. Never empty, never all new;
- a producer scheduled in epoch `e - 1` that has no final block in it, while others had, is
  absent: jailed (recorded with the triggering block's height) and left out until an `unjail` tx
  of it lands after that height; of those in office, fewer than a third per election (the ones
  with the least approval: `jail_limit`). So a candidate without a node costs at most a few
  epochs of its slots, not the chain;
- a producer whose equivocation is recorded in state (core.evidence) is never elected again.
The elected producers are ordered by sha256(block id ‖ name).
"""
from bisect import bisect_right
from collections import Counter

import msgpack

from core import codec
from core.genesis import Genesis
from core.quorum import notarization_quorum
from state import schema
from state.governance import get_candidates

ELECTION_DELAY = 2
MAX_JAIL_DOUBLINGS = 9  # the longest jail term: 512 epochs (4.3 hours of 60 half-second slots)


def elect(previous: tuple[str, ...], approvals: dict[str, int], eligible: set[str],
          producer_count: int, min_approval: int, genesis_producers: frozenset[str]) -> tuple[str, ...]:
    """The next producer set (sorted by name) from the previous one. `approvals`: every
    candidate's approving stake; `eligible`: the candidates that may hold office now (not
    jailed, never equivocated). A genesis producer may return to a free seat without approval."""
    rank = lambda name: (-approvals.get(name, 0), name)  # noqa: E731
    kept = set(previous)
    office = {name for name in previous if name in eligible}
    if not office:
        return tuple(sorted(previous))  # no one left to hand over to (only a dead chain gets here)
    while len(office) > producer_count:
        office.remove(max(office, key=rank))
    challengers = sorted((name for name in eligible - office
                          if approvals.get(name, 0) >= min_approval or name in genesis_producers),
                         key=rank)
    for name in challengers:
        if len(office) < producer_count:
            trial = office | {name}
        else:
            weakest = max(office, key=rank)
            if approvals.get(name, 0) <= approvals.get(weakest, 0):
                break  # no later challenger has more approval either
            trial = (office - {weakest}) | {name}
        if len(trial & kept) < notarization_quorum(len(trial)):
            break  # the most this election may change
        office = trial
    return tuple(sorted(office))


def jail_limit(n: int) -> int:
    """How many of n producers in office one election may jail: fewer than a third. More absent
    than that cannot happen on a chain that finalizes (its blocks need 2n/3 + 1 votes): it is an
    artifact, such as validators started one by one. And it keeps 4 or more producers from
    shrinking to a set the bound on newcomers would never let grow again (2 or fewer)."""
    return (n - 1) // 3


def shuffle(names, seed: bytes) -> tuple[str, ...]:
    return tuple(sorted(names, key=lambda n: codec.sha256(seed + n.encode())))


def slots_per_index(n: int, start: int, end: int) -> list[int]:
    """How many slots s in [start, end) have s % n == i, for each i (no loop over the slots)."""
    span = max(0, end - start)
    base, extra = divmod(span, n)
    return [base + (1 if (i - start) % n < extra else 0) for i in range(n)]


class ScheduleTable:
    """Every recorded election (epoch -> producers), plus the genesis schedule before the first;
    missed-slot counts, who produced final blocks in the latest epochs, and who is jailed."""

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
        self.produced: dict[int, frozenset[str]] = {
            int.from_bytes(key[len(schema.PRODUCED):], "big"): frozenset(msgpack.unpackb(raw))
            for key, raw in kv.scan(schema.PRODUCED)}
        # producer -> (height of the final block whose election jailed it, how many times it was)
        self.jails: dict[str, tuple[int, int]] = {key[len(schema.JAILED):].decode(): tuple(msgpack.unpackb(raw))
                                                  for key, raw in kv.scan(schema.JAILED)}

    @property
    def jailed(self) -> dict[str, int]:
        """Producer -> the height it was last jailed at."""
        return {name: height for name, (height, _) in self.jails.items()}

    def jail_term(self, times: int) -> int:
        """Blocks a producer jailed `times` times stays out after its jailing, unjail or not: one
        epoch, doubling with each jailing after it returned, so a candidate that keeps coming back
        without a node costs the chain ever fewer of its empty slots."""
        return self.epoch_slots << min(times - 1, MAX_JAIL_DOUBLINGS)

    def is_eligible_again(self, name: str, record, height: int, jails=None) -> bool:
        """Whether a producer may be elected at `height`, as far as jailing goes (`jails`, default
        the recorded ones): never jailed, or back (an `unjail` after its jailing) and its term
        served."""
        jail = (self.jails if jails is None else jails).get(name)
        return jail is None or (record.unjailed_height > jail[0] and height >= jail[0] + self.jail_term(jail[1]))

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

    def absent_in(self, epoch: int, producers: frozenset[str]) -> set[str]:
        """The producers scheduled for at least one slot of `epoch` with no final block in it,
        given the producers of its final blocks; nobody if it has none (then the chain stood
        still, and no one can be told from the rest), nor in epoch 0."""
        if not producers or epoch == 0:  # epoch 0: the validators of a new chain are coming up
            return set()
        start = epoch * self.epoch_slots
        sched = self.for_slot(start)
        counts = slots_per_index(len(sched), start, (epoch + 1) * self.epoch_slots)
        return {name for name, count in zip(sched, counts) if count and name not in producers}

    def elect(self, block, previous: tuple[str, ...], absent: set[str],
              jails: dict[str, tuple[int, int]]) -> tuple[tuple[str, ...], dict[str, tuple[int, int]]]:
        """The schedule that finalizing `block` (a BlockNode, the first final one of its epoch)
        elects from its state, and the jailings it makes of the `absent` (see `jail_limit`; one
        still serving a jailing it has not come back from is not jailed again); `jails`: the
        jailings so far."""
        params = self.genesis.params
        candidates = get_candidates(block.layer)
        approvals = {name: rec.approval for name, rec in candidates.items()}
        in_office = sorted(absent & set(previous), key=lambda n: (approvals.get(n, 0), n))
        jailing = {}
        for name in sorted((absent - set(previous)) | set(in_office[:jail_limit(len(previous))])):
            jail, record = jails.get(name), candidates.get(name)
            if jail is None or (record is not None and record.unjailed_height > jail[0]):
                jailing[name] = (block.height, 1 if jail is None else jail[1] + 1)
        jails = {**jails, **jailing}
        eligible = {name for name, rec in candidates.items()
                    if self.is_eligible_again(name, rec, block.height, jails)}
        office = elect(previous, approvals, eligible, params.producer_count, params.min_producer_approval,
                       frozenset(self.default))
        return shuffle(office, bytes(block.id)), jailing

    def on_commit(self, path, prev) -> tuple[dict, object]:
        """The store writes (elections, missed-slot counts, producers per epoch, jailings) that
        finalizing `path` (oldest first, `prev` its final parent) triggers, for the commit batch,
        and a function that applies them to this table once the batch is written."""
        missed: Counter = Counter()
        elected: dict[int, tuple[str, ...]] = {}
        produced = dict(self.produced)
        jailed: dict[str, tuple[int, int]] = {}
        for b in path:
            if prev.height > 0:
                missed.update(self.missed_between(prev.slot, b.slot))
            epoch = self.epoch_of(b.slot)
            produced[epoch] = produced.get(epoch, frozenset()) | {b.header.producer}
            if epoch > self.epoch_of(prev.slot):
                absent = self.absent_in(epoch - 1, produced.get(epoch - 1, frozenset()))
                target = epoch + ELECTION_DELAY
                previous = elected[max(elected)] if elected else self.for_slot(target * self.epoch_slots)
                elected[target], jailing = self.elect(b, previous, absent, {**self.jails, **jailed})
                jailed.update(jailing)
            prev = b
        # absence is judged on the epoch before the newest: older ones are not needed again
        newest = max(produced)
        stale = {e for e in produced if e < newest - 1}
        changed = {e: names for e, names in produced.items() if e not in stale and names != self.produced.get(e)}
        puts = {schema.schedule_key(e): codec.pack_flat(list(names)) for e, names in elected.items()}
        for name, count in missed.items():
            puts[schema.missed_key(name)] = codec.pack_flat(self.missed[name] + count)
        for e, names in changed.items():
            puts[schema.produced_key(e)] = codec.pack_flat(sorted(names))
        for name, jail in jailed.items():
            puts[schema.jailed_key(name)] = codec.pack_flat(list(jail))
        deletes = {schema.produced_key(e) for e in stale if e in self.produced}

        def apply() -> None:
            self.missed.update(missed)
            self.table.update(elected)
            self._epochs = sorted(self.table)
            self.produced = {e: names for e, names in produced.items() if e not in stale}
            self.jails.update(jailed)
        return puts, deletes, apply
