"""Value codec, the Journal (buffered host) and the in-memory DictHost."""
import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import DictHost, Journal, VMFault, compile_source, decode_value, encode_value, run
from contracts.host import WriteThrough
from contracts.handlers import Iterator
from contracts.values import (_PACKER, MAX_DEPTH, _packable, encode_own_value, import_value,
                             value_size)

INT_MIN, INT_MAX = -(1 << 127), (1 << 127) - 1
_KEYS = st.one_of(st.integers(INT_MIN, INT_MAX), st.text(max_size=6), st.binary(max_size=6))
_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(INT_MIN, INT_MAX), st.text(max_size=10),
              st.binary(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(_KEYS, inner, max_size=5)),
    max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(_VALUES)
def test_encode_decode_round_trip_is_canonical(value):
    blob = encode_value(value)
    assert decode_value(blob) == value
    assert encode_value(decode_value(blob)) == blob


@settings(max_examples=300, deadline=None)
@given(_VALUES)
def test_encoding_as_it_is_gives_the_bytes_of_the_canonical_walk(value):
    """encode_value packs a value as it is (map keys put in order) when that is canonical; the
    walk `_packable` is the reference it must agree with."""
    assert encode_value(value) == _PACKER.pack(_packable(value, 0))


@settings(max_examples=300, deadline=None)
@given(_VALUES)
def test_encoding_a_value_the_vm_made_gives_the_same_bytes(value):
    """encode_own_value (what the VM stores and emits) checks less, for values a call can hold."""
    assert encode_own_value(value) == encode_value(value)


def test_a_value_the_vm_made_gets_the_faults_of_encode_value():
    deep = []
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    big = {"z": [1, 1 << 100], 5: {"b": 1, "a": 2}}
    assert encode_own_value(big) == encode_value(big)
    for bad, code in [(deep, "value_too_deep"), ([1, Iterator([])], "bad_value")]:
        with pytest.raises(VMFault) as info:
            encode_own_value(bad)
        assert info.value.code == code


def test_what_cannot_be_packed_as_it_is_takes_the_walk():
    big = {"z": [1, 1 << 100], "a": -(1 << 70)}
    assert encode_value(big) == _PACKER.pack(_packable(big, 0))
    for bad, code in [({"x": ["\udc00"]}, "bad_value"), ({"a": 2, True: 3}, "bad_value"),
                      ({"a": [1.5]}, "bad_value")]:
        with pytest.raises(VMFault) as info:
            encode_value(bad)
        assert info.value.code == code


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(_KEYS, st.integers(INT_MIN, INT_MAX), max_size=8))
def test_map_encoding_ignores_insertion_order(d):
    reversed_order = dict(reversed(list(d.items())))
    assert encode_value(d) == encode_value(reversed_order)


def test_key_order_is_ints_then_bytes_then_text():
    blob = encode_value({"a": 1, b"a": 2, 5: 3, -1: 4})
    assert list(msgpack.unpackb(blob, raw=False, strict_map_key=False,
                                ext_hook=lambda c, d: d)) == [-1, 5, b"a", "a"]


def test_big_integers_use_extension_one_only_outside_msgpack_range():
    assert encode_value((1 << 64) - 1) == msgpack.packb((1 << 64) - 1)
    assert encode_value(-(1 << 63)) == msgpack.packb(-(1 << 63))
    big = encode_value(1 << 64)
    assert msgpack.unpackb(big) == msgpack.ExtType(1, (1 << 64).to_bytes(16, "big", signed=True))
    assert decode_value(big) == 1 << 64


@pytest.mark.parametrize("blob", [
    msgpack.packb(1.5),
    msgpack.packb({"b": 1, "a": 2}),                              # unsorted keys
    b"\xd0\x01",                                                  # 1 as int8: not minimal
    msgpack.packb(msgpack.ExtType(1, (5).to_bytes(16, "big"))),   # small int as extension
    msgpack.packb(msgpack.ExtType(2, b"\x00")),
    msgpack.packb({True: 1}),
    b"\x92\x01",                                                  # truncated
    msgpack.packb(1) + b"\x01",                                   # trailing bytes
])
def test_decode_rejects_non_canonical_or_foreign_bytes(blob):
    with pytest.raises(VMFault) as info:
        decode_value(blob)
    assert info.value.code == "bad_value"


@pytest.mark.parametrize("value, code", [
    (1.0, "bad_value"), ({True: 1}, "bad_value"), ({(1,): 1}, "bad_value"), (1 << 127, "int_overflow"),
    ("\ud800", "bad_value"), (object(), "bad_value"), (list(range(5000)), "container_too_long"),
])
def test_values_outside_the_model_are_rejected(value, code):
    for check in (encode_value, import_value):
        with pytest.raises(VMFault) as info:
            check(value)
        assert info.value.code == code


def test_nesting_is_bounded():
    value = []
    for _ in range(MAX_DEPTH + 1):
        value = [value]
    with pytest.raises(VMFault) as info:
        encode_value(value)
    assert info.value.code == "value_too_deep"


def test_import_value_copies_and_sizes():
    original = {"a": [b"xy", "z"], "n": 5}
    copy, size = import_value(original)
    assert copy == original and copy["a"] is not original["a"]
    # map 8 + 2*16, key "a" 9, key "n" 9, list 8 + 2*8, b"xy" 10, "z" 9
    assert size == 40 + 9 + 9 + 24 + 10 + 9


def _model(v, depth=0) -> int:
    """The size model and the faults of a host value, as the README states them, walked plainly:
    scalars first in canonical key order, a map's keys before its values."""
    def fault(code):
        raise VMFault(code, "")
    if depth > MAX_DEPTH:
        fault("value_too_deep")
    t = type(v)
    if t is bool or v is None:
        return 0
    if t is int:
        return 0 if INT_MIN <= v <= INT_MAX else fault("int_overflow")
    if t is str:
        try:
            v.encode()
        except UnicodeEncodeError:
            fault("bad_value")
        return 8 + len(v)
    if t is bytes:
        return 8 + len(v)
    if t in (list, tuple):
        if len(v) > 4096:
            fault("container_too_long")
        return 8 + 8 * len(v) + sum(_model(x, depth + 1) for x in v)
    if t is dict:
        if len(v) > 4096:
            fault("container_too_long")
        if any(type(k) not in (int, str, bytes) for k in v):
            fault("bad_value")
        ordered = sorted(v, key=lambda k: ({int: 0, bytes: 1, str: 2}[type(k)], k))
        return (8 + 16 * len(v) + sum(8 + len(k) for k in v if type(k) is not int)
                + sum(_model(v[k], depth + 1) for k in ordered))
    fault("bad_value")


_HOST_KEYS = st.one_of(_KEYS, st.booleans(), st.floats(allow_nan=False), st.just("\udc00"))
_HOST_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(2 * INT_MIN, 2 * INT_MAX), st.text(max_size=10),
              st.binary(max_size=10), st.floats(allow_nan=False), st.just("\udc00x")),
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.lists(inner, max_size=3).map(tuple),
                            st.dictionaries(_HOST_KEYS, inner, max_size=5)),
    max_leaves=20)


def _deep(depth, leaf):
    value = leaf
    for i in range(depth):
        value = {"k": value} if i % 2 else [value]
    return value


@settings(max_examples=500, deadline=None)
@given(st.one_of(_HOST_VALUES, st.builds(_deep, st.integers(MAX_DEPTH - 1, MAX_DEPTH + 1),
                                            st.one_of(st.integers(0, 3), st.just("t"), st.just([])))))
def test_import_value_is_the_size_model_and_its_faults(value):
    """Any host value: a private copy (no container shared) whose alloc size is the README's size
    model, or the fault a plain walk in canonical order meets first."""
    try:
        expected = _model(value)
    except VMFault as e:
        with pytest.raises(VMFault) as info:
            import_value(value)
        assert info.value.code == e.code
        return
    copy, size = import_value(value)
    assert size == expected

    def same_and_private(a, b) -> bool:  # tuples become lists
        if type(b) in (list, tuple):
            return type(a) is list and a is not b and len(a) == len(b) and all(map(same_and_private, a, b))
        if type(b) is dict:
            return (type(a) is dict and a is not b and a.keys() == b.keys()
                    and all(same_and_private(a[k], b[k]) for k in b))
        return type(a) is type(b) and a == b
    assert same_and_private(copy, value)


def _host():
    host = DictHost(params={"p": 5})
    host.add_account("alice")
    host.storage_set(b"old", 1)
    host.storage_set(b"gone", 2)
    return host


def test_journal_reads_its_own_writes_and_buffers_everything():
    host = _host()
    before = host.snapshot()
    journal = Journal(host)
    journal.storage_set(b"new", [1, 2])
    journal.storage_delete(b"gone")
    journal.award("alice", "content", 7)
    journal.emit("e", {"x": 1})
    assert journal.storage_get(b"new") == [1, 2]
    assert journal.storage_get(b"gone") is None
    assert journal.storage_get(b"old") == 1
    assert journal.param("p") == 5
    assert host.snapshot() == before
    journal.discard()
    assert journal.storage_get(b"gone") == 2 and journal.events == []
    assert host.snapshot() == before


def test_journal_commit_applies_final_values_then_awards_then_events():
    host = _host()
    journal = Journal(host)
    journal.storage_set(b"k", 1)
    journal.storage_set(b"k", 2)
    journal.storage_delete(b"old")
    journal.award("alice", "behaviour", 3)
    journal.emit("done", {})
    journal.commit()
    assert host.storage_values() == {b"gone": 2, b"k": 2}
    assert host.awards == [("alice", "behaviour", 3)]
    assert host.accounts["alice"]["behaviour"] == 3
    assert host.events == [("done", {})]
    assert journal.writes == {} and journal.awards == []


def test_journals_nest():
    host = _host()
    outer = Journal(host)
    inner = Journal(outer)
    inner.storage_set(b"x", 1)
    inner.commit()
    assert outer.storage_get(b"x") == 1 and host.storage_get(b"x") is None
    outer.commit()
    assert host.storage_get(b"x") == 1


def test_journal_validates_when_written_not_when_committed():
    journal = Journal(_host())
    for action, code in [(lambda: journal.award("bob", "content", 1), "unknown_account"),
                         (lambda: journal.award("alice", "fame", 1), "bad_award"),
                         (lambda: journal.storage_set(b"k", 1.5), "bad_value"),
                         (lambda: journal.storage_set(b"k" * 300, 1), "bad_storage_key"),
                         (lambda: journal.storage_set(b"k", "x" * 20000), "storage_value_too_large"),
                         (lambda: journal.emit("e", [1]), "bad_event")]:
        with pytest.raises(VMFault) as info:
            action()
        assert info.value.code == code
    assert journal.writes == {} and journal.awards == []


def test_dict_host_pays_awards_from_pools():
    host = DictHost(pools={"content": 5, "behaviour": 0, "relationship": 9})
    host.add_account("alice")
    host.award("alice", "content", 8)
    host.award("alice", "relationship", 4)
    assert host.accounts["alice"]["content"] == 5 and host.pools == {
        "content": 0, "behaviour": 0, "relationship": 5}
    assert host.awards == [("alice", "content", 5), ("alice", "relationship", 4)]
    with pytest.raises(VMFault):
        host.param("missing")


class _AllOrNothingHost(DictHost):
    """A DictHost that says it discards a failed call's writes itself (as the chain's host does)."""
    all_or_nothing = True

    def put_encoded(self, key: bytes, blob: bytes) -> None:
        self.storage[key] = blob

    def __init__(self, **kw):
        super().__init__(**kw)
        self.read: dict = {}

    def account(self, name):
        """As the account was when the call (the only one on this host) started, awards or not."""
        if name not in self.read:
            account = self.accounts.get(name)
            self.read[name] = None if account is None else dict(account)
        return self.read[name]


_CALL = compile_source("""
def main():
    before = host.account("alice")["content"]
    host.storage_set(b"k", [before])
    host.award("alice", "content", 5)
    seen = host.storage_get(b"k")
    append(seen, host.account("alice")["content"])
    host.storage_set(b"k", seen)
    host.emit("done", {"k": host.storage_get(b"k")})
    host.storage_delete(b"old")
    return host.storage_get(b"k")
""")


def test_a_host_that_is_all_or_nothing_is_written_through_with_the_same_results():
    buffered, direct = _host(), _AllOrNothingHost(params={"p": 5})
    direct.add_account("alice")
    direct.storage_set(b"old", 1)
    direct.storage_set(b"gone", 2)
    results = [run(_CALL, "main", [], host, 100_000) for host in (buffered, direct)]
    assert results[0] == results[1] and results[0].return_value == [0, 0]
    assert buffered.snapshot() == direct.snapshot()


def test_write_through_validates_each_write_then_makes_it_at_once():
    host = _AllOrNothingHost()
    host.add_account("alice")
    journal = WriteThrough(host)
    journal.storage_set(b"k", 1)
    journal.award("alice", "content", 2)
    assert host.storage_values() == {b"k": 1} and host.awards == [("alice", "content", 2)]
    for action, code in [(lambda: journal.award("bob", "content", 1), "unknown_account"),
                         (lambda: journal.storage_set(b"k" * 300, 1), "bad_storage_key"),
                         (lambda: journal.storage_set(b"k", "x" * 20000), "storage_value_too_large")]:
        with pytest.raises(VMFault) as info:
            action()
        assert info.value.code == code
    assert host.storage_values() == {b"k": 1} and len(host.awards) == 1


_POOLS = compile_source("""
def main():
    before = host.pool("content")
    host.award("alice", "content", 30)
    host.award("alice", "content", 500)
    return [before, host.pool("content"), host.pool("behaviour"), host.now(), host.stake("alice"),
            host.stake("nobody")]
""")


def test_now_stake_and_pool_are_the_same_buffered_or_written_through_on_both_engines():
    """pool is what the pool holds after the call's own awards so far (a Journal counts its
    buffered awards as the host will pay them: what is left, up to the amount)."""
    outcomes = []
    for host in (DictHost(pools={"content": 100, "behaviour": 7, "relationship": 0}),
                 _AllOrNothingHost(pools={"content": 100, "behaviour": 7, "relationship": 0})):
        host.add_account("alice", stake=40)
        host.set_block(3, 5_000)
        for trace in (None, []):
            snapshot = host.snapshot()
            outcomes.append(run(_POOLS, "main", [], host, 100_000, trace=trace)[:2])
            host.pools, host.accounts["alice"]["content"] = snapshot["pools"], 0
    assert outcomes == [([100, 0, 7, 5_000, 40, 0], outcomes[0][1])] * 4


def test_an_unknown_pool_is_a_fault_as_for_award():
    for journal in (Journal(_host()), WriteThrough(_AllOrNothingHost())):
        with pytest.raises(VMFault) as info:
            journal.pool("fame")
        assert info.value.code == "bad_award"


def _chain_host(body: dict, trusted: bool = True):
    """The chain's host over a state with alice (stake 50, 20 of it maturing) and a pool; with
    trusted False, one whose values the VM checks and copies."""
    from types import SimpleNamespace

    from core.codec import pack_flat
    from state import records, schema
    from state.kv import MemoryKV
    from state.records import Account
    from state.rules import ChainHost
    from state.view import Journal as StateJournal
    from state.view import Layer
    layer = Layer(Layer(None, MemoryKV()))
    layer.writes[schema.account_key("alice")] = records.encode(Account(bytes(32), stake=50, maturing=20))
    layer.writes[schema.pool_key("content")] = pack_flat(100)
    ctx = SimpleNamespace(height=3, slot=4, timestamp_ms=5_000)
    tx = {"kind": "post", "sender": "alice", "id": b"i", "body": body}
    cls = ChainHost if trusted else type("Untrusted", (ChainHost,), {"trusted_values": False})
    return cls(StateJournal(layer), ctx, tx, {"p": 7})


_MUTATE = compile_source("""
def main():
    tx = host.tx()
    append(tx["body"]["tags"], "b")
    tx["body"]["event"]["capacity"] = 0
    tx["kind"] = "x"
    account = host.account("alice")
    account["stake"] = 0
    block = host.block()
    block["height"] = 0
    host.award("alice", "content", 30)
    return [host.tx(), host.account("alice"), host.block(), host.now(), host.stake("alice"),
            host.stake("bob"), host.pool("content"), host.param("p")]
""")


def test_the_chain_host_is_trusted_with_fresh_values_that_a_contract_cannot_change():
    """ChainHost says `trusted_values`: the VM does not copy what it returns, so every call gets
    new lists and maps, the tx's own body is never handed out, and the account reads as it was
    when the call started; both engines agree, and the values cost the gas of a copied value."""
    def body():
        return {"event": {"capacity": 5, "ends_at": 2, "starts_at": 1}, "tags": ["a"]}
    results = []
    for trace in (None, []):
        host = _chain_host(body())
        results.append(run(_MUTATE, "main", [], host, 100_000, trace=trace))
        assert host.current_tx["body"] == body()
    assert results[0] == results[1]
    tx, account, block, now, stake, nobody, pool, param = results[0].return_value
    assert tx == {"kind": "post", "sender": "alice", "id": b"i", "body": body()}
    assert account["stake"] == 50 and account["content"] == 0
    assert block == {"height": 3, "slot": 4, "timestamp": 5_000}
    assert (now, stake, nobody, pool, param) == (5_000, 30, 0, 70, 7)
    assert run(_MUTATE, "main", [], _chain_host(body(), trusted=False), 100_000) == results[0]


@settings(max_examples=300, deadline=None)
@given(_VALUES)
def test_a_trusted_hosts_values_are_paid_by_the_same_size_model(value):
    """value_size (what a host that says trusted_values is charged) = import_value's size."""
    assert value_size(value) == import_value(value)[1]
