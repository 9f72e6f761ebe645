"""Snapshots: the node's commitments to its full state at snapshot heights (state.snapshot), the
snapshot files it keeps and serves, and starting a new node from one.

At each snapshot height H (a positive multiple of the chain's `snapshot_interval`), once the block
at H is final, the chain store holds the state after it for a moment (consensus.chain splits its
commit batch there). A LevelDB read snapshot is taken then, and a background thread walks it: it
computes the commitment and, if the node keeps snapshots (`snapshot_keep`), writes the chunks to
`<data_dir>/snapshots/`. The event loop never waits for it; votes and blocks use the commitment once
it is ready (a producer votes for a block attesting H only if the block's root is its own).

A snapshot file (the export format in docs/protocol.md, *Snapshots*) carries the chunks, block H, and
the proof: a block attesting (H, commitment) with the votes that notarized it. `restore` checks every
chunk against the commitment, the attesting block's signature and votes against the schedule and
producer keys in the restored state, and — since a forger could make a whole consistent world with
keys of its own — the attesting block's id against an anchor outside the file: the operator's
`--trust-block-id` or the chain's peers. Only then does it write a data directory.
"""
import logging
import os
import shutil
import struct
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Iterator

import msgpack

from core import codec
from core.genesis import Genesis, now_ms
from core.quorum import notarization_quorum
from core.types import Block, Hash, Vote
from state import schema, snapshot

log = logging.getLogger("node.snapshots")

MAGIC = b"community-chain snapshot 1\n"
MAX_MANIFEST_BYTES = 64 * 1024 * 1024  # two blocks, their votes and 32 bytes per chunk
ROOTS_REMEMBERED = 16  # commitments kept in the store: attestations come a few blocks after


class SnapshotError(Exception):
    """A snapshot file or its anchor failed a check; nothing was written."""


def _frame(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _read_frame(f: BinaryIO, limit: int, what: str) -> bytes:
    head = f.read(4)
    if len(head) != 4:
        raise SnapshotError(f"the file ends before its {what}")
    (n,) = struct.unpack(">I", head)
    if n > limit:
        raise SnapshotError(f"its {what} claims {n} bytes, more than {limit}")
    data = f.read(n)
    if len(data) != n:
        raise SnapshotError(f"the file ends inside its {what}")
    return data


class Snapshots:
    """One node's commitments and kept snapshot files. Methods run on the event loop's thread;
    only `_walk` runs on the background thread, on a read snapshot of the store."""

    def __init__(self, kv, chain, genesis: Genesis, data_dir: str | None, keep: int):
        self.kv, self.chain, self.genesis = kv, chain, genesis
        self.keep = keep if data_dir else 0
        self.dir = Path(data_dir) / "snapshots" if data_dir else None
        self.roots: dict[int, Hash] = {
            int.from_bytes(k[len(schema.SNAPSHOT_ROOT):], "big"): Hash(v)
            for k, v in kv.scan(schema.SNAPSHOT_ROOT)}
        self._pending: dict[int, tuple[Future, object]] = {}  # height -> (its walk, its reader)
        self._cancel = threading.Event()
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="snapshot")
        self.last_seconds: float | None = None  # how long the latest walk took (a metric)
        chain.on_snapshot_height = self.on_snapshot_height
        final = chain.final_height
        # a restart between a snapshot height's commit and its walk's end: the store still holds
        # that state only if nothing was finalized since
        if snapshot.is_snapshot_height(final, genesis.params.snapshot_interval) and final not in self.roots:
            self.on_snapshot_height(final)

    # ------------------------------------------------------------------ computing
    def on_snapshot_height(self, height: int) -> None:
        """Chain tells us: the store holds exactly the state after final block `height`. A walk
        still waiting for an older height is dropped: a node catching up through many snapshot
        heights walks its state once per height it reaches at its pace, not once per height."""
        for older, (future, reader) in list(self._pending.items()):
            if future.cancel():
                reader.close()
                del self._pending[older]
        reader = self.kv.snapshot()
        block = self.chain.final_block_bytes(height)
        self._pending[height] = (self._worker.submit(self._walk, reader, height, block), reader)

    def _walk(self, reader, height: int, block: bytes) -> Hash:
        """(background thread) The commitment of `reader`'s state, and the chunk file if kept. A
        file that cannot be written is given up (and said); the commitment still counts."""
        started = now_ms()
        out = None
        if self.keep:
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
                out = open(self.dir / f"{height}.chunks.tmp", "wb")
            except OSError as e:
                log.warning("snapshot %d: no file (%s)", height, e)
        hashes = []
        try:
            for chunk in snapshot.make_chunks(snapshot.committed_entries(reader)):
                if self._cancel.is_set():
                    raise SnapshotError("the node is stopping")
                hashes.append(snapshot.chunk_hash(chunk))
                if out is not None:
                    try:
                        out.write(_frame(chunk))
                    except OSError as e:
                        log.warning("snapshot %d: file given up (%s)", height, e)
                        out = self._discard(out, height)
            root = snapshot.commitment(height, hashes)
            if out is not None:
                try:
                    out.close()
                    meta = codec.pack_flat({"height": height, "root": root, "chunk_hashes": hashes,
                                            "block": block})
                    (self.dir / f"{height}.meta.tmp").write_bytes(meta)
                    os.replace(self.dir / f"{height}.chunks.tmp", self.dir / f"{height}.chunks")
                    os.replace(self.dir / f"{height}.meta.tmp", self.dir / f"{height}.meta")
                    out = None
                except OSError as e:
                    log.warning("snapshot %d: file given up (%s)", height, e)
        finally:
            if out is not None:
                self._discard(out, height)
            reader.close()
        self.last_seconds = (now_ms() - started) / 1000
        log.info("snapshot %d: commitment %s over %d chunks in %.1f s", height, root.hex()[:16],
                 len(hashes), self.last_seconds)
        return root

    def _discard(self, out, height: int) -> None:
        out.close()
        for suffix in ("chunks.tmp", "meta.tmp"):
            (self.dir / f"{height}.{suffix}").unlink(missing_ok=True)

    def _collect(self) -> None:
        """Take in the walks that ended: remember, persist, and drop the oldest roots and files."""
        done = [h for h, (f, _) in self._pending.items() if f.done()]
        if not done:
            return
        puts = {}
        for height in done:
            future, _ = self._pending.pop(height)
            try:
                self.roots[height] = future.result()
                puts[schema.snapshot_root_key(height)] = self.roots[height]
            except Exception as e:  # (noqa: the walk's own failure, logged; no commitment then)
                log.warning("snapshot %d: no commitment (%s: %s)", height, type(e).__name__, e)
        stale = sorted(self.roots)[:-ROOTS_REMEMBERED]
        for height in stale:
            del self.roots[height]
        self.kv.write(puts, {schema.snapshot_root_key(h) for h in stale})
        self._drop_old_files()

    def _drop_old_files(self) -> None:
        kept = self.kept()
        for path in self.dir.glob("*.*") if self.dir and self.dir.exists() else ():
            stem = path.name.split(".")[0]
            if stem.isdecimal() and int(stem) not in kept[-self.keep:] and not path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)

    def root(self, height: int) -> Hash | None:
        self._collect()
        return self.roots.get(height)

    def attestable(self) -> dict[int, Hash]:
        """Commitments a block of ours may attest (consensus.chain.build_block picks one)."""
        self._collect()
        return self.roots

    def accepts(self, header) -> bool:
        """Whether we may vote for a block with this header: it attests nothing, or a commitment
        equal to ours (unknown yet: no vote; different: no vote, and it is said)."""
        if header.snapshot_height == 0:
            return True
        ours = self.root(header.snapshot_height)
        if ours is not None and ours != header.snapshot_root:
            log.warning("block %d by %s attests snapshot %d as %s, ours is %s: not voting for it",
                        header.height, header.producer, header.snapshot_height,
                        header.snapshot_root.hex()[:16], ours.hex()[:16])
        return ours == header.snapshot_root

    def prune_floor(self) -> int:
        """Blocks from the oldest kept snapshot on are kept: they prove and extend it."""
        kept = self.kept()
        return kept[0] if kept else self.chain.final_height

    def wait_idle(self) -> None:
        """Wait for the walks under way (tools and tests; the node never waits for one)."""
        for future, _ in list(self._pending.values()):
            future.exception()
        self._collect()

    def close(self) -> None:
        self._cancel.set()
        self._worker.shutdown(wait=True, cancel_futures=True)
        for future, reader in self._pending.values():
            if future.cancelled():
                reader.close()

    # ------------------------------------------------------------------ serving
    def kept(self) -> list[int]:
        """Heights of the complete snapshot files on disk, oldest first."""
        if not self.dir or not self.dir.exists():
            return []
        return sorted(int(p.name.split(".")[0]) for p in self.dir.glob("*.meta")
                      if p.name.split(".")[0].isdecimal())

    def attestation(self, height: int) -> tuple[bytes, list] | None:
        """The final block attesting snapshot `height` and its votes, if there is one."""
        raw = self.kv.get(schema.snapshot_attested_by_key(height))
        if raw is None:
            return None
        block = self.chain.final_block_bytes(msgpack.unpackb(raw))
        if block is None:
            return None
        return block, self.chain.final_block_votes(Block.decode(block).id)

    def listing(self) -> list[dict]:
        """The kept snapshots a new node can start from (attested by a final block), newest first."""
        self._collect()
        out = []
        for height in reversed(self.kept()[-self.keep:] if self.keep else []):
            proof = self.kv.get(schema.snapshot_attested_by_key(height))
            meta = msgpack.unpackb((self.dir / f"{height}.meta").read_bytes())
            out.append({"height": height, "root": meta["root"].hex(), "chunks": len(meta["chunk_hashes"]),
                        "bytes": (self.dir / f"{height}.chunks").stat().st_size,
                        "attested_by": None if proof is None else msgpack.unpackb(proof)})
        return out

    def export(self, height: int) -> Iterator[bytes] | None:
        """The snapshot file for `height` (see the module doc), or None if it is not kept or not
        attested by a final block yet."""
        self._collect()
        proof = self.attestation(height) if height in self.kept() else None
        if proof is None:
            return None
        meta = msgpack.unpackb((self.dir / f"{height}.meta").read_bytes())
        manifest = codec.pack_flat({
            "chain_id": self.genesis.chain_id, "genesis_hash": self.genesis.hash, "height": height,
            "root": meta["root"], "chunk_hashes": meta["chunk_hashes"], "block": meta["block"],
            "attesting_block": proof[0], "votes": proof[1]})
        chunks = open(self.dir / f"{height}.chunks", "rb")  # open now: a later prune cannot take it

        def stream() -> Iterator[bytes]:
            with chunks:
                yield MAGIC + _frame(manifest)
                while data := chunks.read(1 << 20):
                    yield data
        return stream()


# ---------------------------------------------------------------------------------- restoring
def read_manifest(f: BinaryIO, genesis: Genesis) -> dict:
    if f.read(len(MAGIC)) != MAGIC:
        raise SnapshotError("not a community-chain snapshot file (version 1)")
    try:
        m = msgpack.unpackb(_read_frame(f, MAX_MANIFEST_BYTES, "manifest"), raw=False)
        if (m["chain_id"] != genesis.chain_id or m["genesis_hash"] != genesis.hash):
            raise SnapshotError(f"the snapshot is of chain {m['chain_id']!r} with another genesis")
        block, attesting = Block.decode(m["block"]), Block.decode(m["attesting_block"])
        votes = [Vote.from_list(v) for v in m["votes"]]
        height, root, hashes = m["height"], Hash(m["root"]), [bytes(h) for h in m["chunk_hashes"]]
    except SnapshotError:
        raise
    except Exception as e:  # (any malformed field: the file's fault, said with its cause)
        raise SnapshotError(f"malformed manifest ({type(e).__name__}: {e})") from None
    if block.header.height != height or block.header.chain_id != genesis.chain_id:
        raise SnapshotError("its block is not the block at the snapshot height")
    if attesting.header.snapshot_height != height or attesting.header.snapshot_root != root:
        raise SnapshotError("its attesting block does not attest this snapshot")
    if snapshot.commitment(height, hashes) != root:
        raise SnapshotError("its chunk hashes do not make its commitment")
    return {"height": height, "root": root, "hashes": hashes, "block": block,
            "attesting": attesting, "votes": votes}


def restore(path: str, data_dir: str, genesis: Genesis, anchor_ids: list[bytes], open_store) -> dict:
    """Check the snapshot file at `path` and write a new data directory from it. `anchor_ids`: the
    attesting block's id as the operator or the chain's peers know it (all must equal it, at least
    one is needed). `open_store(path)`: a KVStore at a path. Raises SnapshotError; on any failure
    the data directory is removed again."""
    if not anchor_ids:
        raise SnapshotError("no anchor: give --trust-block-id or --peer URLs of the chain, so the "
                            "attesting block is checked against something outside the file")
    target = Path(data_dir)
    if target.exists() and any(target.iterdir()):
        raise SnapshotError(f"{data_dir} is not empty: restore into a new data directory")
    target.mkdir(parents=True, exist_ok=True)
    try:
        return _restore(path, target, genesis, anchor_ids, open_store)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise


def _restore(path, target: Path, genesis: Genesis, anchor_ids, open_store) -> dict:
    from consensus.chain import Chain  # the restored store is checked by opening it as a node does

    with open(path, "rb") as f:
        m = read_manifest(f, genesis)
        attesting = m["attesting"]
        if any(a != attesting.id for a in anchor_ids):
            raise SnapshotError(f"the attesting block {attesting.id.hex()} is not the chain's "
                                f"block at height {attesting.header.height} (the anchor differs)")
        kv = open_store(str(target / "chain.ldb"))
        try:
            after, entries, count = b"", {}, 0
            for i, expected in enumerate(m["hashes"]):
                raw = _read_frame(f, snapshot.MAX_CHUNK_BYTES, f"chunk {i}")
                if snapshot.chunk_hash(raw) != expected:
                    raise SnapshotError(f"chunk {i} does not match its hash")
                try:
                    items = snapshot.decode_chunk(raw, after)
                except ValueError as e:
                    raise SnapshotError(f"chunk {i}: {e}") from None
                if items:
                    after = items[-1][0]
                entries.update(items)
                count += len(items)
                if len(entries) >= 50_000:
                    kv.write(entries, durable=False)
                    entries = {}
            if f.read(1):
                raise SnapshotError("the file has bytes after its last chunk")
            block = m["block"]
            slot_now = genesis.slot_at(now_ms())
            entries.update({
                schema.GENESIS_HASH: genesis.hash,
                schema.FINAL_HEAD: codec.pack_flat([block.header.to_list(), block.id]),
                schema.final_at_height_key(block.header.height): block.id,
                schema.block_key(block.id): block.encode(),
                schema.PRUNED_BELOW: codec.pack_flat(block.header.height),
                schema.snapshot_root_key(m["height"]): m["root"],
                # a producer never signs a slot before now again, whatever it signed before
                schema.LAST_VOTE: codec.pack_flat(slot_now),
                schema.LAST_PRODUCED: codec.pack_flat(slot_now),
            })
            kv.write(entries)
            chain = Chain(kv, genesis)
            _check_attesting_block(chain, attesting, m["votes"])
        finally:
            kv.close()
    return {"height": m["height"], "root": m["root"].hex(), "entries": count,
            "attested_by": attesting.header.height, "data_dir": str(target)}


def _check_attesting_block(chain, attesting: Block, votes: list[Vote]) -> None:
    """The attesting block is signed by its slot's producer and notarized by its slot's schedule,
    both as the restored state records them."""
    header = attesting.header
    producer = chain.producer_for_slot(header.slot)
    key = chain.producer_key(producer)
    if header.producer != producer or key is None or not attesting.verify_signature(key):
        raise SnapshotError("the attesting block is not signed by its slot's producer")
    schedule = chain.schedules.for_slot(header.slot)
    voters = set()
    for v in votes:
        key = chain.producer_key(v.voter)
        if (v.block_id == attesting.id and v.voter in schedule and key is not None
                and v.chain_id == chain.genesis.chain_id and v.verify(key)):
            voters.add(v.voter)
    if len(voters) < notarization_quorum(len(schedule)):
        raise SnapshotError(f"the attesting block has {len(voters)} valid votes of its schedule's "
                            f"{len(schedule)}; notarization needs {notarization_quorum(len(schedule))}")

