"""One conformance suite for every KVStore implementation (state.kv.MemoryKV, node.store.LevelDBStore),
plus a hypothesis state machine that applies the same random batches to both and to a dict model."""
import shutil
import tempfile

import pytest
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from node.store import LevelDBStore
from state.kv import MemoryKV


@pytest.fixture(params=["memory", "leveldb"])
def kv(request, tmp_path):
    store = MemoryKV() if request.param == "memory" else LevelDBStore(str(tmp_path / "db"))
    yield store
    store.close()


def all_items(store):
    return list(store.scan(b""))


def test_get_missing_is_none(kv):
    assert kv.get(b"nope") is None


def test_put_get_overwrite_delete(kv):
    kv.write({b"a": b"1"})
    assert kv.get(b"a") == b"1"
    kv.write({b"a": b"2"})
    assert kv.get(b"a") == b"2"
    kv.write({}, {b"a"})
    assert kv.get(b"a") is None
    kv.write({}, {b"a"})  # deleting a missing key is not an error
    assert all_items(kv) == []


def test_empty_value_is_not_missing(kv):
    kv.write({b"k": b""})
    assert kv.get(b"k") == b""
    assert all_items(kv) == [(b"k", b"")]


def test_batch_applies_puts_and_deletes_together(kv):
    kv.write({b"a": b"1", b"b": b"2", b"c": b"3"})
    kv.write({b"d": b"4", b"a": b"10"}, frozenset({b"b", b"c"}))
    assert all_items(kv) == [(b"a", b"10"), (b"d", b"4")]
    kv.write({}, set())
    assert all_items(kv) == [(b"a", b"10"), (b"d", b"4")]


def test_batch_delete_and_put_of_one_key_keeps_the_put(kv):
    # both implementations apply deletes first, then puts
    kv.write({b"a": b"1"})
    kv.write({b"a": b"2"}, {b"a"})
    assert kv.get(b"a") == b"2"


def test_prefix_scan_in_key_order_and_reverse(kv):
    keys = [b"p/b", b"p/a", b"p/c/1", b"p/c", b"p", b"q/a", b"o/z", b"p0", b"p/\x00", b"p/\xff"]
    kv.write({k: k.upper() for k in keys})
    expected = sorted(k for k in keys if k.startswith(b"p/"))
    assert [k for k, _ in kv.scan(b"p/")] == expected
    assert [k for k, _ in kv.scan(b"p/", reverse=True)] == expected[::-1]
    assert dict(kv.scan(b"p/")) == {k: k.upper() for k in expected}
    assert [k for k, _ in kv.scan(b"p")] == sorted(k for k in keys if k.startswith(b"p"))
    assert [k for k, _ in kv.scan(b"")] == sorted(keys)
    assert [k for k, _ in kv.scan(b"", reverse=True)] == sorted(keys, reverse=True)


@pytest.mark.parametrize("others", [[], [b"a"], [b"a", b"c"], [b"0", b"bb"]], ids=["alone", "before", "around", "child"])
def test_reverse_scan_includes_a_key_equal_to_the_prefix(kv, others):
    # the key equal to the prefix is part of the scan in both directions, whatever else is stored
    kv.write({b"b": b"exact", **{k: b"x" for k in others}})
    expected = [k for k in sorted(others + [b"b"]) if k.startswith(b"b")]
    assert [k for k, _ in kv.scan(b"b")] == expected
    assert [k for k, _ in kv.scan(b"b", reverse=True)] == expected[::-1]


def test_scan_with_no_hits(kv):
    assert list(kv.scan(b"x")) == []
    kv.write({b"a": b"1", b"c": b"3"})
    assert list(kv.scan(b"b")) == []
    assert list(kv.scan(b"b", reverse=True)) == []
    assert list(kv.scan(b"d")) == []
    assert list(kv.scan(b"aa")) == []
    assert list(kv.scan(b"\xff")) == []


def test_binary_keys_with_zero_and_ff_bytes(kv):
    keys = [b"\x00", b"\x00\x00", b"\x00\xff", b"\xff", b"\xff\x00", b"\xff\xff", b"\xff\xff\xff",
            b"a\x00b", b"a\xffb", b"a", b"\x01"]
    kv.write({k: k + b"!" for k in keys})
    for k in keys:
        assert kv.get(k) == k + b"!"
    assert [k for k, _ in kv.scan(b"")] == sorted(keys)
    assert [k for k, _ in kv.scan(b"\xff")] == [b"\xff", b"\xff\x00", b"\xff\xff", b"\xff\xff\xff"]
    assert [k for k, _ in kv.scan(b"\xff\xff", reverse=True)] == [b"\xff\xff\xff", b"\xff\xff"]
    assert [k for k, _ in kv.scan(b"\x00")] == [b"\x00", b"\x00\x00", b"\x00\xff"]
    assert [k for k, _ in kv.scan(b"a")] == [b"a", b"a\x00b", b"a\xffb"]
    kv.write({}, {b"\xff\xff"})
    assert [k for k, _ in kv.scan(b"\xff\xff")] == [b"\xff\xff\xff"]


def test_empty_key(kv):
    kv.write({b"": b"root", b"a": b"1"})
    assert kv.get(b"") == b"root"
    assert all_items(kv) == [(b"", b"root"), (b"a", b"1")]


def test_values_are_bytes_as_written(kv):
    big = bytes(range(256)) * 1000
    kv.write({b"big": big})
    assert kv.get(b"big") == big
    assert type(kv.get(b"big")) is bytes


def test_leveldb_persists_across_close_and_reopen(tmp_path):
    path = str(tmp_path / "db")
    kv = LevelDBStore(path)
    kv.write({b"a": b"1", b"b\x00": b"2", b"\xff": b"3"})
    kv.write({b"c": b"4"}, {b"a"})
    kv.close()
    kv = LevelDBStore(path)
    assert all_items(kv) == [(b"b\x00", b"2"), (b"c", b"4"), (b"\xff", b"3")]
    kv.write({b"d": b"5"})
    kv.close()
    kv.close()  # closing twice is harmless
    kv = LevelDBStore(path)
    assert kv.get(b"d") == b"5" and kv.get(b"a") is None
    kv.close()


def test_unsynced_leveldb_store_also_persists_after_close(tmp_path):
    kv = LevelDBStore(str(tmp_path / "db"), sync=False, write_buffer_size=1 << 20)
    kv.write({b"k": b"v"})
    kv.close()
    kv = LevelDBStore(str(tmp_path / "db"))
    assert kv.get(b"k") == b"v"
    kv.close()


def test_leveldb_tables_carry_a_bloom_filter_so_lookups_of_absent_keys_skip_them(tmp_path):
    """A replay check looks up a key that is absent for every new tx: each table written to disk
    must hold LevelDB's Bloom filter block (named after its policy), which lets a miss skip it."""
    path = tmp_path / "db"
    kv = LevelDBStore(str(path), sync=False, write_buffer_size=1 << 20)
    kv.write({i.to_bytes(4, "big"): bytes(100) for i in range(30_000)})  # past the write buffer
    kv._db.compact_range()
    assert kv.get((1).to_bytes(4, "big")) == bytes(100) and kv.get(b"absent") is None
    kv.close()
    tables = list(path.glob("*.ldb"))
    assert tables and all(b"filter.leveldb.BuiltinBloomFilter2" in t.read_bytes() for t in tables)


class _CountingReads:
    """Stands in for the plyvel database: records which keys reach LevelDB."""

    def __init__(self, db):
        self.db, self.reads = db, []

    def get(self, key):
        self.reads.append(key)
        return self.db.get(key)

    def write_batch(self, **kw):
        return self.db.write_batch(**kw)


def test_leveldb_remembers_a_miss_until_the_key_is_written(tmp_path):
    """A new tx's replay key is read at admission and again in its block: the second miss is
    answered without searching LevelDB, and a write of the key ends that at once."""
    kv = LevelDBStore(str(tmp_path / "db"), sync=False, misses_remembered=2)
    real, kv._db = kv._db, _CountingReads(kv._db)
    assert kv.get(b"tx") is None and kv.get(b"tx") is None
    assert kv._db.reads == [b"tx"]
    kv.write({b"tx": b"in block 7"})
    assert kv.get(b"tx") == b"in block 7"
    kv.write({}, {b"tx"})
    assert kv.get(b"tx") is None
    for key in (b"a", b"b", b"c"):  # one more miss than it remembers: the oldest is forgotten
        kv.get(key)
    kv._db.reads.clear()
    assert kv.get(b"a") is None and kv.get(b"c") is None
    assert kv._db.reads == [b"a"]
    kv._db = real
    kv.close()


# ---------------------------------------------------------------------------------- state machine
keys = st.lists(st.sampled_from([0x00, 0x01, 0x61, 0x7f, 0xfe, 0xff]), max_size=4).map(bytes)
vals = st.binary(max_size=8)


class SameBatchesSameStores(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="kvconf-")
        # unsynced: a fsync per step would only slow the test; durability is tested above. Few
        # misses remembered, so that forgetting the oldest is exercised too.
        self.level = self._open()
        self.mem = MemoryKV()
        self.model: dict[bytes, bytes] = {}

    @rule(puts=st.dictionaries(keys, vals, max_size=6), deletes=st.sets(keys, max_size=4))
    def write(self, puts, deletes):
        for store in (self.mem, self.level):
            store.write(dict(puts), frozenset(deletes))
        for k in deletes:
            self.model.pop(k, None)
        self.model.update(puts)

    @rule(key=keys)
    def get(self, key):
        assert self.mem.get(key) == self.level.get(key) == self.model.get(key)

    @rule(prefix=keys, reverse=st.booleans())
    def scan(self, prefix, reverse):
        expected = sorted(((k, v) for k, v in self.model.items() if k.startswith(prefix)), reverse=reverse)
        assert list(self.mem.scan(prefix, reverse)) == expected
        assert list(self.level.scan(prefix, reverse)) == expected

    def _open(self) -> LevelDBStore:
        return LevelDBStore(self.dir + "/db", sync=False, write_buffer_size=1 << 20, misses_remembered=3)

    @rule()
    def reopen(self):
        self.level.close()
        self.level = self._open()

    @invariant()
    def full_scans_agree(self):
        full = list(self.mem.scan(b""))
        assert full == list(self.level.scan(b"")) == sorted(self.model.items())

    def teardown(self):
        self.level.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# no shrink phase: shrinking a LevelDB-backed machine costs tens of seconds, and every failure it
# has found so far is pinned by a deterministic test above
SameBatchesSameStores.TestCase.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate])
test_same_batches_same_stores = SameBatchesSameStores.TestCase
