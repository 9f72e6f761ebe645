"""Governance of the rules: the producers in office set a rules parameter or replace the rules
contract, by proposal and approval, from a stated effective height on.

A `govern` tx either makes a proposal (its id is the tx id; it counts as the proposer's approval)
or approves one. Only producers in office may do either: those the election would choose from the
current state — the top `producer_count` registered producers by approving stake, or the genesis
producers while no candidate has any — the rule of consensus/schedule.py, computed here from
state alone because the transition never reads consensus objects. A proposal is approved once
`governance_quorum(n)` (2n/3 + 1) of the n producers in office at an approval have approved it; it
is enacted at the start of its effective block (`enact_due`, before any tx of that block). One
not approved before its effective height lapses (shown as `expired`; nothing is written for it).

An upgrade's source is compiled on chain. Whether a source compiles must not depend on how deep
the Python stack is where it is compiled (admission, block production and import differ), so a
source whose syntax tree is deeper than MAX_SOURCE_DEPTH is refused whatever the parser says.
"""
import ast

import msgpack

from contracts import CompileError, VMError, code_hash, compile_source, prepare
from contracts.rules import HOOK_FOR_KIND, ROUND_HOOK
from core.codec import pack_flat
from core.errors import InvalidTx
from core.quorum import governance_quorum
from state import records, schema
from state.records import ProducerRecord, Proposal
from state.view import Journal

MAX_SOURCE_DEPTH = 100
HOOK_ARITY = {**{hook: 0 for hook in HOOK_FOR_KIND.values()}, ROUND_HOOK: 1}


# ------------------------------------------------------------------------------ reads
def has_equivocated(view, name: str) -> bool:
    """A `report_equivocation` against this producer is in the chain (see core.evidence)."""
    return view.get(schema.equivocation_key(name)) is not None


def get_elected_producers(view, producer_count: int) -> tuple[str, ...]:
    """The top `producer_count` registered producers by approving stake (ties by name), leaving
    out those that equivocated; empty when no such candidate has any approval (then the genesis
    producers stay in office: see `producers_in_office`)."""
    candidates = []
    for key, raw in view.scan(schema.PRODUCER):
        rec = records.decode(ProducerRecord, raw)
        name = key[len(schema.PRODUCER):].decode()
        if rec.approval > 0 and not has_equivocated(view, name):
            candidates.append((-rec.approval, name))
    return tuple(name for _, name in sorted(candidates)[:producer_count])


def genesis_producers_in_office(view, genesis_producers: tuple[str, ...]) -> tuple[str, ...]:
    """Who produces while no candidate is approved: the genesis producers that did not
    equivocate, in genesis order; all of them if every one did (a chain left without producers
    could never recover)."""
    return tuple(n for n in genesis_producers if not has_equivocated(view, n)) or tuple(genesis_producers)


def producers_in_office(view, producer_count: int, genesis_producers: tuple[str, ...]) -> tuple[str, ...]:
    return get_elected_producers(view, producer_count) or genesis_producers_in_office(view, genesis_producers)


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
def _ast_depth(tree: ast.AST) -> int:
    depth, stack = 0, [(tree, 1)]
    while stack:
        node, d = stack.pop()
        depth = max(depth, d)
        stack.extend((child, d + 1) for child in ast.iter_child_nodes(node))
    return depth


def compile_rules(source: str) -> bytes:
    """Contract source -> verified bytecode that defines every hook the chain calls, or
    InvalidTx("invalid_proposal")."""
    try:
        too_deep = _ast_depth(ast.parse(source)) > MAX_SOURCE_DEPTH
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        too_deep = False  # compile_source fails on it as well, and says why
    if too_deep:
        raise InvalidTx("invalid_proposal", f"the source nests deeper than {MAX_SOURCE_DEPTH}")
    try:
        code = compile_source(source)
        program, _ = prepare(code)
    except (CompileError, VMError, RecursionError, MemoryError) as e:
        raise InvalidTx("invalid_proposal", f"the rules source does not compile: {e}") from None
    for hook, arity in HOOK_ARITY.items():
        index = program.index_of(hook)
        if index is None or program.functions[index].nparams != arity:
            raise InvalidTx("invalid_proposal", f"a rules contract defines {hook} with {arity} parameter(s)")
    return code


def _new_proposal(j: Journal, tx, ctx) -> Proposal:
    p = tx.body["proposal"]
    # a change takes effect in a later block, never in the one that proposes it
    if p["effective_height"] <= ctx.height:
        raise InvalidTx("invalid_proposal", f"effective_height must be above {ctx.height}")
    name, value, digest = "", 0, b""
    if p["action"] == "set_param":
        name, value = p["name"], p["value"]
    else:
        code = compile_rules(p["source"])
        digest = code_hash(code)
        j.put(schema.proposal_code_key(tx.id), code)
    return Proposal(tx.sender, p["action"], name, value, digest, p["effective_height"], ctx.height,
                    "pending", [tx.sender])


def process_govern(j: Journal, tx, sender, ctx) -> None:
    office = producers_in_office(j, ctx.producer_count, ctx.genesis_producers)
    # only the producers in office govern the rules
    if tx.sender not in office:
        raise InvalidTx("not_producer", f"{tx.sender} is not a producer in office", status=403)
    if "proposal" in tx.body:
        proposal_id, proposal = tx.id, _new_proposal(j, tx, ctx)
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
