"""The LevelDB implementation of state.kv.KVStore (plyvel).

64 MiB write buffer: the 4 MiB default stalls under sustained block commits on this class of
machine. A 10-bit-per-key Bloom filter in every table: each new tx is looked up (replay check) at
admission and again when its block is applied, and those lookups miss; without a filter a miss
reads an index block of every table that might hold the key (5.9 µs against 0.9 µs, measured on
300k keys after compaction). Durable batches are written with sync=True so a committed final
block survives `kill -9` and power loss alike; the others (blocks and votes not yet final) go to
the OS without waiting for the disk, which `kill -9` cannot lose.

Keys found absent are remembered until they are written. Every new tx's replay key is read twice
per node, at admission and in its block, and both reads miss; a miss searches LevelDB's memtable,
a skip list of the ~200k most recent writes, at a cache miss per step. A perf profile of a
validator's main thread at 3,000 tx/s put `MemTable::Get` at 8 % of it. Only this object writes
the database (one process, and only the event loop's thread), so a remembered miss stays true
until its own `write` of that key.
"""
import errno
from itertools import islice
from typing import Callable

import plyvel

from core.errors import InvariantBroken

BLOOM_BITS_PER_KEY = 10  # about 1% false positives
MISSES_REMEMBERED = 100_000  # keys (about 10 MB): half a minute of new txs at 3,000 tx/s


class StoreFailed(InvariantBroken):
    """The database failed a write. LevelDB then refuses every later write too (its background
    error sticks until it is reopened), so the node cannot follow the chain any more: it stops,
    and starts cleanly once the cause (most often a full disk) is gone."""


def _failure_message(path, action: str, e: Exception) -> str:
    text = str(e)
    if "No space left" in text or getattr(e, "errno", None) == errno.ENOSPC:
        return (f"the disk holding {path} is full ({action} failed: {text}). Free some space, "
                "then start the node again: it goes on from its last final block")
    return f"the database at {path} failed ({action}: {text}); check the disk, then start the node again"


class LevelDBStore:
    def __init__(self, path: str, write_buffer_size: int = 64 * 1024 * 1024, sync: bool = True,
                 misses_remembered: int = MISSES_REMEMBERED):
        self.path = str(path)
        try:
            self._db = plyvel.DB(self.path, create_if_missing=True, write_buffer_size=write_buffer_size,
                                 bloom_filter_bits=BLOOM_BITS_PER_KEY, paranoid_checks=True)
        except plyvel.Error as e:
            if "lock" in str(e).lower() and "No such file" not in str(e):
                raise StoreFailed(f"the database at {self.path} is in use by another process "
                                  "(another node on this data dir?)") from None
            raise StoreFailed(_failure_message(self.path, "opening it", e)) from None
        # told once of a failed write (node.service: the node stops), before StoreFailed is raised
        self.on_failure: Callable[[str], None] | None = None
        self._sync = sync
        self._absent: dict[bytes, None] = {}  # keys read and not found, oldest first
        self._misses_remembered = misses_remembered

    def get(self, key: bytes) -> bytes | None:
        if key in self._absent:
            return None
        value = self._db.get(key)
        if value is None:
            self._absent[key] = None
            if len(self._absent) > self._misses_remembered:
                for old in list(islice(self._absent, len(self._absent) // 10 + 1)):
                    del self._absent[old]
        return value

    def scan(self, prefix: bytes, reverse: bool = False):
        with self._db.iterator(prefix=prefix) as it:
            if not reverse:
                yield from it
                return
            # plyvel's reverse iterator misses the only key of a range (seen with plyvel 1.5.1 on
            # LevelDB 1.23: a lone key equal to the prefix), so reverse a forward scan instead
            items = list(it)
        yield from reversed(items)

    def write(self, puts, deletes=frozenset(), durable=True):
        for k in puts:  # forgotten first: whatever happens to the batch, none is known absent
            self._absent.pop(k, None)
        try:
            with self._db.write_batch(sync=self._sync and durable) as wb:
                for k in deletes:
                    wb.delete(k)
                for k, v in puts.items():
                    wb.put(k, v)
        except plyvel.Error as e:
            reason = _failure_message(self.path, "a write", e)
            if self.on_failure is not None:
                self.on_failure(reason)
            raise StoreFailed(reason) from None

    def compact(self) -> None:
        """Reclaim the space of deleted keys now (LevelDB does it in its own time; the bench
        compares disk use after it)."""
        self._db.compact_range()

    def snapshot(self) -> "LevelDBReader":
        return LevelDBReader(self._db.snapshot())

    def close(self):
        if not self._db.closed:
            self._db.close()



class LevelDBReader:
    """A LevelDB snapshot: the store as it was when taken (state.kv.KVStore.snapshot)."""

    def __init__(self, snap):
        self._snap = snap

    def get(self, key: bytes) -> bytes | None:
        return self._snap.get(key)

    def scan(self, prefix: bytes, reverse: bool = False):
        with self._snap.iterator(prefix=prefix) as it:
            items = it if not reverse else list(it)[::-1]  # (see LevelDBStore.scan)
            yield from items

    def close(self) -> None:
        self._snap.close()
