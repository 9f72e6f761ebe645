"""The wire objects: transaction, block header, block, vote and ticket.

One definition each, with its canonical encoding (see codec) and its static checks: shape, types,
lengths and ranges that need no state. A decoded object keeps its exact bytes (`raw`) and its id so
nothing is encoded twice on the hot path.
"""
import re
from dataclasses import dataclass, field
from typing import NewType

import msgpack

from core import codec, crypto
from core.errors import InvalidBlock, InvalidTx, InvalidVote, Malformed

Height = NewType("Height", int)
Slot = NewType("Slot", int)
Hash = NewType("Hash", bytes)

VERSION = 1
# The state transition and the peer protocol. Nodes of two versions may compute different state
# for one block, so they neither gossip with nor sync from each other (`/v1/status` says which
# version a node runs). Bumped with any change that would make two nodes disagree.
# 2: producer records keep the key they replaced (equivocation reports survive a key change).
# 3: bounded elections with a minimum approval, absent producers jailed (`unjail`), stake
#    activation and unstake delays, governance by the slot's schedule within parameter ranges,
#    rules upgrades as verified bytecode.
# 4: stake-based bandwidth per account, replay keys by expiry (pruned), blocks bounded in bytes.
PROTOCOL_VERSION = 6
MAX_TX_BYTES = 16 * 1024
# bytecode of a rules upgrade: leaves 4 KiB of a tx for the rest; the default rules take 3.9 kB
MAX_RULES_CODE_BYTES = 12 * 1024
MAX_BODY_TEXT = 8 * 1024
MAX_TAGS = 5
MAX_BLOCK_BYTES = 8 * 1024 * 1024
MAX_INT = 2**63 - 1
ZERO_HASH = Hash(bytes(32))
NAME_RE = re.compile(r"[a-z][a-z0-9-]{2,15}")
PERMLINK_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
TAG_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
CHAIN_ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
PARAM_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
EVIDENCE_KINDS = ("double_proposal", "double_vote")  # see core.evidence
MAX_EVIDENCE_PART_BYTES = 1024  # a signed header or vote is about 250 bytes


def is_name(v) -> bool:
    return type(v) is str and NAME_RE.fullmatch(v) is not None


def parse_post_ref(ref) -> tuple[str, str] | None:
    """'author/permlink' -> (author, permlink), or None if it is not one."""
    if type(ref) is not str or ref.count("/") != 1:
        return None
    author, permlink = ref.split("/")
    if not is_name(author) or PERMLINK_RE.fullmatch(permlink) is None:
        return None
    return author, permlink


# ---------------------------------------------------------------------------------- tx bodies
def _int_range(lo, hi):
    return lambda v: type(v) is int and lo <= v <= hi


def _text(max_bytes, pattern=None):
    def check(v):
        if type(v) is not str or len(v.encode()) > max_bytes:
            return False
        return pattern is None or pattern.fullmatch(v) is not None
    return check


def _bin(n):
    return lambda v: type(v) is bytes and len(v) == n


def _bin_up_to(n):
    return lambda v: type(v) is bytes and 0 < len(v) <= n


def _tags(v):
    return (type(v) is list and len(v) <= MAX_TAGS
            and all(type(t) is str and TAG_RE.fullmatch(t) for t in v) and len(set(v)) == len(v))


def _event(v):
    if type(v) is not dict or list(v) != ["capacity", "ends_at", "starts_at"]:
        return False
    return (_uint(v["starts_at"]) and _uint(v["ends_at"])
            and v["starts_at"] < v["ends_at"] and _int_range(1, 1_000_000)(v["capacity"]))


def _proposal(v):
    """A governance proposal: set one rules parameter, or replace the rules contract (its
    compiled bytecode, verified on chain: state.governance), from `effective_height` on."""
    if type(v) is not dict:
        return False
    if list(v) == ["action", "effective_height", "name", "value"] and v["action"] == "set_param":
        return (_uint(v["effective_height"]) and _text(64, PARAM_NAME_RE)(v["name"])
                and _uint(v["value"]))
    if list(v) == ["action", "code", "effective_height"] and v["action"] == "upgrade_rules":
        return _bin_up_to(MAX_RULES_CODE_BYTES)(v["code"]) and _uint(v["effective_height"])
    return False


_amount = _int_range(1, MAX_INT)
_uint = _int_range(0, MAX_INT)
_name = is_name
_ref = lambda v: parse_post_ref(v) is not None  # noqa: E731

# kind -> {key: (check, required)}; a body has exactly the required keys plus any optional ones.
BODY_SCHEMAS: dict[str, dict[str, tuple]] = {
    "post": {"permlink": (_text(64, PERMLINK_RE), True), "title": (_text(256), True),
             "body": (_text(MAX_BODY_TEXT), True), "tags": (_tags, True),
             "parent": (_ref, False), "event": (_event, False)},
    "vote": {"post": (_ref, False), "weight": (_int_range(-10000, 10000), False),
             "producer": (_name, False), "approve": (lambda v: type(v) is bool, False)},
    "attend": {"event": (_ref, True), "ticket": (_bin(64), True)},
    "refer": {"new_account": (_name, True), "pubkey": (_bin(32), True)},
    "transfer": {"to": (_name, True), "amount": (_amount, True), "memo": (_text(256), False)},
    "stake": {"amount": (_amount, True)},
    "unstake": {"amount": (_amount, True)},
    "register_producer": {"node_key": (_bin(32), True), "url": (_text(256), True)},
    "unjail": {},  # a producer jailed for absence is back (consensus.schedule)
    "govern": {"proposal": (_proposal, False), "approve": (_bin(32), False)},
    # two conflicting messages of one producer (core.evidence)
    "report_equivocation": {"first": (_bin_up_to(MAX_EVIDENCE_PART_BYTES), True),
                            "kind": (lambda v: v in EVIDENCE_KINDS, True),
                            "second": (_bin_up_to(MAX_EVIDENCE_PART_BYTES), True)},
}
KINDS = frozenset(BODY_SCHEMAS)


def check_body(kind: str, body) -> None:
    """Static checks of a tx body: known keys, required keys, each value's type and range."""
    schema = BODY_SCHEMAS.get(kind)
    if schema is None:
        raise InvalidTx("unknown_kind", f"unknown transaction kind {kind!r}")
    if type(body) is not dict:
        raise InvalidTx("malformed", "body must be a map")
    if not codec.is_sorted_map(body):
        raise Malformed("non_canonical", "body keys must be sorted")
    for key, value in body.items():
        spec = schema.get(key)
        if spec is None:
            raise InvalidTx("unknown_key", f"{kind} body has no key {key!r}")
        if not spec[0](value):
            raise InvalidTx("invalid_field", f"{kind}.{key} is out of range or of the wrong type")
    for key, (_, required) in schema.items():
        if required and key not in body:
            raise InvalidTx("missing_field", f"{kind} body needs {key!r}")
    if kind == "vote":
        keys = frozenset(body)
        if keys != {"post", "weight"} and keys != {"producer", "approve"}:
            raise InvalidTx("invalid_field", "a vote has either post+weight or producer+approve")
    if kind == "govern" and len(body) != 1:
        raise InvalidTx("invalid_field", "a govern tx has either a proposal or an approve")
    if kind == "post" and "event" in body and "parent" in body:
        raise InvalidTx("invalid_field", "a comment cannot be an event")


# ---------------------------------------------------------------------------------- transaction
@dataclass(slots=True)
class Tx:
    """A signed transaction. Treated as immutable; not frozen because frozen dataclasses cost
    ~3 µs per construction and this is built once per tx on the ingest and import hot paths."""

    chain_id: str
    kind: str
    sender: str
    expires_at: int
    salt: int
    body: dict
    signature: bytes
    raw: bytes = field(repr=False, compare=False)
    id: Hash = field(compare=False)

    @classmethod
    def create(cls, key: crypto.Keypair, chain_id: str, kind: str, sender: str,
               expires_at: int, body: dict, salt: int = 0) -> "Tx":
        """Build and sign a transaction (wallet side); runs the same static checks a node does."""
        unsigned = [VERSION, chain_id, kind, sender, expires_at, salt, body]
        signature = key.sign("tx", unsigned)
        return cls.decode(codec.pack([unsigned, signature]))

    @classmethod
    def decode(cls, raw: bytes) -> "Tx":
        """Canonical bytes -> Tx, with every static check; raises Malformed or InvalidTx."""
        obj = codec.unpack_schema_checked(raw, MAX_TX_BYTES)
        if type(obj) is not list or len(obj) != 2 or type(obj[0]) is not list:
            raise Malformed("malformed", "a signed tx is [unsigned, signature]")
        unsigned, signature = obj
        if type(signature) is not bytes or len(signature) != crypto.SIG_LEN:
            raise InvalidTx("bad_signature", "signature must be 64 bytes")
        if len(unsigned) != 7:
            raise Malformed("malformed", "an unsigned tx has 7 fields")
        version, chain_id, kind, sender, expires_at, salt, body = unsigned
        if version != VERSION or type(version) is not int:
            raise InvalidTx("unsupported_version", f"tx version {version!r}")
        if type(chain_id) is not str or type(kind) is not str:
            raise Malformed("malformed", "chain_id and kind are text")
        if not is_name(sender):
            raise InvalidTx("invalid_field", "sender is not an account name")
        if not _uint(expires_at) or not _uint(salt):
            raise InvalidTx("invalid_field", "expires_at and salt are non-negative integers")
        check_body(kind, body)
        return cls(chain_id, kind, sender, expires_at, salt, body, signature, raw,
                   Hash(codec.sha256(raw)))

    def signing_message(self) -> bytes:
        """sign_bytes("tx", unsigned), cut from the raw bytes: [unsigned, sig] = 0x92 unsigned c440 sig."""
        return crypto.sign_bytes_of_encoded("tx", self.raw[1:-66])

    def verify(self, public_key: bytes) -> bool:
        return crypto.verify_raw(public_key, self.signing_message(), self.signature)

    def to_json(self) -> dict:
        return {"id": self.id.hex(), "chain_id": self.chain_id, "kind": self.kind,
                "sender": self.sender, "expires_at": self.expires_at, "salt": self.salt,
                "body": to_json(self.body), "signature": self.signature.hex()}


def to_json(v):
    """Wire value -> JSON value (bytes as hex)."""
    if type(v) is bytes:
        return v.hex()
    if type(v) is dict:
        return {k: to_json(x) for k, x in v.items()}
    if type(v) is list:
        return [to_json(x) for x in v]
    return v


# ---------------------------------------------------------------------------------- ticket
def ticket_message(chain_id: str, event: str, attendee: str) -> bytes:
    return crypto.sign_bytes("ticket", [chain_id, event, attendee])


def make_ticket(organizer: crypto.Keypair, chain_id: str, event: str, attendee: str) -> bytes:
    """The event author's signature that admits `attendee` to `event` ('author/permlink')."""
    return organizer.sign_raw(ticket_message(chain_id, event, attendee))


# ---------------------------------------------------------------------------------- merkle
def merkle_root(leaves: list[bytes]) -> Hash:
    """Binary SHA-256 Merkle root; leaves and inner nodes are domain-separated; an odd node is
    carried up unchanged (never duplicated, so two lists never share a root)."""
    if not leaves:
        return ZERO_HASH
    level = [codec.sha256(b"\x00" + leaf) for leaf in leaves]
    while len(level) > 1:
        nxt = [codec.sha256(b"\x01" + level[i] + level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return Hash(level[0])


# ---------------------------------------------------------------------------------- block
def _is_hash(v) -> bool:
    return type(v) is bytes and len(v) == 32


@dataclass(frozen=True, slots=True)
class BlockHeader:
    chain_id: str
    height: int
    prev_id: Hash
    slot: int
    timestamp_ms: int
    producer: str
    tx_root: Hash
    state_root: Hash
    final_height: int
    # an attestation of the full state after final block `snapshot_height` (0: none), whose
    # commitment is `snapshot_root` (state.snapshot); voters check it, so a final block's
    # attestation is what a node started from a snapshot verifies the snapshot against
    snapshot_height: int = 0
    snapshot_root: Hash = ZERO_HASH

    def to_list(self) -> list:
        return [VERSION, self.chain_id, self.height, self.prev_id, self.slot, self.timestamp_ms,
                self.producer, self.tx_root, self.state_root, self.final_height,
                self.snapshot_height, self.snapshot_root]

    def encode(self) -> bytes:
        return codec.pack_flat(self.to_list())

    @property
    def id(self) -> Hash:
        return Hash(codec.sha256(self.encode()))

    def verify(self, public_key: bytes, signature: bytes) -> bool:
        """signature is the producer's over sign_bytes("block", header)."""
        return crypto.verify_raw(public_key, crypto.sign_bytes_of_encoded("block", self.encode()), signature)

    @classmethod
    def from_list(cls, obj) -> "BlockHeader":
        if type(obj) is not list or len(obj) != 12 or obj[0] != VERSION:
            raise InvalidBlock("malformed", "a header is a 12-field array of version 1")
        _, chain_id, height, prev_id, slot, ts, producer, tx_root, state_root, final_h, snap_h, snap_root = obj
        ints = (height, slot, ts, final_h, snap_h)
        if (type(chain_id) is not str or not all(_uint(v) for v in ints)
                or not _is_hash(prev_id) or not _is_hash(tx_root) or not _is_hash(state_root)
                or not _is_hash(snap_root) or not is_name(producer) or final_h >= height
                or snap_h > final_h or (snap_h == 0) != (snap_root == ZERO_HASH)):
            raise InvalidBlock("malformed", "header field of the wrong type or range")
        return cls(chain_id, height, Hash(prev_id), slot, ts, producer, Hash(tx_root),
                   Hash(state_root), final_h, snap_h, Hash(snap_root))

    def to_json(self) -> dict:
        return {"id": self.id.hex(), "chain_id": self.chain_id, "height": self.height,
                "prev_id": self.prev_id.hex(), "slot": self.slot, "timestamp_ms": self.timestamp_ms,
                "producer": self.producer, "tx_root": self.tx_root.hex(),
                "state_root": self.state_root.hex(), "final_height": self.final_height,
                "snapshot_height": self.snapshot_height, "snapshot_root": self.snapshot_root.hex()}


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    if n < 65536:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


_UNPACK_ERRORS = (ValueError, TypeError, msgpack.OutOfData, msgpack.FormatError, msgpack.StackError,
                  msgpack.ExtraData, UnicodeDecodeError)


@dataclass(frozen=True, slots=True)
class Block:
    header: BlockHeader
    signature: bytes
    txs: tuple[Tx, ...]
    id: Hash = field(compare=False)

    @classmethod
    def create(cls, key: crypto.Keypair, header: BlockHeader, txs: tuple[Tx, ...]) -> "Block":
        encoded = header.encode()
        sig = key.sign_raw(crypto.sign_bytes_of_encoded("block", encoded))
        return cls(header, sig, tuple(txs), Hash(codec.sha256(encoded)))

    def encode(self) -> bytes:
        return (b"\x93" + self.header.encode() + codec.pack_flat(self.signature)
                + _array_header(len(self.txs)) + b"".join(t.raw for t in self.txs))

    def verify_signature(self, public_key: bytes) -> bool:
        return self.header.verify(public_key, self.signature)

    @staticmethod
    def overhead(header: BlockHeader, tx_count: int = 2**16) -> int:
        """Bytes of an encoded block besides its txs' own: array marker, header, signature and the
        array header of `tx_count` txs (by default its largest form), as `encode` writes them."""
        return 1 + len(header.encode()) + 2 + 64 + len(_array_header(tx_count))

    def encoded_size(self) -> int:
        """len(self.encode()), without building the bytes."""
        return Block.overhead(self.header, len(self.txs)) + sum(len(t.raw) for t in self.txs)

    @staticmethod
    def peek_id(data: bytes) -> Hash | None:
        """The id of encoded block bytes from their header alone (None if they do not start like
        a block), so a block already held is recognised without decoding its txs."""
        unpacker = msgpack.Unpacker(raw=False, timestamp=0, max_buffer_size=len(data) + 1)
        unpacker.feed(data)
        try:
            if unpacker.read_array_header() != 3:
                return None
            start = unpacker.tell()
            unpacker.skip()
            return Hash(codec.sha256(data[start:unpacker.tell()]))
        except _UNPACK_ERRORS:
            return None

    @staticmethod
    def _open(data: bytes) -> msgpack.Unpacker:
        if len(data) > MAX_BLOCK_BYTES:
            raise InvalidBlock("too_large", f"block of {len(data)} bytes", status=413)
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=True, timestamp=0,
                                    max_buffer_size=len(data) + 1)
        unpacker.feed(data)
        return unpacker

    @staticmethod
    def _read_head(unpacker: msgpack.Unpacker, data: bytes) -> tuple[BlockHeader, bytes, Hash]:
        """The header (checked canonical), the signature (checked 64 bytes) and the block id, read
        from an unpacker at the start of block bytes."""
        try:
            if unpacker.read_array_header() != 3:
                raise InvalidBlock("malformed", "a block is [header, signature, txs]")
            start = unpacker.tell()
            header_obj = unpacker.unpack()
            header_raw = data[start:unpacker.tell()]
            signature = unpacker.unpack()
        except InvalidBlock:
            raise
        except _UNPACK_ERRORS as e:
            raise InvalidBlock("malformed", f"not a valid block: {type(e).__name__}") from None
        header = BlockHeader.from_list(header_obj)
        if header.encode() != header_raw:
            raise InvalidBlock("non_canonical", "block bytes differ from the canonical encoding")
        if type(signature) is not bytes or len(signature) != crypto.SIG_LEN:
            raise InvalidBlock("bad_signature", "block signature must be 64 bytes")
        return header, signature, Hash(codec.sha256(header_raw))

    @classmethod
    def decode_head(cls, data: bytes) -> tuple[BlockHeader, bytes, Hash]:
        """Header, signature and id of block bytes, without decoding its txs: enough to decide
        whether to take the block at all (InvalidBlock as `decode` raises for these parts)."""
        return cls._read_head(cls._open(data), data)

    @classmethod
    def decode(cls, data: bytes, tx_decoder=None) -> "Block":
        """Canonical block bytes -> Block. Each tx is cut out by byte offsets (no re-encode) and
        decoded by `tx_decoder` (default Tx.decode), which lets a caller reuse already-known txs."""
        decode_tx = tx_decoder or Tx.decode
        unpacker = cls._open(data)
        header, signature, block_id = cls._read_head(unpacker, data)
        try:
            count = unpacker.read_array_header()
            raws = []
            for _ in range(count):
                start = unpacker.tell()
                unpacker.skip()
                raws.append(data[start:unpacker.tell()])
        except _UNPACK_ERRORS as e:
            raise InvalidBlock("malformed", f"not a valid block: {type(e).__name__}") from None
        if unpacker.tell() != len(data):
            raise InvalidBlock("malformed", "trailing bytes after the block")
        try:
            txs = tuple(decode_tx(r) for r in raws)
        except (Malformed, InvalidTx) as e:
            raise InvalidBlock(e.code, f"tx in block: {e.message}") from None
        block = cls(header, signature, txs, block_id)
        if block.encode() != data:
            raise InvalidBlock("non_canonical", "block bytes differ from the canonical encoding")
        return block


# ---------------------------------------------------------------------------------- vote
@dataclass(frozen=True, slots=True)
class Vote:
    chain_id: str
    block_id: Hash
    height: int
    slot: int
    voter: str
    signature: bytes

    def body(self) -> list:
        return [self.chain_id, self.block_id, self.height, self.slot, self.voter]

    @classmethod
    def create(cls, key: crypto.Keypair, chain_id: str, block_id: Hash, height: int, slot: int,
               voter: str) -> "Vote":
        sig = key.sign("vote", [chain_id, block_id, height, slot, voter])
        return cls(chain_id, block_id, height, slot, voter, sig)

    def encode(self) -> bytes:
        return codec.pack_flat([self.body(), self.signature])

    def to_list(self) -> list:
        return [self.body(), self.signature]

    @classmethod
    def from_list(cls, obj) -> "Vote":
        if (type(obj) is not list or len(obj) != 2 or type(obj[0]) is not list
                or len(obj[0]) != 5):
            raise InvalidVote("malformed", "a vote is [[chain_id, block_id, height, slot, voter], sig]")
        (chain_id, block_id, height, slot, voter), sig = obj
        if (type(chain_id) is not str or not _is_hash(block_id) or not _int_range(1, MAX_INT)(height)
                or not _int_range(0, MAX_INT)(slot) or not is_name(voter)
                or type(sig) is not bytes or len(sig) != crypto.SIG_LEN):
            raise InvalidVote("malformed", "vote field of the wrong type or range")
        return cls(chain_id, Hash(block_id), height, slot, voter, sig)

    @classmethod
    def decode(cls, data: bytes) -> "Vote":
        return cls.from_list(codec.unpack(data, 1024))

    def verify(self, public_key: bytes) -> bool:
        return crypto.verify(public_key, "vote", self.body(), self.signature)

    def to_json(self) -> dict:
        return {"chain_id": self.chain_id, "block_id": self.block_id.hex(), "height": self.height,
                "slot": self.slot, "voter": self.voter, "signature": self.signature.hex()}


def is_ticket_valid(organizer_key: bytes, chain_id: str, event: str, attendee: str,
                      ticket: bytes) -> bool:
    return crypto.verify_raw(organizer_key, ticket_message(chain_id, event, attendee), ticket)
