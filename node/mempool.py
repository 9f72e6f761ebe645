"""The mempool: txs admitted but not yet final, deduplicated by id, bounded in count and bytes,
evicted when they expire. Signatures are verified once, on admission (the chain's VerifiedCache
remembers it for block production and import).

Each sender may hold at most a share of it (`sender_quota`, 429): admission dry-runs a tx against
the tip, which has not charged the sender's other pending txs yet (state.allowance), so without a
quota one member could fill the pool with txs its allowance will never pay for, and lock others out.
"""
from collections import OrderedDict

from core.errors import InvalidTx
from core.types import Tx


# by default a sender may hold 1/20 of the pool (5,000 txs or 3.2 MiB of the node's defaults), so
# it takes 20 members to fill it; never less than these, which a busy honest wallet stays under
# (the 8-member `bench testnet` at 2,000 tx/s holds ~250-500 per sender)
SENDER_SHARE = 20
MIN_SENDER_TXS = 1000
MIN_SENDER_BYTES = 1 << 20


class Mempool:
    def __init__(self, max_txs: int, max_bytes: int, max_sender_txs: int | None = None,
                 max_sender_bytes: int | None = None):
        self.max_txs = max_txs
        self.max_bytes = max_bytes
        self.max_sender_txs = max_sender_txs or max(MIN_SENDER_TXS, max_txs // SENDER_SHARE)
        self.max_sender_bytes = max_sender_bytes or max(MIN_SENDER_BYTES, max_bytes // SENDER_SHARE)
        self._txs: OrderedDict[bytes, Tx] = OrderedDict()  # arrival order = inclusion order
        self._bytes = 0
        self._senders: dict[str, list[int]] = {}  # sender -> [pending txs, their bytes]

    def __len__(self) -> int:
        return len(self._txs)

    def __contains__(self, tx_id: bytes) -> bool:
        return tx_id in self._txs

    def get(self, tx_id: bytes) -> Tx | None:
        return self._txs.get(tx_id)

    def add(self, tx: Tx) -> None:
        if tx.id in self._txs:
            raise InvalidTx("duplicate", "tx is already pending", status=409)
        held = self._senders.get(tx.sender)
        # one sender cannot take the pool from the others
        if held is not None and (held[0] >= self.max_sender_txs
                                 or held[1] + len(tx.raw) > self.max_sender_bytes):
            raise InvalidTx("sender_quota", f"{tx.sender} already has {held[0]} pending txs "
                            f"({held[1]} bytes; at most {self.max_sender_txs} or "
                            f"{self.max_sender_bytes}); retry when they are final", status=429)
        if len(self._txs) >= self.max_txs or self._bytes + len(tx.raw) > self.max_bytes:
            raise InvalidTx("mempool_full", "the mempool is full; retry later", status=503)
        self._txs[tx.id] = tx
        self._bytes += len(tx.raw)
        if held is None:
            self._senders[tx.sender] = [1, len(tx.raw)]
        else:
            held[0] += 1
            held[1] += len(tx.raw)

    def pending_of(self, sender: str) -> tuple[int, int]:
        """(txs, bytes) `sender` has pending here."""
        held = self._senders.get(sender)
        return (0, 0) if held is None else (held[0], held[1])

    def remove(self, tx_ids) -> None:
        for tx_id in tx_ids:
            tx = self._txs.pop(tx_id, None)
            if tx is not None:
                self._bytes -= len(tx.raw)
                held = self._senders[tx.sender]
                held[0] -= 1
                held[1] -= len(tx.raw)
                if not held[0]:
                    del self._senders[tx.sender]

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
