"""The state transition: genesis state, `apply_tx` and `apply_block`.

Written like a consensus spec: each `process_<kind>` first checks (one line of why per check) and
only then writes, through a per-tx Journal, so a rejected tx changes nothing. No I/O, no clock: time
is the block's timestamp; signature checks go through the injected `verify` callable (which lets the
node skip txs it has already verified). The rules contract is called through `RulesHook`: after
each tx's base rules, and around each block's txs (`begin_block`, `end_block`), which is also where
approved governance changes take effect.
"""
from dataclasses import dataclass
from typing import Callable, Protocol

from core import codec, types
from core.errors import InvalidBlock, InvalidTx
from core.evidence import Equivocation
from core.genesis import ChainParams, Genesis
from core.types import Block, BlockHeader, Tx
from state import allowance, governance, records, replay, schema, snapshot, staking
from state.records import Account, EquivocationRecord, Post, ProducerRecord
from state.rules import add_to_pool, genesis_rules_writes, get_param
from state.view import Journal, Layer

Verifier = Callable[[Tx, bytes], bool]
_DEFAULTS = ChainParams()
# a producer may change its node key once per this many blocks (10 minutes of 0.5 s slots): ample
# time for a report of what it signed with the old key, which stays valid evidence until the next
KEY_CHANGE_INTERVAL_BLOCKS = 1200


def verify_signature(tx: Tx, public_key: bytes) -> bool:
    return tx.verify(public_key)


@dataclass(frozen=True, slots=True)
class BlockContext:
    """What a tx may know about the block it is applied in."""
    chain_id: str
    height: int
    slot: int
    timestamp_ms: int
    max_tx_expiry_ms: int
    max_producer_approvals: int
    # the producers scheduled for the block's slot (consensus.schedule): they govern
    producers: tuple[str, ...] = ()
    unstake_delay_ms: int = 0
    stake_activation_delay_ms: int = 0
    # bandwidth (state.allowance); the defaults are the chain parameters' defaults
    bandwidth_window_ms: int = _DEFAULTS.bandwidth_window_ms
    tx_base_bandwidth: int = _DEFAULTS.tx_base_bandwidth
    bandwidth_floor: int = _DEFAULTS.bandwidth_floor
    bandwidth_per_cp: int = _DEFAULTS.bandwidth_per_cp


class RulesHook(Protocol):
    """The community-asset rules. `on_tx` runs after a tx's base rules succeeded, on the same
    journal; raising InvalidTx rejects the tx with no writes. `begin_block` and `end_block` run
    on the block's layer before and after its txs and must not fail."""

    def on_tx(self, journal: Journal, tx: Tx, ctx: BlockContext) -> None: ...

    def begin_block(self, layer: Layer, ctx: BlockContext) -> None: ...

    def end_block(self, layer: Layer, ctx: BlockContext) -> None: ...


# ------------------------------------------------------------------------------ record access
def get_account(view, name: str) -> Account | None:
    raw = view.get(schema.account_key(name))
    return None if raw is None else records.decode(Account, raw)


def get_post(view, author: str, permlink: str) -> Post | None:
    raw = view.get(schema.post_key(author, permlink))
    return None if raw is None else records.decode(Post, raw)


def get_producer(view, name: str) -> ProducerRecord | None:
    raw = view.get(schema.producer_key(name))
    return None if raw is None else records.decode(ProducerRecord, raw)


def get_equivocation(view, name: str) -> EquivocationRecord | None:
    raw = view.get(schema.equivocation_key(name))
    return None if raw is None else records.decode(EquivocationRecord, raw)


def get_tx_location(view, tx: Tx) -> tuple[int, int] | None:
    """Where `tx` is in the chain, while its replay key is kept (state.replay); a node's chain store
    keeps it for good (consensus.chain.Chain.tx_status)."""
    return replay.get_location(view, tx)


def _put(journal: Journal, key: bytes, record) -> None:
    journal.put(key, records.encode(record))


def _require(cond: bool, code: str, message: str, status: int = 400) -> None:
    if not cond:
        raise InvalidTx(code, message, status=status)


# ------------------------------------------------------------------------------ tx processing
def process_post(j: Journal, tx: Tx, sender: Account, ctx: BlockContext) -> None:
    b = tx.body
    # a permlink names one post of its author forever
    _require(get_post(j, tx.sender, b["permlink"]) is None, "post_exists",
             f"{tx.sender}/{b['permlink']} already exists", 409)
    parent_ref = b.get("parent", "")
    if parent_ref:
        author, permlink = types.parse_post_ref(parent_ref)
        parent = get_post(j, author, permlink)
        # a comment answers an existing post
        _require(parent is not None, "unknown_post", f"parent {parent_ref} does not exist", 404)
        parent.children += 1
        _put(j, schema.post_key(author, permlink), parent)
    _put(j, schema.post_key(tx.sender, b["permlink"]),
         Post(tx.sender, b["permlink"], b["title"], b["body"], b["tags"], parent_ref,
              b.get("event"), ctx.height, ctx.timestamp_ms))


def process_vote(j: Journal, tx: Tx, sender: Account, ctx: BlockContext) -> None:
    b = tx.body
    if "producer" in b:
        name = b["producer"]
        # only registered candidates can be approved
        _require(get_producer(j, name) is not None, "unknown_producer", f"{name} is not a producer", 404)
        approved = name in sender.approvals
        if b["approve"] and not approved:
            # bounded so a stake change touches a bounded number of producers
            _require(len(sender.approvals) < ctx.max_producer_approvals, "too_many_approvals",
                     f"at most {ctx.max_producer_approvals} producer approvals")
            sender.approvals = sorted(sender.approvals + [name])
            staking.add_approval(j, [name], sender.active_stake)
        elif not b["approve"] and approved:
            sender.approvals = [n for n in sender.approvals if n != name]
            staking.add_approval(j, [name], -sender.active_stake)
        _put(j, schema.account_key(tx.sender), sender)
        return
    ref = b["post"]
    # a vote of weight 0 says nothing, and would only take a place among a post's votes
    _require(b["weight"] != 0, "zero_weight", "a vote on a post has a weight other than 0")
    author, permlink = types.parse_post_ref(ref)
    post = get_post(j, author, permlink)
    # curation votes go to existing content
    _require(post is not None, "unknown_post", f"{ref} does not exist", 404)
    key = schema.post_vote_key(ref, tx.sender)
    old = j.get(key)
    old_weight = 0 if old is None else codec.unpack(old, 16)
    post.net_votes += b["weight"] - old_weight
    post.vote_count += old is None
    j.put(key, codec.pack(b["weight"]))
    _put(j, schema.post_key(author, permlink), post)


def process_attend(j: Journal, tx: Tx, sender: Account, ctx: BlockContext) -> None:
    ref = tx.body["event"]
    author, permlink = types.parse_post_ref(ref)
    post = get_post(j, author, permlink)
    # attendance is of an existing event post
    _require(post is not None and post.event is not None, "unknown_event", f"{ref} is not an event", 404)
    key = schema.attendance_key(ref, tx.sender)
    # one attendance per member per event
    _require(j.get(key) is None, "already_attended", f"{tx.sender} already attended {ref}", 409)
    ev = post.event
    # presence counts only inside the event window
    _require(ev["starts_at"] <= ctx.timestamp_ms <= ev["ends_at"], "event_not_open",
             f"{ref} is open from {ev['starts_at']} to {ev['ends_at']} (ms)")
    _require(post.attendees < ev["capacity"], "event_full", f"{ref} is at capacity {ev['capacity']}")
    organizer = get_account(j, author)
    # the organizer's ticket proves presence
    _require(organizer is not None and types.is_ticket_valid(
        organizer.public_key, ctx.chain_id, ref, tx.sender, tx.body["ticket"]),
        "bad_ticket", "the ticket is not the organizer's signature for this attendee")
    post.attendees += 1
    j.put(key, codec.pack(ctx.height))
    _put(j, schema.post_key(author, permlink), post)


def process_refer(j: Journal, tx: Tx, sender: Account, ctx: BlockContext) -> None:
    name = tx.body["new_account"]
    # account names are unique
    _require(get_account(j, name) is None, "account_exists", f"{name} already exists", 409)
    # a new account costs its referrer the referral fee, paid into the relationship pool: a
    # farm of fake accounts costs something (as Hive's account creation fee)
    fee = get_param(j, "referral_fee") or 0
    _require(sender.balance >= fee, "insufficient_balance",
             f"the referral fee is {fee}, the balance {sender.balance}")
    if fee:
        sender.balance -= fee
        _put(j, schema.account_key(tx.sender), sender)
        add_to_pool(j, "relationship", fee)
    _put(j, schema.account_key(name), Account(tx.body["pubkey"], referrer=tx.sender,
                                              joined_height=ctx.height))


def process_transfer(j: Journal, tx: Tx, sender: Account, ctx: BlockContext) -> None:
    to, amount = tx.body["to"], tx.body["amount"]
    receiver = sender if to == tx.sender else get_account(j, to)
    # only members hold balances
    if receiver is None:
        raise InvalidTx("unknown_account", f"{to} is not a member", status=404)
    if sender.balance < amount:
        raise InvalidTx("insufficient_balance", f"balance {sender.balance} < {amount}")
    sender.balance -= amount
    _put(j, schema.account_key(tx.sender), sender)
    receiver.balance += amount
    _put(j, schema.account_key(to), receiver)


def process_stake(j: Journal, tx: Tx, sender: Account, ctx: BlockContext) -> None:
    amount = tx.body["amount"]
    _require(sender.balance >= amount, "insufficient_balance", f"balance {sender.balance} < {amount}")
    staking.stake(j, tx.sender, sender, amount, ctx)
    _put(j, schema.account_key(tx.sender), sender)


def process_unstake(j: Journal, tx: Tx, sender: Account, ctx: BlockContext) -> None:
    amount = tx.body["amount"]
    # stake still maturing is locked: it has not approved anyone yet, and leaving at once would
    # let one stake pass through many accounts
    _require(sender.active_stake >= amount, "insufficient_stake",
             f"active stake {sender.active_stake} < {amount}"
             + (f" ({sender.maturing} more is still maturing)" if sender.maturing else ""))
    staking.unstake(j, tx.sender, sender, amount, ctx)
    _put(j, schema.account_key(tx.sender), sender)


def process_register_producer(j: Journal, tx: Tx, sender: Account, ctx: BlockContext) -> None:
    # an equivocation is for good: a new key would not make the producer trustworthy again
    _require(not governance.has_equivocated(j, tx.sender), "producer_equivocated",
             f"{tx.sender} equivocated and can never produce again", 403)
    existing = get_producer(j, tx.sender)
    record = ProducerRecord(tx.body["node_key"], tx.body["url"], registered_height=ctx.height)
    if existing is not None:  # re-registering updates the key and url, keeps approvals
        record.approval, record.registered_height = existing.approval, existing.registered_height
        record.previous_key, record.key_changed_height = existing.previous_key, existing.key_changed_height
        record.unjailed_height = existing.unjailed_height
        if record.node_key != existing.node_key:
            # evidence signed with the key being replaced still convicts (see process_report_
            # equivocation); one change per interval keeps a producer from rotating it out of reach
            since = existing.key_changed_height
            _require(not existing.previous_key or ctx.height >= since + KEY_CHANGE_INTERVAL_BLOCKS,
                     "key_change_too_soon", f"{tx.sender} changed its node key at height {since}; "
                     f"the next change is allowed from height {since + KEY_CHANGE_INTERVAL_BLOCKS}", 429)
            record.previous_key, record.key_changed_height = existing.node_key, ctx.height
    _put(j, schema.producer_key(tx.sender), record)


def process_unjail(j: Journal, tx: Tx, sender: Account, ctx: BlockContext) -> None:
    """A producer left out of elections for leaving its slots empty says it is back; the next
    election may choose it again (consensus.schedule)."""
    producer = get_producer(j, tx.sender)
    # only a candidate can be jailed
    _require(producer is not None, "unknown_producer", f"{tx.sender} is not a producer", 404)
    # an equivocation is for good
    _require(not governance.has_equivocated(j, tx.sender), "producer_equivocated",
             f"{tx.sender} equivocated and can never produce again", 403)
    producer.unjailed_height = ctx.height
    _put(j, schema.producer_key(tx.sender), producer)


def process_report_equivocation(j: Journal, tx: Tx, sender: Account, ctx: BlockContext) -> None:
    b = tx.body
    evidence = Equivocation.parse(b["kind"], b["first"], b["second"])
    # messages of another chain prove nothing here
    _require(evidence.chain_id == ctx.chain_id, "invalid_evidence",
             f"the messages are for chain {evidence.chain_id!r}")
    producer = get_producer(j, evidence.producer)
    # only a registered producer has a node key to check the messages with
    _require(producer is not None, "unknown_producer", f"{evidence.producer} is not a producer", 404)
    # both messages signed with the producer's node key, or with the one it replaced last: a
    # producer cannot escape a report by changing its key (at most 4 signature checks)
    keys = (producer.node_key, producer.previous_key) if producer.previous_key else (producer.node_key,)
    _require(any(evidence.verify(key) for key in keys), "invalid_evidence",
             f"the messages are not both signed with {evidence.producer}'s node key")
    # one record per producer: its first reported equivocation already bars it for good
    _require(not governance.has_equivocated(j, evidence.producer), "already_reported",
             f"an equivocation of {evidence.producer} is already recorded", 409)
    _put(j, schema.equivocation_key(evidence.producer),
         EquivocationRecord(evidence.kind, evidence.slot, evidence.first, evidence.second,
                            tx.sender, ctx.height))


PROCESSORS = {
    "post": process_post, "vote": process_vote, "attend": process_attend, "refer": process_refer,
    "transfer": process_transfer, "stake": process_stake, "unstake": process_unstake,
    "register_producer": process_register_producer, "unjail": process_unjail,
    "govern": governance.process_govern,
    "report_equivocation": process_report_equivocation,
}


def check_tx_envelope(view, tx: Tx, ctx: BlockContext, verify: Verifier) -> Account:
    """The checks every kind shares; returns the sender's account. (Plain ifs: this runs for every
    tx, so messages are only formatted on failure.)"""
    if tx.chain_id != ctx.chain_id:
        raise InvalidTx("wrong_chain", f"tx is for chain {tx.chain_id!r}, this is {ctx.chain_id!r}")
    if tx.expires_at <= ctx.timestamp_ms:
        raise InvalidTx("expired", "the tx expired")
    if tx.expires_at > ctx.timestamp_ms + ctx.max_tx_expiry_ms:
        raise InvalidTx("expiry_too_far", "expires_at is more than the maximum expiry ahead")
    # replay protection: an id is in the chain at most once (ids of expired txs can't come back,
    # which is why their keys are pruned)
    if replay.is_seen(view, tx):
        raise InvalidTx("duplicate", "tx already in the chain", status=409)
    sender = get_account(view, tx.sender)
    # membership is permissioned: only members transact
    if sender is None:
        raise InvalidTx("not_member", f"{tx.sender} is not a member", status=403)
    if not verify(tx, sender.public_key):
        raise InvalidTx("bad_signature", "signature does not match the sender's key")
    return sender


def apply_tx(layer: Layer, tx: Tx, ctx: BlockContext, index: int, verify: Verifier = verify_signature,
             rules: RulesHook | None = None) -> None:
    """Apply one tx to `layer`, all or nothing; raise InvalidTx if it is not valid here."""
    j = Journal(layer)
    sender = check_tx_envelope(j, tx, ctx, verify)
    allowance.process_bandwidth(sender, len(tx.raw), ctx)
    # written before the kind's processor, which may write or re-read the sender's record
    _put(j, schema.account_key(tx.sender), sender)
    PROCESSORS[tx.kind](j, tx, sender, ctx)
    if rules is not None:
        rules.on_tx(j, tx, ctx)
    replay.record_tx(j, tx, ctx.height, index)
    j.commit()


# ------------------------------------------------------------------------------ blocks
def compute_diff_hash(writes: dict[bytes, bytes | None]) -> bytes:
    return codec.sha256(codec.pack_flat([[k, writes[k]] for k in sorted(writes)]))


def compute_state_root(parent_root: bytes, writes: dict[bytes, bytes | None]) -> bytes:
    """A commitment to the state: the parent's root chained with this block's sorted state diff.
    Two nodes that disagree on any state write after the same genesis disagree on the root."""
    return codec.sha256(b"state" + parent_root + compute_diff_hash(writes))


def make_context(genesis: Genesis, height: int, slot: int, timestamp_ms: int,
                 producers: tuple[str, ...] | None = None) -> BlockContext:
    """`producers`: the slot's schedule (consensus passes it); None means the genesis producers,
    for tools that run the transition without consensus (simulation, benches, tests)."""
    p = genesis.params
    if producers is None:
        producers = tuple(prod.name for prod in genesis.producers)
    return BlockContext(genesis.chain_id, height, slot, timestamp_ms, p.max_tx_expiry_ms,
                        p.max_producer_approvals, tuple(producers), p.unstake_delay_ms,
                        p.stake_activation_delay_ms, p.bandwidth_window_ms, p.tx_base_bandwidth,
                        p.bandwidth_floor, p.bandwidth_per_cp)


def block_context(genesis: Genesis, header: BlockHeader, producers: tuple[str, ...] | None = None) -> BlockContext:
    return make_context(genesis, header.height, header.slot, header.timestamp_ms, producers)


def begin_block(layer: Layer, ctx: BlockContext, rules: RulesHook | None = None) -> None:
    """Before the block's txs: replay keys of expired txs go, stake that has waited moves, the
    governance changes due now are enacted (and closed proposals' code dropped), then the rules'
    block step."""
    replay.process_expired(layer, ctx.timestamp_ms)
    staking.process_due(layer, ctx.timestamp_ms)
    governance.enact_due(layer, ctx.height)
    governance.close_due(layer, ctx.height)
    if rules is not None:
        rules.begin_block(layer, ctx)


def end_block(layer: Layer, ctx: BlockContext, rules: RulesHook | None = None) -> None:
    """After the block's txs: the rules' block step (the periodic round)."""
    if rules is not None:
        rules.end_block(layer, ctx)


def apply_block(parent: Layer, parent_root: bytes, genesis: Genesis, block: Block,
                verify: Verifier = verify_signature, rules: RulesHook | None = None,
                producers: tuple[str, ...] | None = None) -> Layer:
    """Apply every tx of `block` on a new layer over `parent`; check tx_root and state_root.
    `producers`: the block's slot schedule (see `make_context`). Raises InvalidBlock; the parent
    is never modified."""
    header = block.header
    if len(block.txs) > genesis.params.max_block_txs:
        raise InvalidBlock("too_many_txs", f"{len(block.txs)} > {genesis.params.max_block_txs}")
    if types.merkle_root([t.id for t in block.txs]) != header.tx_root:
        raise InvalidBlock("bad_tx_root", "tx_root does not match the txs")
    layer = Layer(parent)
    ctx = block_context(genesis, header, producers)
    snapshot.process_attestation(layer, header.snapshot_height, genesis.params.snapshot_interval)
    begin_block(layer, ctx, rules)
    for i, tx in enumerate(block.txs):
        try:
            apply_tx(layer, tx, ctx, i, verify, rules)
        except InvalidTx as e:
            raise InvalidBlock("invalid_tx", f"tx {i} ({tx.id.hex()[:16]}): {e.code}: {e.message}") from None
    end_block(layer, ctx, rules)
    if compute_state_root(parent_root, layer.writes) != header.state_root:
        raise InvalidBlock("bad_state_root", "state_root does not match the state after the block")
    return layer


def genesis_writes(genesis: Genesis) -> dict[bytes, bytes]:
    """The state at height 0: founding members with balances and stake, genesis producers approved
    by nobody (the schedule falls back to them until candidates are elected), and the default
    rules contract with its parameters (genesis overrides applied) and empty reward pools."""
    writes = genesis_rules_writes(dict(genesis.rules_params))
    producers = {p.name: p for p in genesis.producers}
    for m in genesis.members:
        writes[schema.account_key(m.name)] = records.encode(
            Account(m.public_key, balance=m.balance, stake=m.stake))
    for name, p in producers.items():
        writes[schema.producer_key(name)] = records.encode(ProducerRecord(p.node_key, p.url))
    return writes


def genesis_header(genesis: Genesis) -> BlockHeader:
    root = compute_state_root(types.ZERO_HASH, genesis_writes(genesis))
    return BlockHeader(genesis.chain_id, 0, types.Hash(genesis.hash), 0, genesis.genesis_time_ms,
                       genesis.producers[0].name, types.ZERO_HASH, types.Hash(root), 0)
