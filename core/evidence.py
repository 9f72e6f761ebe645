"""Equivocation evidence: two messages that one producer signed for the same slot.

An honest producer signs at most one block and one vote per slot (it persists its last proposal
and its last vote before sending either), so two different signed block headers, or two signed
votes for different blocks, of one producer in one slot prove that it equivocated. Anyone can
check such a pair with the producer's node key alone: nothing else about the chain is needed.

A node that sees a pair keeps it (`GET /v1/producers`, "evidence") and reports it on chain with a
`report_equivocation` tx, whose body carries the pair:

    {"first": bin, "kind": "double_proposal" | "double_vote", "second": bin}
    double_proposal: first, second = msgpack([header, signature])   (a block without its txs)
    double_vote:     first, second = msgpack([vote, signature])     (`Vote.encode`)

The state transition checks the pair (`Equivocation.parse`, then `verify` with the producer's
node key in state) and records it; a producer with a recorded equivocation is never elected again.
"""
from dataclasses import dataclass

from core import codec, crypto
from core.errors import InvalidBlock, InvalidTx, InvalidVote, Malformed
from core.types import EVIDENCE_KINDS as KINDS
from core.types import MAX_EVIDENCE_PART_BYTES, Block, BlockHeader, Hash, Vote


@dataclass(frozen=True, slots=True)
class SignedHeader:
    """A block's header and its producer's signature: all of a block a double proposal needs."""
    header: BlockHeader
    signature: bytes

    @classmethod
    def of(cls, block: Block) -> "SignedHeader":
        return cls(block.header, block.signature)

    def encode(self) -> bytes:
        return codec.pack_flat([self.header.to_list(), self.signature])

    @classmethod
    def decode(cls, data: bytes) -> "SignedHeader":
        obj = codec.unpack(data, MAX_EVIDENCE_PART_BYTES)
        if type(obj) is not list or len(obj) != 2 or type(obj[1]) is not bytes or len(obj[1]) != crypto.SIG_LEN:
            raise Malformed("malformed", "a signed header is [header, signature]")
        return cls(BlockHeader.from_list(obj[0]), obj[1])

    def verify(self, public_key: bytes) -> bool:
        return self.header.verify(public_key, self.signature)


def _invalid(message: str) -> InvalidTx:
    return InvalidTx("invalid_evidence", message)


@dataclass(frozen=True, slots=True)
class Equivocation:
    """A checked pair of conflicting messages (see the module docstring); `parse` makes one."""
    kind: str
    first: bytes
    second: bytes
    chain_id: str
    producer: str
    slot: int
    targets: tuple[Hash, Hash]  # the two different blocks: proposed, or voted for
    signed: tuple               # the two decoded messages, each with a `verify(public_key)`

    @classmethod
    def parse(cls, kind, first, second) -> "Equivocation":
        """The pair's signer, slot and chain, once its shape is checked: two messages of `kind`,
        each well-formed, by one producer for one slot, about two different blocks. Raises
        InvalidTx("invalid_evidence") otherwise. The signatures are `verify`'s job: they need the
        producer's key, which is state."""
        if kind not in KINDS:
            raise _invalid(f"kind must be one of {', '.join(KINDS)}")
        if type(first) is not bytes or type(second) is not bytes:
            raise _invalid("first and second are byte strings")
        try:
            if kind == "double_proposal":
                a, b = SignedHeader.decode(first), SignedHeader.decode(second)
                about = [(m.header.chain_id, m.header.producer, m.header.slot, m.header.id) for m in (a, b)]
            else:
                a, b = Vote.decode(first), Vote.decode(second)
                about = [(m.chain_id, m.voter, m.slot, m.block_id) for m in (a, b)]
        except (Malformed, InvalidBlock, InvalidVote) as e:
            raise _invalid(f"{kind}: {e.message}") from None
        (chain_a, signer_a, slot_a, target_a), (chain_b, signer_b, slot_b, target_b) = about
        if chain_a != chain_b or signer_a != signer_b or slot_a != slot_b:
            raise _invalid("the two messages must be of one chain, one producer and one slot")
        if target_a == target_b:
            raise _invalid("the two messages are about the same block: no conflict")
        return cls(kind, first, second, chain_a, signer_a, slot_a, (target_a, target_b), (a, b))

    @classmethod
    def of_blocks(cls, a: Block, b: Block) -> "Equivocation":
        return cls.parse("double_proposal", SignedHeader.of(a).encode(), SignedHeader.of(b).encode())

    @classmethod
    def of_votes(cls, a: Vote, b: Vote) -> "Equivocation":
        return cls.parse("double_vote", a.encode(), b.encode())

    def verify(self, public_key: bytes) -> bool:
        """Both messages are signed with public_key."""
        return all(m.verify(public_key) for m in self.signed)

    def body(self) -> dict:
        """The body of the `report_equivocation` tx that reports it."""
        return {"first": self.first, "kind": self.kind, "second": self.second}

    def to_json(self) -> dict:
        return {"kind": self.kind, "producer": self.producer, "slot": self.slot,
                "ids": [t.hex() for t in self.targets],
                "first": self.first.hex(), "second": self.second.hex()}
