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


def sender_tx(sender, salt, body_bytes=0):
    key = Keypair(bytes([len(sender)]) * 32)
    return Tx.create(key, "c", "transfer", sender, 10_000,
                     {"to": "bob", "amount": 1, "memo": "m" * body_bytes}, salt=salt)


def test_a_sender_over_its_quota_is_429_and_others_still_get_in():
    pool = Mempool(100, 10**6, max_sender_txs=3)
    for i in range(3):
        pool.add(sender_tx("mallory", i))
    with pytest.raises(InvalidTx) as e:
        pool.add(sender_tx("mallory", 3))
    assert (e.value.code, e.value.status, len(pool)) == ("sender_quota", 429, 3)
    pool.add(sender_tx("bob", 0))  # the pool itself has room: other members are not locked out
    pool.remove([sender_tx("mallory", 0).id])
    assert pool.pending_of("mallory")[0] == 2
    pool.add(sender_tx("mallory", 3))  # a final (removed) tx frees its place


def test_the_sender_quota_counts_bytes_too():
    size = len(sender_tx("mallory", 0, 200).raw)
    pool = Mempool(100, 10**6, max_sender_bytes=2 * size)
    pool.add(sender_tx("mallory", 0, 200))
    pool.add(sender_tx("mallory", 1, 200))
    with pytest.raises(InvalidTx) as e:
        pool.add(sender_tx("mallory", 2, 200))
    assert e.value.code == "sender_quota" and pool.pending_of("mallory") == (2, 2 * size)
    pool.evict_expired(10_000)  # expiry frees the quota as removal does
    assert pool.pending_of("mallory") == (0, 0) and not pool._senders


def test_the_default_quota_is_a_twentieth_of_the_pool_and_never_tiny():
    node = Mempool(100_000, 64 * 1024 * 1024)
    assert (node.max_sender_txs, node.max_sender_bytes) == (5_000, 64 * 1024 * 1024 // 20)
    small = Mempool(2, 10**6)  # a pool smaller than the minimum quota: only the pool's caps act
    assert (small.max_sender_txs, small.max_sender_bytes) == (1000, 1 << 20)
