"""Replay keys, kept only while they protect anything.

A tx's id is in the chain at most once: `apply_tx` writes a replay key for it, which the next copy
finds (`duplicate`). A tx is valid only before its `expires_at`, and block timestamps increase, so
once a block's timestamp reaches a tx's expiry no copy of it can be applied again whatever the
state holds (`expired`): its replay key can go. Keys are laid out by expiry second
(`schema.tx_seen_key`), with a count per second and a cursor (`TX_PRUNE_NEXT`: the earliest second
that may hold keys, and how many keys there are), so at the start of a block `process_expired`
finds the due keys with point reads and one prefix scan per second that holds any, deleting at
most MAX_PRUNED_PER_BLOCK keys (the rest in the next blocks, oldest first): no block does
unbounded work, and pruning outpaces what full blocks add (5,000 txs by default).

A final tx's height and index outlive its replay key in the node's chain store
(`schema.tx_location_key`, written at commit by consensus.chain).
"""
from itertools import islice

import msgpack

from core.codec import pack_flat
from state import schema
from state.view import Journal

BUCKET_MS = schema.TX_SEEN_BUCKET_MS
MAX_PRUNED_PER_BLOCK = 10_000
# seconds with no keys skipped per block: on a chain with sparse txs the cursor still moves ~1,000
# times faster than time (0.5 s blocks), with at most this many point reads
MAX_BUCKETS_PER_BLOCK = 1024


def compute_bucket(expires_at: int) -> int:
    return expires_at // BUCKET_MS


def is_bucket_due(bucket: int, now_ms: int) -> bool:
    """Whether every tx expiring in `bucket` has expired at `now_ms` (a tx with expires_at <= a
    block's timestamp is refused in it and in every later block)."""
    return (bucket + 1) * BUCKET_MS - 1 <= now_ms


def get_location(view, tx) -> tuple[int, int] | None:
    """(height, index) of `tx` in the chain, while its replay key is kept."""
    raw = view.get(schema.tx_seen_key(tx.expires_at, tx.id))
    return None if raw is None else tuple(msgpack.unpackb(raw))


def is_seen(view, tx) -> bool:
    return view.get(schema.tx_seen_key(tx.expires_at, tx.id)) is not None


def record_tx(j: Journal, tx, height: int, index: int) -> None:
    """Write `tx`'s replay key, counted in its second and in the cursor."""
    bucket = compute_bucket(tx.expires_at)
    j.put(schema.tx_seen_key(tx.expires_at, tx.id), pack_flat([height, index]))
    count_key = schema.tx_expiry_count_key(bucket)
    count = j.get(count_key)
    j.put(count_key, pack_flat(1 + (0 if count is None else msgpack.unpackb(count))))
    cursor = j.get(schema.TX_PRUNE_NEXT)
    if cursor is None:
        j.put(schema.TX_PRUNE_NEXT, pack_flat([bucket, 1]))
    else:
        first, total = msgpack.unpackb(cursor)
        j.put(schema.TX_PRUNE_NEXT, pack_flat([min(first, bucket), total + 1]))


def process_expired(layer, now_ms: int) -> None:
    """Delete the replay keys of txs expired at `now_ms` (a block's timestamp), oldest second
    first, at most MAX_PRUNED_PER_BLOCK of them and MAX_BUCKETS_PER_BLOCK seconds visited."""
    cursor = layer.get(schema.TX_PRUNE_NEXT)
    if cursor is None:
        return
    bucket, total = msgpack.unpackb(cursor)
    if not is_bucket_due(bucket, now_ms):
        return
    j = Journal(layer)
    pruned = visited = 0
    while total and is_bucket_due(bucket, now_ms) and visited < MAX_BUCKETS_PER_BLOCK:
        visited += 1
        count_key = schema.tx_expiry_count_key(bucket)
        raw = j.get(count_key)
        if raw is None:
            bucket += 1
            continue
        count = msgpack.unpackb(raw)
        take = min(count, MAX_PRUNED_PER_BLOCK - pruned)
        for key, _ in islice(j.scan(schema.tx_seen_prefix(bucket)), take):
            j.delete(key)
        pruned, count, total = pruned + take, count - take, total - take
        if count:  # the budget ran out inside this second: the next block goes on from here
            j.put(count_key, pack_flat(count))
            break
        j.delete(count_key)
        bucket += 1
    if total:
        j.put(schema.TX_PRUNE_NEXT, pack_flat([bucket, total]))
    else:
        j.delete(schema.TX_PRUNE_NEXT)
    j.commit()
