"""State records and their encodings (msgpack arrays, fields in declaration order)."""
from dataclasses import dataclass, field
from operator import attrgetter

import msgpack

from core.codec import pack, pack_flat


@dataclass(slots=True)
class Account:
    public_key: bytes
    balance: int = 0
    stake: int = 0
    referrer: str = ""
    joined_height: int = 0
    content: int = 0
    behaviour: int = 0
    relationship: int = 0
    approvals: list = field(default_factory=list)  # producer names, sorted
    maturing: int = 0  # part of `stake` that does not approve producers yet (state.staking)
    unbonding: int = 0  # unstaked, not yet back in `balance` (state.staking)
    bandwidth: int = 0  # allowance left after its latest tx (state.allowance)
    bandwidth_ms: int = 0  # the timestamp of the block of that tx (0: never: full)

    @property
    def active_stake(self) -> int:
        """The stake that approves producers (what each approval adds to a candidate)."""
        return self.stake - self.maturing

    def to_json(self, name: str) -> dict:
        return {"name": name, "public_key": self.public_key.hex(), "balance": self.balance,
                "stake": self.stake, "maturing": self.maturing, "unbonding": self.unbonding,
                "referrer": self.referrer, "joined_height": self.joined_height,
                "assets": {"content": self.content, "behaviour": self.behaviour,
                           "relationship": self.relationship},
                "approvals": list(self.approvals),
                "bandwidth": {"left": self.bandwidth, "updated_ms": self.bandwidth_ms}}


@dataclass(slots=True)
class Post:
    author: str
    permlink: str
    title: str
    body: str
    tags: list
    parent: str  # "" for a top-level post, else "author/permlink"
    event: dict | None  # {"starts_at", "ends_at", "capacity"} for an event
    created_height: int
    created_ms: int
    net_votes: int = 0  # sum of vote weights in basis points
    vote_count: int = 0
    attendees: int = 0
    children: int = 0

    def to_json(self) -> dict:
        d = {k: getattr(self, k) for k in self.__slots__}
        d["ref"] = f"{self.author}/{self.permlink}"
        return d


@dataclass(slots=True)
class ProducerRecord:
    node_key: bytes
    url: str
    approval: int = 0  # total active stake of the members approving it
    registered_height: int = 0
    previous_key: bytes = b""  # the node key it replaced last (b"": never changed)
    key_changed_height: int = 0  # when it did
    unjailed_height: int = 0  # its latest `unjail` tx: back after being jailed for absence

    def to_json(self, name: str) -> dict:
        return {"name": name, "node_key": self.node_key.hex(), "url": self.url,
                "approval": self.approval, "registered_height": self.registered_height,
                "previous_node_key": self.previous_key.hex() or None,
                "key_changed_height": self.key_changed_height or None,
                "unjailed_height": self.unjailed_height or None}


@dataclass(slots=True)
class Proposal:
    """A governance proposal (its id is the id of the tx that made it)."""
    proposer: str
    action: str  # "set_param" | "upgrade_rules"
    name: str  # set_param: the parameter
    value: int  # set_param: its new value
    code_hash: bytes  # upgrade_rules: hash of the compiled code (stored under its own key)
    effective_height: int
    created_height: int
    status: str  # "pending" -> "approved" (quorum reached) -> "enacted" (at effective_height)
    approvals: list = field(default_factory=list)  # producer names, in approval order

    def to_json(self, proposal_id: bytes) -> dict:
        d = {k: getattr(self, k) for k in self.__slots__}
        d["id"] = proposal_id.hex()
        d["code_hash"] = self.code_hash.hex()
        return d


@dataclass(slots=True)
class EquivocationRecord:
    """A producer's equivocation, reported on chain: the pair of messages (core.evidence), so that
    anyone can check it again from state, and who reported it when."""
    kind: str
    slot: int
    first: bytes
    second: bytes
    reporter: str
    reported_height: int

    def to_json(self) -> dict:
        return {"kind": self.kind, "slot": self.slot, "first": self.first.hex(),
                "second": self.second.hex(), "reporter": self.reporter,
                "reported_height": self.reported_height}


def encode(record) -> bytes:
    """Fields in declaration order; only a Post holds a map (its event), which needs key sorting."""
    cls = type(record)
    values = _FIELDS[cls](record)
    return pack(values) if cls is Post else pack_flat(values)


def decode(cls, data: bytes):
    return cls(*msgpack.unpackb(data))


_FIELDS = {cls: attrgetter(*cls.__slots__) for cls in (Account, Post, ProducerRecord, Proposal, EquivocationRecord)}
