"""A node's health: a halt shows, and a failure is loud.

A halt shows (`/v1/status`, `/metrics`): the producer scheduled for the current wall-clock slot and
that slot's epoch schedule (not the tip's: when the chain stops, the tip's epoch is the past), how
many slots ago the newest and the final block were, whether blocks are being produced, and
`stalled`. Each slot that ends with no block for it in this node's tree counts as an empty slot of
the producer scheduled in it, at once (node-local; the chain's `missed_slots` are counted when a
later block becomes final, so a chain that stops counts none there). The start of a stall is
logged as a warning, its end as an info line.

A failure is loud: an exception in a producer slot is logged with its traceback and the next slot
goes on; our own broken invariant (`InvariantBroken`), or the same failure in MAX_REPEATED_FAILURES
slots in a row, stops the node (`halt`), and so does any watched background task that ends. The
process then exits with EXIT_FATAL (node.main.run_node), for a supervisor to restart it.
"""
import asyncio
import functools
import logging
import traceback
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from core.errors import InvariantBroken
from core.genesis import now_ms
from core.quorum import notarization_quorum

log = logging.getLogger("node")

# The exit status of a node that stopped itself: sysexits' EX_SOFTWARE (an internal error), apart
# from uvicorn's 3 (startup failed) and a signal's 128+n, so a supervisor's log tells them apart.
EXIT_FATAL = 70
# A failure of the same type at the same line in this many of our slots in a row is not
# transient (a lost race or a slow disk does not recur ten times): a restart, which re-reads the
# store and starts with fresh memory and sockets, is the better try, and the exit says so.
MAX_REPEATED_FAILURES = 10
# Streamlet finalizes a block once three consecutive slots hold notarized blocks. With fewer
# than a third of a schedule of n silent, one round of it (n slots) always holds such a run (f
# silent producers split the 2f+1 others' slots into at most f runs, one of them 3 or longer), so
# a live chain's final block is at most n + 2 slots old. STALL_MARGIN_SLOTS more (5 s at the
# default 500 ms slot) absorb a late block and a busy node; past that, finality has stopped.
STALL_MARGIN_SLOTS = 10
# Likewise a live chain has a block at least every n // 3 + 1 slots (the silent producers in a
# row); one slot more for a block still on its way, one for the slot in progress.
PRODUCING_MARGIN_SLOTS = 2
# Slots further back than this when they are checked were slept through (the process paused, the
# event loop starved): their blocks are still in sockets or come by sync, so they are not judged.
EMPTY_CHECK_SLOTS = 4


@dataclass(frozen=True, slots=True)
class Liveness:
    """What the chain looks like from this node at one wall-clock slot."""
    slot: int
    slot_producer: str  # scheduled for `slot`
    schedule: tuple[str, ...]  # of `slot`'s epoch
    slots_since_block: int  # since the tip's slot
    slots_since_final: int  # since the final block's slot
    producing: bool  # the tip is as recent as a live chain's
    stalled: bool  # finality has not moved for longer than a live chain allows


def failure_key(exc: BaseException) -> tuple:
    """What makes two failures 'the same': the type and the innermost line it was raised at (the
    message may hold a slot or a height that differs every time)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = (frames[-1].filename, frames[-1].lineno) if frames else None
    return type(exc), where


class Health:
    """One per node service: its liveness view, its count of empty slots, its failures."""

    def __init__(self, service, clock: Callable[[], int] = now_ms):
        self.service = service
        self.genesis = service.genesis
        self.clock = clock
        self.started_slot = self.genesis.slot_at(clock())
        self.empty_slots: Counter[str] = Counter()  # producer -> slots seen ending with no block
        self.slot_failures = 0  # producer slots that raised (each logged with its traceback)
        self.fatal: str | None = None  # why the node stopped itself, once it did
        self.on_fatal: Callable[[], None] | None = None  # how it stops (run_node: the server exits)
        self.stopping = False  # a shutdown is under way: tasks end because they are told to
        self._checked = self.started_slot  # slots up to this one have been judged (or skipped)
        self._stalled = False
        self._streak_key: tuple | None = None
        self._streak = 0

    # ------------------------------------------------------------------ what the chain looks like
    def liveness(self, slot: int | None = None) -> Liveness:
        chain = self.service.chain
        if slot is None:
            slot = self.genesis.slot_at(self.clock())
        schedule = tuple(chain.schedule(slot))
        since_block = max(0, slot - chain.tip().slot)
        final_slot = chain.final.slot
        # counted from when this node started watching: a node started on an old chain (or
        # restarted after a while) is not stalled until finality fails to move while it runs;
        # nor is one catching up, whose peers finalized what it is fetching
        quiet = slot - max(final_slot, self.started_slot)
        return Liveness(slot, chain.producer_for_slot(slot), schedule, since_block,
                        max(0, slot - final_slot),
                        since_block <= len(schedule) // 3 + 1 + PRODUCING_MARGIN_SLOTS,
                        not self.service.net.syncing and quiet > len(schedule) + STALL_MARGIN_SLOTS)

    def voters_seen(self, schedule: tuple[str, ...]) -> int:
        """The producers of `schedule` whose votes this node can have: itself if it produces, and
        each peer that is up and named one of them in its status."""
        service = self.service
        names = {p.name for p in service.net.peers if p.ok} | {service.producer_name}
        return len(names & set(schedule))

    def status(self, slot: int | None = None) -> dict:
        """The `/v1/status` fields this module adds, at wall-clock `slot` (default: now)."""
        now = self.liveness(slot)
        return {"slot_producer": now.slot_producer, "schedule": list(now.schedule),
                "slots_since_block": now.slots_since_block, "slots_since_final": now.slots_since_final,
                "stalled": now.stalled, "finality_quorum": notarization_quorum(len(now.schedule)),
                "producers_seen": self.voters_seen(now.schedule),
                "empty_slots_seen": dict(sorted(self.empty_slots.items()))}

    def on_slot(self, slot: int) -> None:
        """Once a slot (the producer loop), `slot` being the current one: count each slot that
        ended a full slot ago or more with no block for it in the tree as an empty slot of its
        producer, and log when the chain stalls or recovers."""
        chain, net = self.service.chain, self.service.net
        ended = slot - 2  # its block had its own slot and one more to arrive
        first = max(self._checked + 1, ended - EMPTY_CHECK_SLOTS + 1, chain.final.slot + 1)
        if ended >= first and not net.syncing:  # (while catching up, the tree is behind)
            with_block = {n.slot for n in chain.nodes.values()}
            for s in range(first, ended + 1):
                if s not in with_block:
                    self.empty_slots[chain.producer_for_slot(s)] += 1
        self._checked = max(self._checked, ended)
        now = self.liveness(slot)
        if now.stalled and not self._stalled:
            log.warning("chain stalled: nothing final for %d slots (final height %d, slot %d), the "
                        "newest block is %d slots old; slot %d's producer is %s, schedule %s; "
                        "waiting for votes: %d of the %d producers needed, %d seen up from this node",
                        now.slots_since_final, chain.final_height, chain.final.slot,
                        now.slots_since_block, slot, now.slot_producer, ",".join(now.schedule),
                        notarization_quorum(len(now.schedule)), len(now.schedule),
                        self.voters_seen(now.schedule))
        elif self._stalled and not now.stalled:
            log.info("chain no longer stalled: final height %d (slot %d)", chain.final_height,
                     chain.final.slot)
        self._stalled = now.stalled

    # ------------------------------------------------------------------ failures
    def slot_failed(self, slot: int, exc: Exception) -> None:
        """An exception in producer slot `slot`: log it with its traceback; stop the node if it
        broke our own invariant or recurred in MAX_REPEATED_FAILURES slots in a row."""
        key = failure_key(exc)
        self._streak = self._streak + 1 if key == self._streak_key else 1
        self._streak_key = key
        self.slot_failures += 1
        log.error("slot %d failed (%d in a row): %s: %s", slot, self._streak, type(exc).__name__, exc,
                  exc_info=exc)
        if isinstance(exc, InvariantBroken):
            self.halt(f"our own invariant broke in slot {slot}: {exc}")
        elif self._streak >= MAX_REPEATED_FAILURES:
            self.halt(f"the same failure in {self._streak} slots in a row: {type(exc).__name__}: {exc}")

    def slot_done(self, slot: int) -> None:
        """Slot `slot` went through: that ends a run of failures, unless the slot was another
        producer's (this node tried nothing of its own in it)."""
        s = self.service
        if (s.producer_key is None or s.chain.producer_for_slot(slot) == s.producer_name
                or s.producer_name not in s.chain.schedule(slot)):
            self._streak_key, self._streak = None, 0

    def watch(self, task: asyncio.Task, name: str) -> asyncio.Task:
        """Stop the node if this long-lived task ever ends, other than by being cancelled."""
        task.add_done_callback(functools.partial(self._ended, name))
        return task

    def _ended(self, name: str, task: asyncio.Task) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:  # (said here even in a shutdown: it was not told to end that way)
            log.error("task %s died: %s: %s", name, type(exc).__name__, exc, exc_info=exc)
        if not self.stopping:
            self.halt(f"task {name} ended" if exc is None
                      else f"task {name} died: {type(exc).__name__}: {exc}")

    def halt(self, reason: str) -> None:
        """Stop the node, once: no slot is produced after this, and `on_fatal` ends the process."""
        if self.fatal is not None:
            return
        self.fatal = reason
        log.critical("stopping the node (exit status %d): %s", EXIT_FATAL, reason)
        if self.on_fatal is not None:
            self.on_fatal()
