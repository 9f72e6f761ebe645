"""The full-state commitment that a snapshot is verified against.

The state root (`transition.compute_state_root`) chains per-block diffs: it proves that a block
followed from its parent, not what the state holds, so it cannot check a snapshot. This commitment
covers everything a node needs to go on from a final height: every state key (`v1/s/`) and the
elections and liveness records that consensus keeps beside them in the chain store (schedules,
missed slots, producers per epoch, jailings), in key order, cut into chunks of about CHUNK_BYTES.
The commitment is the Merkle root of the chunks' hashes, bound to the height, so a snapshot can be
checked chunk by chunk as it is read.

Every node computes it for the state after each final block at a positive multiple of the chain's
`snapshot_interval` (node.snapshots). A later block attests it in its header (`snapshot_height`,
`snapshot_root`; `process_attestation` keeps attestations in increasing order), and a producer votes
for such a block only if the attestation equals its own commitment. So a final attesting block
carries the votes of more than two thirds of the producers, at least one of them honest, for that
commitment.
"""
from typing import Iterable, Iterator

import msgpack

from core import codec
from core.errors import InvalidBlock, ProtocolError
from core.types import ZERO_HASH, Hash, merkle_root
from state import schema

# disjoint and in key order, so scanning them one after the other yields the keys in order
COMMITTED_PREFIXES = (schema.JAILED, schema.MISSED, schema.PRODUCED, schema.SCHEDULE, schema.S)
CHUNK_BYTES = 1 << 20  # a chunk closes at the first entry that takes it to this size
MAX_CHUNK_BYTES = 2 * CHUNK_BYTES  # the largest state entry is far below a chunk's size


def is_snapshot_height(height: int, interval: int) -> bool:
    return height > 0 and height % interval == 0


def committed_entries(kv) -> Iterator[tuple[bytes, bytes]]:
    """Every committed (key, value) of a store (or a read snapshot of one), in key order."""
    for prefix in COMMITTED_PREFIXES:
        yield from kv.scan(prefix)


def is_committed_key(key: bytes) -> bool:
    return key.startswith(COMMITTED_PREFIXES)


def make_chunks(entries: Iterable[tuple[bytes, bytes]]) -> Iterator[bytes]:
    """The entries cut into encoded chunks (each a msgpack array of [key, value] pairs), in order.
    A state with no entries still has one (empty) chunk."""
    chunk, size = [], 0
    for key, value in entries:
        chunk.append([key, value])
        size += len(key) + len(value) + 8
        if size >= CHUNK_BYTES:
            yield codec.pack_flat(chunk)
            chunk, size = [], 0
    if chunk or size == 0:
        yield codec.pack_flat(chunk)


def chunk_hash(chunk: bytes) -> bytes:
    return codec.sha256(b"snapshot-chunk" + chunk)


def commitment(height: int, chunk_hashes: list[bytes]) -> Hash:
    """What a block attests for the state after final block `height`."""
    return Hash(codec.sha256(b"snapshot" + schema.height_bytes(height) + merkle_root(chunk_hashes)))


def compute(kv, height: int) -> tuple[Hash, list[bytes]]:
    """The commitment of a store's committed entries at `height`, and the chunks' hashes."""
    hashes = [chunk_hash(c) for c in make_chunks(committed_entries(kv))]
    return commitment(height, hashes), hashes


def decode_chunk(raw: bytes, after: bytes) -> list[tuple[bytes, bytes]]:
    """A chunk's entries; ValueError unless it is an array of [key, value] byte pairs whose keys
    are committed ones, strictly increasing and above `after` (the previous chunk's last key)."""
    try:
        items = codec.unpack(raw, MAX_CHUNK_BYTES)
    except ProtocolError as e:
        raise ValueError(f"chunk does not decode: {e.code}: {e.message}") from None
    if type(items) is not list:
        raise ValueError("a chunk is an array of [key, value] pairs")
    out = []
    for item in items:
        if (type(item) is not list or len(item) != 2 or type(item[0]) is not bytes
                or type(item[1]) is not bytes):
            raise ValueError("a chunk entry is a [key, value] pair of byte strings")
        key, value = item
        if key <= after or not is_committed_key(key):
            raise ValueError("chunk keys must be committed keys in strictly increasing order")
        out.append((key, value))
        after = key
    return out


def get_last_attested(view) -> int:
    """The newest snapshot height attested on the chain of `view` (0: none)."""
    raw = view.get(schema.SNAPSHOT_ATTESTED)
    return 0 if raw is None else msgpack.unpackb(raw)


def compute_attestation(roots: dict[int, Hash], last_attested: int, final_height: int) -> tuple[int, Hash]:
    """What a producer attests: the newest of its commitments (`roots`, height -> root) above the
    last attested and at most its final height; (0, zero hash) if none is."""
    due = [h for h in roots if last_attested < h <= final_height]
    return (max(due), roots[max(due)]) if due else (0, ZERO_HASH)


def process_attestation(layer, snapshot_height: int, interval: int) -> None:
    """A block attesting a snapshot (its header's `snapshot_height` above 0) names a snapshot
    height later than the last one attested on its chain (so each is attested at most once and
    in order; a height no producer could attest in time is skipped, never waited for). Whether
    its root is right is for the voters to check: it needs the final state, which the state
    transition does not see."""
    if snapshot_height == 0:
        return
    # only heights at which every node computes the commitment can be attested
    if not is_snapshot_height(snapshot_height, interval):
        raise InvalidBlock("bad_snapshot", f"{snapshot_height} is not a snapshot height "
                                           f"(a multiple of {interval})")
    # attestations go forward: one per snapshot height at most
    last = get_last_attested(layer)
    if snapshot_height <= last:
        raise InvalidBlock("bad_snapshot", f"snapshot {snapshot_height} is not after the last "
                                           f"attested one ({last})")
    layer.writes[schema.SNAPSHOT_ATTESTED] = codec.pack_flat(snapshot_height)
