"""Governance of the rules: the producers in office set a rules parameter or replace the rules
contract, by proposal and approval, from a stated effective height on.

A `govern` tx either makes a proposal (its id is the tx id; it counts as the proposer's approval)
or approves one. Only producers in office may do either: the producers scheduled for the slot of
the block the tx is in (`ctx.producers`, from the elections of consensus/schedule.py), the same
set whose votes finalize that block. A proposal is approved once `governance_quorum(n)` (2n/3 + 1)
of the n producers in office at an approval have approved it; it is enacted at the start of its
effective block (`enact_due`, before any tx of that block). One not approved before its
effective height lapses (shown as `expired`). A parameter's new value must be in its declared
range (state.rules.PARAM_RANGES) when proposed and again when enacted (two proposals each in range
may together break a joint bound): one that is not is `refused` at enactment and changes nothing.

Nothing is kept that serves no purpose (`close_due`): at its effective height a proposal's code
goes whatever became of it (an enacted upgrade's is in the rules by then), and a lapsed proposal
is deleted EXPIRED_PROPOSAL_KEEP_BLOCKS later (until then it shows as `expired`); enacted and
refused ones stay, as the record of what changed the rules.

An upgrade carries compiled bytecode, which `verify_rules_code` checks with the VM's own loader
under its fixed limits (size, functions, constants, instructions, locals, stack): nothing is
compiled at consensus time, so whether a proposal is valid depends on its bytes alone, not on
the Python that runs the node, and costs time and memory bounded by MAX_RULES_CODE_BYTES.
"""
import msgpack

from contracts import VMError, code_hash, prepare
from contracts.rules import HOOK_FOR_KIND, ROUND_HOOK
from core.codec import pack_flat
from core.errors import InvalidTx
from core.quorum import governance_quorum
from core.types import MAX_RULES_CODE_BYTES
from state import records, schema
from state.rules import check_params, get_params
from state.records import ProducerRecord, Proposal
from state.view import Journal

HOOK_ARITY = {**{hook: 0 for hook in HOOK_FOR_KIND.values()}, ROUND_HOOK: 1}
EXPIRED_PROPOSAL_KEEP_BLOCKS = 1_209_600  # 7 days of 0.5 s blocks


# ------------------------------------------------------------------------------ reads
def has_equivocated(view, name: str) -> bool:
    """A `report_equivocation` against this producer is in the chain (see core.evidence)."""
    return view.get(schema.equivocation_key(name)) is not None


def get_candidates(view) -> dict[str, ProducerRecord]:
    """Every registered producer that never equivocated, by name."""
    found = {}
    for key, raw in view.scan(schema.PRODUCER):
        name = key[len(schema.PRODUCER):].decode()
        if not has_equivocated(view, name):
            found[name] = records.decode(ProducerRecord, raw)
    return found


def get_proposal(view, proposal_id: bytes) -> Proposal | None:
    raw = view.get(schema.proposal_key(proposal_id))
    return None if raw is None else records.decode(Proposal, raw)


def get_proposals(view) -> list[tuple[bytes, Proposal]]:
    n = len(schema.PROPOSAL)
    return [(k[n:], records.decode(Proposal, v)) for k, v in view.scan(schema.PROPOSAL)]


def compute_status(proposal: Proposal, height: int) -> str:
    """The stored status, or `expired` for a pending proposal whose effective height has come."""
    if proposal.status == "pending" and height >= proposal.effective_height:
        return "expired"
    return proposal.status


# ------------------------------------------------------------------------------ the tx kind
def verify_rules_code(code: bytes) -> None:
    """Check that `code` is bytecode the VM loads (`prepare`: every limit of contracts/bytecode.py)
    and that it defines every hook the chain calls with its arity; InvalidTx("invalid_proposal")
    if not. Never compiles anything."""
    # refused by size before any of it is decoded (the tx's static check bounds it as well)
    if type(code) is not bytes or not 0 < len(code) <= MAX_RULES_CODE_BYTES:
        raise InvalidTx("invalid_proposal", f"rules bytecode has 1..{MAX_RULES_CODE_BYTES} bytes")
    try:
        program, _ = prepare(code)
    except VMError as e:
        raise InvalidTx("invalid_proposal", f"not valid rules bytecode: {e}") from None
    for hook, arity in HOOK_ARITY.items():
        index = program.index_of(hook)
        if index is None or program.functions[index].nparams != arity:
            raise InvalidTx("invalid_proposal", f"a rules contract defines {hook} with {arity} parameter(s)")


def _new_proposal(j: Journal, tx, ctx) -> Proposal:
    p = tx.body["proposal"]
    # a change takes effect in a later block, never in the one that proposes it
    if p["effective_height"] <= ctx.height:
        raise InvalidTx("invalid_proposal", f"effective_height must be above {ctx.height}")
    name, value, digest = "", 0, b""
    if p["action"] == "set_param":
        name, value = p["name"], p["value"]
    else:
        verify_rules_code(p["code"])
        digest = code_hash(p["code"])
        j.put(schema.proposal_code_key(tx.id), p["code"])
    return Proposal(tx.sender, p["action"], name, value, digest, p["effective_height"], ctx.height,
                    "pending", [tx.sender])


def _check_param_change(view, name: str, value: int) -> str | None:
    """Why setting `name` to `value` over the parameters in `view` is not allowed, or None."""
    params = get_params(view)
    if name not in params:
        return f"there is no parameter {name!r}"
    return check_params({**params, name: value})


def process_govern(j: Journal, tx, sender, ctx) -> None:
    office = ctx.producers
    # only the producers in office govern the rules
    if tx.sender not in office:
        raise InvalidTx("not_producer", f"{tx.sender} is not a producer in office", status=403)
    if "proposal" in tx.body:
        proposal_id, proposal = tx.id, _new_proposal(j, tx, ctx)
        # a parameter only ever takes a value inside its declared range
        refused = proposal.action == "set_param" and _check_param_change(j, proposal.name, proposal.value)
        if refused:
            raise InvalidTx("invalid_proposal", refused)
        _append_id(j, schema.proposals_close_key(proposal.effective_height), proposal_id)
    else:
        proposal_id = tx.body["approve"]
        proposal = get_proposal(j, proposal_id)
        if proposal is None:
            raise InvalidTx("unknown_proposal", f"no proposal {proposal_id.hex()}", status=404)
        # approvals count while the proposal is open: not yet approved, effective height ahead
        if proposal.status != "pending" or ctx.height >= proposal.effective_height:
            raise InvalidTx("proposal_closed", f"proposal {proposal_id.hex()} is "
                            f"{compute_status(proposal, ctx.height)}", status=409)
        if tx.sender in proposal.approvals:
            raise InvalidTx("already_approved", f"{tx.sender} already approved it", status=409)
        proposal.approvals.append(tx.sender)
    if sum(name in office for name in proposal.approvals) >= governance_quorum(len(office)):
        proposal.status = "approved"
        due_key = schema.proposals_due_key(proposal.effective_height)
        due = j.get(due_key)
        j.put(due_key, pack_flat(([] if due is None else msgpack.unpackb(due)) + [proposal_id]))
    j.put(schema.proposal_key(proposal_id), records.encode(proposal))


# ------------------------------------------------------------------------------ enactment
def enact_due(layer, height: int) -> None:
    """Enact the proposals approved for `height`, in the order they were approved."""
    due_key = schema.proposals_due_key(height)
    due = layer.get(due_key)
    if due is None:
        return
    j = Journal(layer)
    for proposal_id in msgpack.unpackb(due):
        proposal = get_proposal(j, proposal_id)
        if proposal.action == "set_param":
            if _check_param_change(j, proposal.name, proposal.value):
                proposal.status = "refused"
                j.put(schema.proposal_key(proposal_id), records.encode(proposal))
                continue
            j.put(schema.param_key(proposal.name), pack_flat(proposal.value))
        else:
            code_key = schema.proposal_code_key(proposal_id)
            j.put(schema.RULES_CODE, j.get(code_key))
            j.put(schema.RULES_HASH, proposal.code_hash)
            j.delete(code_key)
        proposal.status = "enacted"
        j.put(schema.proposal_key(proposal_id), records.encode(proposal))
    j.delete(due_key)
    j.commit()


def _append_id(j: Journal, key: bytes, proposal_id: bytes) -> None:
    ids = j.get(key)
    j.put(key, pack_flat(([] if ids is None else msgpack.unpackb(ids)) + [proposal_id]))


def close_due(layer, height: int) -> None:
    """After `enact_due`: drop the code of the proposals whose effective height is `height`, and
    schedule the lapsed ones for deletion; delete those whose time to go is `height`. (Work per
    block: the proposals made for this height, which only producers in office can make.)"""
    close_key, prune_key = schema.proposals_close_key(height), schema.proposals_prune_key(height)
    closing, pruning = layer.get(close_key), layer.get(prune_key)
    if closing is None and pruning is None:
        return
    j = Journal(layer)
    for proposal_id in msgpack.unpackb(closing) if closing is not None else ():
        code_key = schema.proposal_code_key(proposal_id)
        if j.get(code_key) is not None:
            j.delete(code_key)
        if get_proposal(j, proposal_id).status == "pending":  # lapsed: shown as expired a while
            _append_id(j, schema.proposals_prune_key(height + EXPIRED_PROPOSAL_KEEP_BLOCKS), proposal_id)
    for proposal_id in msgpack.unpackb(pruning) if pruning is not None else ():
        j.delete(schema.proposal_key(proposal_id))
    if closing is not None:
        j.delete(close_key)
    if pruning is not None:
        j.delete(prune_key)
    j.commit()
