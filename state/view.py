"""Read views and write overlays.

`BlockState` is the state after one non-final block: its writes (key -> value, None = deleted) on top
of its parent's. Reads walk up to the committed store. A `Journal` buffers one tx's writes so a tx
that fails halfway leaves nothing behind.
"""
from typing import Iterator

from state.kv import KVStore

_MISSING = object()


class Layer:
    """Writes of one block (or of the committed store when `parent` is None and `kv` is set)."""

    __slots__ = ("parent", "kv", "writes")

    def __init__(self, parent: "Layer | None", kv: KVStore | None = None):
        self.parent = parent
        self.kv = kv if parent is None else parent.kv
        self.writes: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        layer = self
        while layer is not None:
            v = layer.writes.get(key, _MISSING)
            if v is not _MISSING:
                return v
            layer = layer.parent
        return self.kv.get(key)

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Merged (key, value) pairs under prefix in key order; overlays win over the store."""
        merged: dict[bytes, bytes | None] = {k: v for k, v in self.kv.scan(prefix)}
        chain = []
        layer = self
        while layer is not None:
            chain.append(layer)
            layer = layer.parent
        for layer in reversed(chain):
            for k, v in layer.writes.items():
                if k.startswith(prefix):
                    merged[k] = v
        for k in sorted(merged):
            if merged[k] is not None:
                yield k, merged[k]


class Journal:
    """One tx's writes over a layer; `commit` moves them into the layer, dropping it discards them."""

    __slots__ = ("base", "writes")

    def __init__(self, base: Layer):
        self.base = base
        self.writes: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        v = self.writes.get(key, _MISSING)
        return self.base.get(key) if v is _MISSING else v

    def put(self, key: bytes, value: bytes) -> None:
        self.writes[key] = value

    def delete(self, key: bytes) -> None:
        self.writes[key] = None

    def scan(self, prefix: bytes):
        merged: dict[bytes, bytes | None] = dict(self.base.scan(prefix))
        merged.update((k, v) for k, v in self.writes.items() if k.startswith(prefix))
        for k in sorted(merged):
            if merged[k] is not None:
                yield k, merged[k]

    def commit(self) -> None:
        self.base.writes.update(self.writes)
        self.writes = {}
