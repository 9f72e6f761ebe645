"""Nothing a client or peer sends may crash a node: every decoder, fed random bytes or mutations
of valid objects, either returns an object or raises a ProtocolError (never anything else)."""
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.crypto import Keypair
from core.errors import ProtocolError
from core.types import Block, BlockHeader, Tx, Vote, ZERO_HASH, merkle_root

KEY = Keypair(bytes([5]) * 32)
TXS = [
    Tx.create(KEY, "c", "transfer", "alice", 10**13, {"to": "bob", "amount": 5, "memo": "hi"}),
    Tx.create(KEY, "c", "post", "alice", 10**13, {"permlink": "p", "title": "t", "body": "b", "tags": ["x"],
                                                  "event": {"capacity": 3, "ends_at": 9, "starts_at": 1}}),
    Tx.create(KEY, "c", "attend", "alice", 10**13, {"event": "bob/p", "ticket": bytes(64)}),
]
HEADER = BlockHeader("c", 1, ZERO_HASH, 3, 1000, "alice", merkle_root([t.id for t in TXS]), ZERO_HASH, 0)
BLOCK = Block.create(KEY, HEADER, tuple(TXS)).encode()
VOTE = Vote.create(KEY, "c", ZERO_HASH, 1, 3, "alice").encode()
SEEDS = [t.raw for t in TXS] + [BLOCK, VOTE]


@st.composite
def mutated(draw, seeds=tuple(SEEDS)):
    """One of seeds with 1..4 random flips, cuts, inserts or deletes."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[i] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[i]
    return bytes(data)


def decode_all(data: bytes) -> None:
    peeked = Block.peek_id(data)  # never raises; when the block decodes, it agrees
    try:
        assert Block.decode(data).id == peeked
    except ProtocolError:
        pass
    for decode in (Tx.decode, Block.decode, Vote.decode):
        try:
            decode(data)
        except ProtocolError:
            pass


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_wire_objects_only_raise_protocol_errors(data):
    decode_all(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_only_raise_protocol_errors(data):
    decode_all(data)


def test_peek_id_is_the_block_id():
    assert Block.peek_id(BLOCK) == Block.decode(BLOCK).id
