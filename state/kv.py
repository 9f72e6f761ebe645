"""The key-value store interface (bytes -> bytes) and its in-memory implementation.

A store offers point reads, ordered prefix scans and one atomic batch write; everything else
(overlays, schema, the chain store) is built on top, so LevelDB and memory pass one conformance suite.
"""
from bisect import bisect_left, insort
from typing import Iterator, Protocol


class KVStore(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def scan(self, prefix: bytes, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs whose key starts with prefix, in key order."""

    def write(self, puts: dict[bytes, bytes], deletes: frozenset[bytes] | set[bytes] = frozenset(),
              durable: bool = True) -> None:
        """Apply all puts and deletes atomically (all or nothing). With durable, the batch has
        reached the disk when this returns; without, it survives the process being killed but
        not a power loss (for data peers can send again: their blocks and votes)."""

    def snapshot(self) -> "KVReader":
        """A consistent read-only view of the store as it is now, unaffected by later writes
        (scan and get; close it when done). Safe to read from another thread."""

    def close(self) -> None: ...


class KVReader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def scan(self, prefix: bytes, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]: ...

    def close(self) -> None: ...


class MemoryKV:
    """KVStore in a dict, with a sorted key list for scans. For tests and simulations."""

    def __init__(self):
        self._data: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def scan(self, prefix: bytes, reverse: bool = False):
        i = bisect_left(self._keys, prefix)
        hits = []
        while i < len(self._keys) and self._keys[i].startswith(prefix):
            hits.append(self._keys[i])
            i += 1
        for k in reversed(hits) if reverse else hits:
            yield k, self._data[k]

    def write(self, puts, deletes=frozenset(), durable=True):
        for k in deletes:
            if k in self._data:
                del self._data[k]
                del self._keys[bisect_left(self._keys, k)]
        for k, v in puts.items():
            if k not in self._data:
                insort(self._keys, k)
            self._data[k] = v

    def snapshot(self) -> "MemoryKV":
        copy = MemoryKV()
        copy._data, copy._keys = dict(self._data), list(self._keys)
        return copy

    def close(self):
        pass
