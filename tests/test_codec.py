"""Canonical msgpack (core.codec) and the wire objects built on it (core.types).

One meaning, one byte string: every value round-trips, and every other encoding of the same
meaning is rejected with `non_canonical`; what is not a value of ours at all is `malformed`.
"""
import itertools
from concurrent.futures import ThreadPoolExecutor

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import codec, crypto
from core.errors import InvalidBlock, InvalidVote, Malformed
from core.types import (MAX_INT, PERMLINK_RE, TAG_RE, ZERO_HASH, Block, BlockHeader, Hash, Tx,
                        Vote, merkle_root)
from tests.conftest import CHAIN_ID, EXPIRES, keypair, node_keypair

BIG = 1 << 20

# ---------------------------------------------------------------------------------- values
ints64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)
scalars = st.none() | st.booleans() | ints64 | st.binary(max_size=40) | st.text(max_size=40)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children, max_size=6),
    max_leaves=30,
)


def strict_eq(a, b) -> bool:
    """Equality that also tells True from 1 and bytes from str, at every depth."""
    if type(a) is not type(b):
        return False
    if type(a) is list:
        return len(a) == len(b) and all(strict_eq(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return list(a) == list(b) and all(strict_eq(a[k], b[k]) for k in a)
    return a == b


def sorted_deep(v):
    if type(v) is dict:
        return {k: sorted_deep(v[k]) for k in sorted(v)}
    if type(v) is list:
        return [sorted_deep(x) for x in v]
    return v


def reversed_deep(v):
    """The same meaning with every map built in reverse key order."""
    if type(v) is dict:
        return {k: reversed_deep(v[k]) for k in reversed(list(v))}
    if type(v) is list:
        return [reversed_deep(x) for x in v]
    return v


@given(values)
@settings(max_examples=200, deadline=None)
def test_pack_unpack_round_trip(v):
    data = codec.pack(v)
    back = codec.unpack(data, BIG)
    assert strict_eq(back, sorted_deep(v))
    assert codec.pack(back) == data


@given(values)
@settings(max_examples=100, deadline=None)
def test_map_insertion_order_does_not_change_the_bytes(v):
    assert codec.pack(reversed_deep(v)) == codec.pack(v)


@given(st.lists(values, max_size=5))
@settings(max_examples=50, deadline=None)
def test_pack_flat_agrees_with_pack_when_there_are_no_maps(v):
    def has_map(x):
        return type(x) is dict or (type(x) is list and any(has_map(y) for y in x))
    if not has_map(v):
        assert codec.pack_flat(v) == codec.pack(v)


@given(values)
@settings(max_examples=100, deadline=None)
def test_unpack_schema_checked_round_trip(v):
    data = codec.pack(v)
    assert strict_eq(codec.unpack_schema_checked(data, BIG), sorted_deep(v))


@pytest.mark.parametrize("v", [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1,
                               2**64 - 1, -1, -32, -33, -128, -129, -32768, -32769, -(2**31),
                               -(2**31) - 1, -(2**63)])
def test_int_boundaries_are_smallest_form(v):
    data = codec.pack(v)
    assert codec.unpack(data, BIG) == v
    # the canonical form is at most as long as any other valid encoding
    widths = {1: 1, 2: 0xcc, 3: 0xcd, 5: 0xce, 9: 0xcf} if v >= 0 else {2: 0xd0, 3: 0xd1, 5: 0xd2, 9: 0xd3}
    for length, marker in widths.items():
        if length > len(data):
            payload = v.to_bytes(length - 1, "big", signed=v < 0)
            with pytest.raises(Malformed) as e:
                codec.unpack(bytes([marker]) + payload, BIG)
            assert e.value.code == "non_canonical"


def test_pack_rejects_floats_and_non_text_keys():
    for bad in (1.0, [1, 0.5], {"a": 2.5}, {1: 2}, {b"k": 1}, {None: 1}):
        with pytest.raises(TypeError):
            codec.pack(bad)


def test_a_failed_pack_leaves_nothing_behind_for_the_next_one():
    """The encoder is reused between calls: what a failed call had written must not leak."""
    with pytest.raises(TypeError):
        codec.pack_flat([b"half-written", object()])
    assert codec.pack_flat([1]) == b"\x91\x01"


def test_threads_packing_at_once_get_the_same_bytes():
    objs = [[i, "x" * (i % 50), {"k": bytes(i % 40)}] for i in range(2000)]
    expected = [msgpack.packb(o, use_bin_type=True) for o in objs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(codec.pack, objs))
    assert got == expected


# ---------------------------------------------------------------------------------- rejection
NON_CANONICAL = {
    "unsorted_map": b"\x82\xa1b\x01\xa1a\x02",
    "unsorted_nested_map": b"\x91\x81\xa1x\x82\xa1b\x01\xa1a\x02",
    "duplicate_map_key": b"\x82\xa1a\x01\xa1a\x02",
    "uint16_for_5": b"\xcd\x00\x05",
    "uint8_for_5": b"\xcc\x05",
    "uint32_for_5": b"\xce\x00\x00\x00\x05",
    "uint64_for_1": b"\xcf" + (1).to_bytes(8, "big"),
    "int8_for_positive_5": b"\xd0\x05",
    "int8_for_minus_1": b"\xd0\xff",
    "int64_for_positive": b"\xd3" + (5).to_bytes(8, "big"),
    "int16_for_minus_100": b"\xd1" + (-100).to_bytes(2, "big", signed=True),
    "str8_where_fixstr_fits": b"\xd9\x03abc",
    "str16_where_fixstr_fits": b"\xda\x00\x03abc",
    "bin16_where_bin8_fits": b"\xc5\x00\x03abc",
    "array16_where_fixarray_fits": b"\xdc\x00\x01\x01",
    "map16_where_fixmap_fits": b"\xde\x00\x01\xa1a\x01",
    "non_minimal_inside_array": b"\x92\x01\xcd\x00\x05",
}

MALFORMED = {
    "float64": b"\xcb" + bytes(8),
    "float32": b"\xca" + bytes(4),
    "float_in_array": b"\x92\x01\xcb" + bytes(8),
    "float_in_map": b"\x81\xa1a\xcb" + bytes(8),
    "fixext1": b"\xd4\x01\x00",
    "fixext4": b"\xd6\x05\x00\x00\x00\x00",
    "ext8": b"\xc7\x02\x07ab",
    "ext_nested": b"\x91\xd4\x01\x00",
    "str_payload_not_utf8": b"\xa2\xff\xfe",  # bytes smuggled as text
    "trailing_bytes": b"\x01\x02",
    "trailing_after_array": b"\x91\x01\xc0",
    "truncated_array": b"\x92\x01",
    "truncated_str": b"\xa5ab",
    "truncated_uint16": b"\xcd\x00",
    "empty": b"",
    "int_map_key": b"\x81\x01\x02",
    "bin_map_key": b"\x81\xc4\x01k\x01",
    "nil_map_key": b"\x81\xc0\x01",
    "reserved_0xc1": b"\xc1",
    "deep_nesting": b"\x91" * 100_000 + b"\xc0",
}

TIMESTAMP_EXT = {
    # msgpack's predefined extension type -1 (timestamp) is still an extension type
    "timestamp32": b"\xd6\xff\x00\x00\x00\x00",
    "timestamp64": bytes.fromhex("d7ff0000000400000000"),
    "timestamp96": bytes.fromhex("c70cff000000010000010000000000"),
    "timestamp_in_array": b"\x91\xd6\xff\x00\x00\x00\x00",
}


@pytest.mark.parametrize("data", NON_CANONICAL.values(), ids=NON_CANONICAL.keys())
def test_non_canonical_encodings_are_rejected(data):
    with pytest.raises(Malformed) as e:
        codec.unpack(data, BIG)
    assert (e.value.code, e.value.status) == ("non_canonical", 400)


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_inputs_are_rejected(data):
    with pytest.raises(Malformed) as e:
        codec.unpack(data, len(data) + 1)
    assert (e.value.code, e.value.status) == ("malformed", 400)


@pytest.mark.parametrize("data", TIMESTAMP_EXT.values(), ids=TIMESTAMP_EXT.keys())
def test_timestamp_extension_is_rejected_like_every_extension(data):
    # codec's contract: "Floats and extension types are never canonical here." msgpack decodes
    # ext type -1 to a Timestamp without calling ext_hook (timestamp=0), and packs it back to the
    # same bytes, so without an explicit check it passes as canonical.
    with pytest.raises(Malformed) as e:
        codec.unpack(data, BIG)
    assert e.value.code == "malformed"


@pytest.mark.parametrize("data", list(NON_CANONICAL.values()) + [b"\xcb" + bytes(8)],
                         ids=list(NON_CANONICAL) + ["float64"])
def test_unpack_schema_checked_rejects_non_minimal_forms(data):
    # the fast path leaves map key order and float rejection to the schema; everything else holds
    if data in (NON_CANONICAL["unsorted_map"], NON_CANONICAL["unsorted_nested_map"], b"\xcb" + bytes(8)):
        codec.unpack_schema_checked(data, BIG)
        return
    with pytest.raises(Malformed) as e:
        codec.unpack_schema_checked(data, BIG)
    assert e.value.code == "non_canonical"


@pytest.mark.parametrize("data", [MALFORMED[k] for k in ("float32", "fixext1", "ext8", "trailing_bytes",
                                                          "truncated_array", "str_payload_not_utf8",
                                                          "int_map_key", "reserved_0xc1", "deep_nesting")])
def test_unpack_schema_checked_rejects_garbage(data):
    with pytest.raises(Malformed) as e:
        codec.unpack_schema_checked(data, len(data) + 1)
    # a float32 re-encodes as float64: caught as non_canonical rather than malformed
    assert e.value.code in ("malformed", "non_canonical")


@pytest.mark.parametrize("unpack", [codec.unpack, codec.unpack_schema_checked])
def test_too_large_is_413(unpack):
    data = codec.pack(b"x" * 100)
    assert unpack(data, len(data)) == b"x" * 100
    with pytest.raises(Malformed) as e:
        unpack(data, len(data) - 1)
    assert (e.value.code, e.value.status) == ("too_large", 413)


def test_top_level_map_is_a_value_to_the_codec_but_no_wire_object_accepts_it():
    data = codec.pack({"a": 1})
    assert codec.unpack(data, BIG) == {"a": 1}
    with pytest.raises(Malformed) as e:
        Tx.decode(data)
    assert e.value.code == "malformed"
    with pytest.raises(InvalidVote) as e:
        Vote.decode(data)
    assert e.value.code == "malformed"
    with pytest.raises(InvalidBlock) as e:
        Block.decode(data)
    assert e.value.code == "malformed"


def test_bin_encoded_as_str_is_rejected_by_the_schema():
    key = keypair("alice")
    v = Vote.create(key, CHAIN_ID, Hash(b"\x11" * 32), 3, 4, "alice")
    # the block id as text: the codec sees a valid str, the vote schema sees no 32-byte hash
    as_text = msgpack.packb([[CHAIN_ID, "x" * 32, 3, 4, "alice"], v.signature], use_bin_type=True)
    with pytest.raises(InvalidVote):
        Vote.decode(as_text)
    # msgpack's old raw form for bytes (use_bin_type=False) is text: not a signature either
    old_style = msgpack.packb([v.body(), v.signature], use_bin_type=False)
    with pytest.raises((InvalidVote, Malformed)):
        Vote.decode(old_style)


# ---------------------------------------------------------------------------------- transactions
names = st.from_regex(r"[a-z][a-z0-9-]{2,15}", fullmatch=True)
permlinks = st.from_regex(PERMLINK_RE, fullmatch=True)
refs = st.builds(lambda a, p: f"{a}/{p}", names, permlinks)
texts = st.text(max_size=60)
amounts = st.integers(min_value=1, max_value=MAX_INT)
tag_lists = st.lists(st.from_regex(TAG_RE, fullmatch=True), max_size=5, unique=True)


@st.composite
def events(draw):
    starts = draw(st.integers(min_value=0, max_value=MAX_INT - 1))
    ends = draw(st.integers(min_value=starts + 1, max_value=MAX_INT))
    return {"starts_at": starts, "ends_at": ends, "capacity": draw(st.integers(1, 1_000_000))}


@st.composite
def post_bodies(draw):
    body = {"permlink": draw(permlinks), "title": draw(texts), "body": draw(st.text(max_size=300)),
            "tags": draw(tag_lists)}
    extra = draw(st.sampled_from(["none", "parent", "event"]))
    if extra == "parent":
        body["parent"] = draw(refs)
    elif extra == "event":
        body["event"] = draw(events())
    return body


BODIES = {
    "post": post_bodies(),
    "vote": st.one_of(
        st.fixed_dictionaries({"post": refs, "weight": st.integers(-10000, 10000)}),
        st.fixed_dictionaries({"producer": names, "approve": st.booleans()})),
    "attend": st.fixed_dictionaries({"event": refs, "ticket": st.binary(min_size=64, max_size=64)}),
    "refer": st.fixed_dictionaries({"new_account": names, "pubkey": st.binary(min_size=32, max_size=32)}),
    "transfer": st.fixed_dictionaries({"to": names, "amount": amounts}, optional={"memo": texts}),
    "stake": st.fixed_dictionaries({"amount": amounts}),
    "unstake": st.fixed_dictionaries({"amount": amounts}),
    "register_producer": st.fixed_dictionaries({"node_key": st.binary(min_size=32, max_size=32),
                                                "url": texts}),
    "unjail": st.just({}),
}
KEY = keypair("alice")


@pytest.mark.parametrize("kind", sorted(BODIES))
@given(data=st.data())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_tx_round_trip_for_every_kind(kind, data):
    body = data.draw(BODIES[kind])
    expires = data.draw(st.integers(0, MAX_INT))
    salt = data.draw(st.integers(0, MAX_INT))
    sender = data.draw(names)
    tx = Tx.create(KEY, CHAIN_ID, kind, sender, expires, reversed_deep(body), salt=salt)
    again = Tx.decode(tx.raw)
    assert again == tx
    assert again.id == tx.id == codec.sha256(tx.raw)
    assert again.raw == tx.raw
    assert again.body == sorted_deep(body) and list(again.body) == sorted(body)
    assert again.verify(KEY.public_key)
    # the signed bytes are the canonical encoding of [unsigned, signature]
    unsigned = [1, CHAIN_ID, kind, sender, expires, salt, body]
    assert tx.raw == codec.pack([unsigned, tx.signature])
    assert tx.signing_message() == crypto.sign_bytes("tx", unsigned)


# ---------------------------------------------------------------------------------- blocks & votes
TX_POOL = [Tx.create(KEY, CHAIN_ID, "transfer", "alice", EXPIRES, {"to": "bob", "amount": i + 1}, salt=i)
           for i in range(20)]
hashes = st.binary(min_size=32, max_size=32)
u63 = st.integers(0, MAX_INT)


@st.composite
def headers(draw):
    height = draw(st.integers(1, MAX_INT))
    return BlockHeader(draw(st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True)), height,
                       Hash(draw(hashes)), draw(u63), draw(u63), draw(names), Hash(draw(hashes)),
                       Hash(draw(hashes)), draw(st.integers(0, height - 1)))


@given(headers(), st.lists(st.sampled_from(TX_POOL), max_size=20))
@settings(max_examples=100, deadline=None)
def test_block_round_trip(header, txs):
    block = Block.create(node_keypair("alice"), header, tuple(txs))
    data = block.encode()
    again = Block.decode(data)
    assert again == block
    assert again.id == block.id == header.id == codec.sha256(header.encode())
    assert [t.id for t in again.txs] == [t.id for t in txs]
    assert again.encode() == data
    assert again.verify_signature(node_keypair("alice").public_key)
    assert not again.verify_signature(keypair("alice").public_key)
    # the block is the canonical msgpack of [header, signature, txs]
    assert codec.unpack(data, 1 << 24) == [header.to_list(), block.signature,
                                           [codec.unpack(t.raw, 1 << 16) for t in txs]]


def test_block_with_trailing_or_non_canonical_bytes_is_rejected():
    header = BlockHeader(CHAIN_ID, 5, ZERO_HASH, 7, 1000, "alice", merkle_root([TX_POOL[0].id]),
                         ZERO_HASH, 2)
    data = Block.create(node_keypair("alice"), header, (TX_POOL[0],)).encode()
    for bad, code in [(data + b"\x00", "malformed"), (data[:-1], "malformed"),
                      (b"\xdc\x00\x03" + data[1:], "non_canonical")]:
        with pytest.raises(InvalidBlock) as e:
            Block.decode(bad)
        assert e.value.code == code


@given(st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True), hashes, st.integers(1, MAX_INT), u63,
       names)
@settings(max_examples=100, deadline=None)
def test_vote_round_trip(chain_id, block_id, height, slot, voter):
    key = keypair("bob")
    vote = Vote.create(key, chain_id, Hash(block_id), height, slot, voter)
    again = Vote.decode(vote.encode())
    assert again == vote
    assert again.verify(key.public_key)
    assert not again.verify(keypair("carol").public_key)
    assert Vote.from_list(vote.to_list()) == vote


# ---------------------------------------------------------------------------------- merkle
def leaf(i: int) -> bytes:
    return codec.sha256(i.to_bytes(4, "big"))


def test_merkle_root_basics():
    assert merkle_root([]) == ZERO_HASH
    assert merkle_root([leaf(1)]) == codec.sha256(b"\x00" + leaf(1))
    assert merkle_root([leaf(1)]) != leaf(1)  # a leaf is never its own root
    a, b, c = (codec.sha256(b"\x00" + leaf(i)) for i in (1, 2, 3))
    assert merkle_root([leaf(1), leaf(2)]) == codec.sha256(b"\x01" + a + b)
    # an odd node is carried up, not duplicated
    assert merkle_root([leaf(1), leaf(2), leaf(3)]) == codec.sha256(b"\x01" + codec.sha256(b"\x01" + a + b) + c)
    assert merkle_root([leaf(1), leaf(2), leaf(3)]) != merkle_root([leaf(1), leaf(2), leaf(3), leaf(3)])


def test_merkle_order_matters():
    xs = [leaf(i) for i in range(5)]
    assert merkle_root(xs) != merkle_root(list(reversed(xs)))
    assert merkle_root(xs[:2]) != merkle_root(xs[1::-1])


def test_merkle_distinct_lists_have_distinct_roots():
    # every list of length 0..4 over a 3-letter alphabet, and every length 0..12 of distinct leaves
    alphabet = [leaf(i) for i in range(3)]
    lists = [list(p) for n in range(5) for p in itertools.product(alphabet, repeat=n)]
    lists += [[leaf(100 + i) for i in range(n)] for n in range(13)]
    roots = {}
    for xs in lists:
        r = merkle_root(xs)
        assert len(r) == 32
        assert roots.setdefault(r, xs) == xs, f"{len(xs)}-leaf list shares a root"


@given(st.lists(hashes, min_size=1, max_size=33))
@settings(max_examples=100, deadline=None)
def test_merkle_any_change_changes_the_root(xs):
    root = merkle_root(xs)
    assert merkle_root(xs + [xs[-1]]) != root          # appending (even a duplicate)
    assert merkle_root(xs[:-1]) != root                 # dropping the last
    changed = list(xs)
    changed[len(xs) // 2] = codec.sha256(changed[len(xs) // 2])
    assert merkle_root(changed) != root
