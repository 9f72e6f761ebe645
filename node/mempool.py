"""The mempool: txs admitted but not yet final, deduplicated by id, bounded in count and bytes,
evicted when they expire. Signatures are verified once, on admission (the chain's VerifiedCache
remembers it for block production and import)."""
from collections import OrderedDict

from core.errors import InvalidTx
from core.types import Tx


class Mempool:
    def __init__(self, max_txs: int, max_bytes: int):
        self.max_txs = max_txs
        self.max_bytes = max_bytes
        self._txs: OrderedDict[bytes, Tx] = OrderedDict()  # arrival order = inclusion order
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._txs)

    def __contains__(self, tx_id: bytes) -> bool:
        return tx_id in self._txs

    def get(self, tx_id: bytes) -> Tx | None:
        return self._txs.get(tx_id)

    def add(self, tx: Tx) -> None:
        if tx.id in self._txs:
            raise InvalidTx("duplicate", "tx is already pending", status=409)
        if len(self._txs) >= self.max_txs or self._bytes + len(tx.raw) > self.max_bytes:
            raise InvalidTx("mempool_full", "the mempool is full; retry later", status=503)
        self._txs[tx.id] = tx
        self._bytes += len(tx.raw)

    def remove(self, tx_ids) -> None:
        for tx_id in tx_ids:
            tx = self._txs.pop(tx_id, None)
            if tx is not None:
                self._bytes -= len(tx.raw)

    def take(self, limit: int, exclude=frozenset()) -> list[Tx]:
        """Up to `limit` txs in arrival order, skipping ids in `exclude` (already in a pending block)."""
        out = []
        for tx_id, tx in self._txs.items():
            if tx_id not in exclude:
                out.append(tx)
                if len(out) >= limit:
                    break
        return out

    def evict_expired(self, now_ms: int) -> list[Tx]:
        expired = [tx for tx in self._txs.values() if tx.expires_at <= now_ms]
        self.remove([tx.id for tx in expired])
        return expired
