"""Snapshots in process, on the real chain code: the commitment (state.snapshot) covers every
committed entry and only those, whatever the chunking; attestations go forward only; a commit
that finalizes past a snapshot height stops there for the commitment to read; a producer attests
its own commitment and a voter refuses a block whose attestation differs; a snapshot file restores
the exact state, and every forged or unanchored variant of one is refused and writes nothing."""
import dataclasses
import threading

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.chain import Chain
from core import codec
from core.errors import InvalidBlock
from core.types import ZERO_HASH, BlockHeader, Hash, Vote
from node.snapshots import MAGIC, Snapshots, SnapshotError, restore
from node.store import LevelDBStore
from state import schema, snapshot
from state.kv import MemoryKV
from state.view import Layer
from tests.conftest import CHAIN_ID, TEST_PARAMS, make_genesis, make_tx, node_keypair

ALICE = node_keypair("alice")
INTERVAL = 3
GENESIS = make_genesis(dataclasses.replace(TEST_PARAMS, snapshot_interval=INTERVAL), producers=("alice",))

committed_keys = st.one_of(
    st.binary(min_size=1, max_size=12).map(lambda b: schema.S + b),
    st.binary(max_size=8).map(lambda b: schema.SCHEDULE + b),
    st.binary(max_size=8).map(lambda b: schema.MISSED + b))
states = st.dictionaries(committed_keys, st.binary(max_size=40), max_size=40)


def store_of(entries: dict) -> MemoryKV:
    kv = MemoryKV()
    kv.write(dict(entries))
    return kv


# ------------------------------------------------------------------ the commitment
@settings(max_examples=60, deadline=None)
@given(states, st.integers(8, 200))
def test_the_chunks_carry_every_committed_entry_in_order_and_nothing_else(entries, chunk_bytes):
    kv = store_of(entries)
    kv.write({schema.BLOCK + b"x": b"a block", schema.VOTES + b"x": b"votes"})  # not state
    after, read = b"", []
    with pytest.MonkeyPatch.context() as m:
        m.setattr(snapshot, "CHUNK_BYTES", chunk_bytes)  # many chunks
        chunks = list(snapshot.make_chunks(snapshot.committed_entries(kv)))
    for chunk in chunks:
        items = snapshot.decode_chunk(chunk, after)
        after = items[-1][0] if items else after
        read += items
    assert read == sorted(entries.items())


@settings(max_examples=60, deadline=None)
@given(states, st.data())
def test_any_change_to_the_state_changes_the_commitment(entries, data):
    root, _ = snapshot.compute(store_of(entries), 6)
    assert snapshot.compute(store_of(dict(reversed(list(entries.items())))), 6)[0] == root  # order-free
    assert snapshot.compute(store_of(entries), 9)[0] != root  # bound to its height
    changed = dict(entries)
    if entries and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(entries)))
        if data.draw(st.booleans()):
            del changed[key]
        else:
            changed[key] = entries[key] + b"!"
    else:
        changed[data.draw(committed_keys.filter(lambda k: k not in entries))] = b""
    assert snapshot.compute(store_of(changed), 6)[0] != root


@pytest.mark.parametrize("items, after, why", [
    ([[b"v1/s/b", b""], [b"v1/s/a", b""]], b"", "increasing"),
    ([[b"v1/s/a", b""], [b"v1/s/a", b""]], b"", "increasing"),
    ([[b"v1/s/a", b""]], b"v1/s/a", "increasing"),  # at or below the previous chunk's last key
    ([[b"v1/c/block/x", b""]], b"", "committed keys"),
    ([[b"v1/s/a"]], b"", "pair"),
    ([[b"v1/s/a", "text"]], b"", "pair"),
    ({"v1/s/a": b""}, b"", "array"),
])
def test_a_chunk_that_breaks_a_rule_is_refused(items, after, why):
    with pytest.raises(ValueError, match=why):
        snapshot.decode_chunk(codec.pack_flat(items), after)
    with pytest.raises(ValueError, match="decode"):
        snapshot.decode_chunk(b"\xc1garbage", b"")


@pytest.mark.parametrize("height, last, code", [
    (4, 0, "not a snapshot height"),  # every node commits at multiples of the interval only
    (3, 3, "not after the last"),  # attested once
    (3, 6, "not after the last"),  # in order
])
def test_an_attestation_out_of_turn_makes_the_block_invalid(height, last, code):
    layer = Layer(None, store_of({schema.SNAPSHOT_ATTESTED: codec.pack_flat(last)} if last else {}))
    with pytest.raises(InvalidBlock, match=code) as e:
        snapshot.process_attestation(layer, height, INTERVAL)
    assert e.value.code == "bad_snapshot" and layer.writes == {}


def test_an_attestation_must_name_a_final_height_and_carry_a_root():
    header = BlockHeader(CHAIN_ID, 9, Hash(bytes(32)), 9, 1, "alice", ZERO_HASH, ZERO_HASH, 6, 6, Hash(b"r" * 32))
    BlockHeader.from_list(header.to_list())
    for bad in (dataclasses.replace(header, snapshot_height=7),  # beyond the final height it claims
                dataclasses.replace(header, snapshot_root=ZERO_HASH),  # a height without a root
                dataclasses.replace(header, snapshot_height=0)):  # a root without a height
        with pytest.raises(InvalidBlock, match="wrong type or range"):
            BlockHeader.from_list(bad.to_list())


# ------------------------------------------------------------------ on the chain
class OneProducer:
    """alice alone: each of her votes notarizes, consecutive slots finalize."""

    def __init__(self, tmp_path, keep=2):
        self.kv = MemoryKV()
        self.chain = Chain(self.kv, GENESIS)
        self.snaps = Snapshots(self.kv, self.chain, GENESIS, str(tmp_path), keep)
        self.slot = GENESIS.slot_at(GENESIS.genesis_time_ms + 60_000)
        self.blocks = []

    def block(self, txs=(), roots=None):
        self.snaps.wait_idle()  # (a node would attest once its walk ended; here at once)
        block, layer, _ = self.chain.build_block(ALICE, "alice", self.slot, list(txs),
                                                 self.snaps.attestable() if roots is None else roots)
        self.slot += 1
        node = self.chain.add_block(block, None, own_layer=layer)
        self.blocks.append(block)
        return node

    def vote(self, node):
        return self.chain.add_vote(Vote.create(ALICE, CHAIN_ID, node.id, node.height, node.slot, "alice"))


def test_a_commit_past_a_snapshot_height_stops_there_for_the_commitment(tmp_path):
    c = OneProducer(tmp_path)
    seen, keeper = [], c.chain.on_snapshot_height

    def told(height):
        seen.append((height, msgpack.unpackb(c.kv.get(schema.FINAL_HEAD))[0][2],
                     snapshot.compute(c.kv, height)[0]))
        keeper(height)
    c.chain.on_snapshot_height = told
    for i in range(4):  # notarized as a sync would bring them, without their votes: none is final
        c.block([make_tx("bob", "stake", {"amount": 1 + i})]).notarized = True
    assert c.chain.final_height == 0
    finalized = c.vote(c.block())  # then one vote finalizes blocks 1 to 4 at once
    assert [n.height for n in finalized] == [1, 2, 3, 4]
    assert [(h, head) for h, head, _ in seen] == [(3, 3)]  # the store held exactly block 3's state
    c.snaps.wait_idle()  # and the node's walk, on the read snapshot taken then, agrees
    assert c.snaps.root(3) == seen[0][2]


def test_the_producer_attests_its_commitment_once_and_a_voter_refuses_a_different_one(tmp_path):
    c = OneProducer(tmp_path)
    while c.chain.final_height < INTERVAL:
        c.vote(c.block())
    node = c.block()
    root = c.snaps.root(INTERVAL)
    assert (node.header.snapshot_height, node.header.snapshot_root) == (INTERVAL, root)
    assert c.snaps.accepts(node.header)
    c.vote(node)
    assert c.block().header.snapshot_height == 0  # attested once on this chain
    forged = dataclasses.replace(node.header, snapshot_root=Hash(b"f" * 32))
    assert not c.snaps.accepts(forged)
    unknown = dataclasses.replace(node.header, snapshot_height=99 * INTERVAL)
    assert not c.snaps.accepts(unknown)  # not computed here: no vote either


# ------------------------------------------------------------------ files
@pytest.fixture
def exported(tmp_path):
    """(file, its bytes, the attesting block, the state's commitment) of a chain's first snapshot."""
    c = OneProducer(tmp_path / "a", keep=10)
    for i in range(12):
        c.vote(c.block([make_tx("carol", "stake", {"amount": 10 + i})]))
    c.snaps.wait_idle()
    attesting = next(b for b in c.blocks if b.header.snapshot_height == INTERVAL)
    assert c.chain.final_height > attesting.header.height
    raw = b"".join(c.snaps.export(INTERVAL))
    path = tmp_path / "snap.bin"
    path.write_bytes(raw)
    return path, raw, attesting, c.snaps.root(INTERVAL)


def test_a_snapshot_file_restores_the_exact_state_at_its_height(tmp_path, exported):
    path, _, attesting, root = exported
    result = restore(str(path), str(tmp_path / "new"), GENESIS, [attesting.id], LevelDBStore)
    assert result["height"] == INTERVAL and result["attested_by"] == attesting.header.height
    kv = LevelDBStore(str(tmp_path / "new" / "chain.ldb"))
    try:
        chain = Chain(kv, GENESIS)
        assert chain.final_height == INTERVAL
        assert snapshot.compute(kv, INTERVAL)[0] == root
    finally:
        kv.close()


def _manifest(raw: bytes) -> tuple[dict, int]:
    n = int.from_bytes(raw[len(MAGIC):len(MAGIC) + 4], "big")
    start = len(MAGIC) + 4
    return msgpack.unpackb(raw[start:start + n]), start + n


def _with_manifest(raw: bytes, **changes) -> bytes:
    m, end = _manifest(raw)
    m.update(changes)
    body = codec.pack_flat(m)
    return MAGIC + len(body).to_bytes(4, "big") + body + raw[end:]


FORGERIES = {
    "a chunk byte flipped": (lambda raw, a: raw[:-5] + bytes([raw[-5] ^ 1]) + raw[-4:], "does not match its hash"),
    "truncated": (lambda raw, a: raw[:-3], "ends inside"),
    "bytes appended": (lambda raw, a: raw + b"\0", "after its last chunk"),
    "not a snapshot": (lambda raw, a: b"PK" + raw[2:], "not a community-chain snapshot"),
    "another chain": (lambda raw, a: _with_manifest(raw, chain_id="other"), "another genesis"),
    "votes dropped": (lambda raw, a: _with_manifest(raw, votes=[]), "valid votes"),
    "another root": (lambda raw, a: _with_manifest(raw, root=b"r" * 32), "does not attest this snapshot"),
    "chunk hashes swapped": (lambda raw, a: _with_manifest(raw, chunk_hashes=[b"h" * 32]),
                             "do not make its commitment"),
    "attesting block is block H": (lambda raw, a: _with_manifest(raw, attesting_block=_manifest(raw)[0]["block"]),
                                   "does not attest"),
}


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_a_forged_snapshot_file_is_refused_and_writes_nothing(tmp_path, exported, name):
    path, raw, attesting, _ = exported
    forge, why = FORGERIES[name]
    path.write_bytes(forge(raw, attesting))
    target = tmp_path / "new"
    with pytest.raises(SnapshotError, match=why):
        restore(str(path), str(target), GENESIS, [attesting.id], LevelDBStore)
    assert not target.exists()


def test_without_a_matching_anchor_nothing_is_restored(tmp_path, exported):
    path, _, attesting, _ = exported
    target = tmp_path / "new"
    with pytest.raises(SnapshotError, match="no anchor"):
        restore(str(path), str(target), GENESIS, [], LevelDBStore)
    with pytest.raises(SnapshotError, match="the anchor differs"):
        restore(str(path), str(target), GENESIS, [attesting.id, Hash(bytes(32))], LevelDBStore)
    assert not target.exists()
    (target / "x").mkdir(parents=True)
    with pytest.raises(SnapshotError, match="not empty"):
        restore(str(path), str(target), GENESIS, [attesting.id], LevelDBStore)
    assert (target / "x").exists()  # an operator's directory is never removed


def test_a_node_keeps_its_newest_snapshot_files_and_lists_what_attests_them(tmp_path):
    c = OneProducer(tmp_path, keep=2)
    for _ in range(4 * INTERVAL + 3):
        c.vote(c.block())
    c.snaps.wait_idle()
    assert c.snaps.kept() == [3 * INTERVAL, 4 * INTERVAL]
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == sorted(
        f"{h}.{kind}" for h in (3 * INTERVAL, 4 * INTERVAL) for kind in ("chunks", "meta"))
    listed = c.snaps.listing()
    assert [s["height"] for s in listed] == [4 * INTERVAL, 3 * INTERVAL]
    assert all(s["attested_by"] > s["height"] for s in listed)
    assert c.snaps.export(INTERVAL) is None  # dropped


def test_a_node_catching_up_through_many_snapshot_heights_walks_only_the_newest_waiting(tmp_path):
    c = OneProducer(tmp_path)
    busy = threading.Event()
    c.snaps._worker.submit(busy.wait)  # the walker is busy (with an earlier, long walk)
    for _ in range(3 * INTERVAL + 1):  # notarized by sync, then one vote finalizes them all
        c.block().notarized = True
    c.vote(c.block())
    assert sorted(c.snaps._pending) == [3 * INTERVAL]  # the waiting walks of 3 and 6 were dropped
    busy.set()
    c.snaps.wait_idle()
    assert sorted(c.snaps.roots) == [3 * INTERVAL]
