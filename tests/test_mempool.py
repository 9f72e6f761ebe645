"""Mempool: dedupe by id, caps on count and bytes, eviction at expiry, arrival order."""
import pytest

from core.crypto import Keypair
from core.errors import InvalidTx
from core.types import Tx
from node.mempool import Mempool

KEY = Keypair(bytes([9]) * 32)


def tx(salt, expires_at=10_000):
    return Tx.create(KEY, "c", "transfer", "alice", expires_at, {"to": "bob", "amount": 1}, salt=salt)


def test_duplicate_id_is_409_and_not_added_twice():
    pool = Mempool(10, 10**6)
    pool.add(tx(1))
    with pytest.raises(InvalidTx) as e:
        pool.add(tx(1))
    assert (e.value.code, e.value.status, len(pool)) == ("duplicate", 409, 1)


def test_count_and_byte_caps_answer_503_mempool_full():
    by_count = Mempool(2, 10**6)
    by_count.add(tx(1))
    by_count.add(tx(2))
    with pytest.raises(InvalidTx) as e:
        by_count.add(tx(3))
    assert (e.value.code, e.value.status) == ("mempool_full", 503)
    size = len(tx(1).raw)
    by_bytes = Mempool(100, size * 2)
    by_bytes.add(tx(1))
    by_bytes.add(tx(2))
    with pytest.raises(InvalidTx):
        by_bytes.add(tx(3))
    by_bytes.remove([tx(1).id])
    by_bytes.add(tx(3))  # removal gives the bytes back


def test_expired_txs_are_evicted_and_returned():
    pool = Mempool(10, 10**6)
    early, late = tx(1, expires_at=5_000), tx(2, expires_at=9_000)
    pool.add(early)
    pool.add(late)
    assert pool.evict_expired(5_000) == [early]
    assert tx(1, 5_000).id not in pool and late.id in pool


def test_take_keeps_arrival_order_and_skips_excluded():
    pool = Mempool(10, 10**6)
    txs = [tx(i) for i in range(5)]
    for t in txs:
        pool.add(t)
    assert pool.take(3) == txs[:3]
    assert pool.take(10, exclude={txs[0].id, txs[2].id}) == [txs[1], txs[3], txs[4]]
