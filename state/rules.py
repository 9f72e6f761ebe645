"""The community-asset rules on chain: the rules contract, run by the contract VM over the state.

The active contract's bytecode, its hash, its parameters and the three reward pools are state
(`v1/s/rules/`), written at genesis and changed only by governance (state.governance), so every
node runs the same code with the same parameters. `ContractRules` is the chain's `RulesHook`:

- after the base rules of a post, vote, attend or refer tx it calls the contract's hook for that
  kind with the hook's gas limit; a `VMError` rejects the tx (`contract_failed`) with no writes;
- at the start of each block it issues `issuance_per_block` into the pools, split by their bps;
- at the end of every `round_blocks`-th block it calls `on_round(height // round_blocks)`. A
  round that fails changes nothing but its status record: a block is never invalid because of it.

Events a contract emits are dropped: a receipt store would cost a state write per event, and
what they say (payouts) is visible in the accounts' assets.
"""
from typing import Mapping

import msgpack

from contracts import (DIMENSIONS, VMError, VMFault, code_hash, decode_own_value, encode_value,
                       prepare, run)
from contracts.rules import DEFAULT_PARAMS, HOOK_FOR_KIND, HOOK_GAS_LIMITS, ROUND_HOOK
from contracts.rules import PARAM_RANGES as CONTRACT_PARAM_RANGES
from contracts.rules import load_default_rules
from contracts.values import copy_value
from core.codec import pack_flat
from core.errors import InvalidTx, InvariantBroken
from core.types import MAX_INT
from state import records, schema
from state.records import Account, Post
from state.view import Journal, Layer

# Parameters the chain itself reads (the contract may read them too), next to the contract's own.
ISSUANCE_PARAMS = {
    "issuance_per_block": 10_000,    # 10.000 new asset units per block, into the reward pools
    "content_pool_bps": 5000,        # 50% of it to the content pool
    "behaviour_pool_bps": 2500,      # 25% to the behaviour pool
    "relationship_pool_bps": 2500,   # 25% to the relationship pool
    "round_blocks": 20,              # on_round runs at every 20th height (0: never)
    "referral_fee": 2_000,           # a refer costs the referrer 2 CP, into the relationship pool
}
GENESIS_PARAMS = {**DEFAULT_PARAMS, **ISSUANCE_PARAMS}
# Every parameter's range, enforced at genesis, at proposal and at enactment. The bounds keep
# amounts far from what the codec and the VM hold (2^63 - 1: a pool filled at the highest
# issuance for 100 years holds 6.3e18) and the hooks inside their gas (a post pays at most
# max_votes_per_post curators, a round at most payout_budget_per_round posts and votes).
PARAM_RANGES = {
    "issuance_per_block": (0, 1_000_000_000),
    "content_pool_bps": (0, 10_000), "behaviour_pool_bps": (0, 10_000),
    "relationship_pool_bps": (0, 10_000),
    "round_blocks": (0, 1_000_000),
    "referral_fee": (0, 10**12),
    **CONTRACT_PARAM_RANGES,
}
POOL_BPS_PARAMS = ("content_pool_bps", "behaviour_pool_bps", "relationship_pool_bps")


def check_params(params: Mapping[str, int]) -> str | None:
    """Why a full set of parameters is not allowed (None if it is): every value in its range, and
    the pools' shares of issuance at most 100 % together."""
    for name, value in sorted(params.items()):
        if name not in PARAM_RANGES:
            return f"there is no parameter {name!r}"
        lo, hi = PARAM_RANGES[name]
        if not lo <= value <= hi:
            return f"{name} must be in {lo}..{hi}, not {value}"
    if sum(params.get(name, 0) for name in POOL_BPS_PARAMS) > BPS:
        return f"the pools' shares ({', '.join(POOL_BPS_PARAMS)}) add up to more than {BPS}"
    return None
BPS = 10_000
_NO_TX = {"kind": "", "sender": "", "id": b"", "body": {}}
_ACCOUNT_FIELD = {dimension: Account.__slots__.index(dimension) for dimension in DIMENSIONS}


# ------------------------------------------------------------------------------ state access
def genesis_rules_writes(overrides: Mapping[str, int]) -> dict[bytes, bytes]:
    """The default rules contract, its parameters (genesis overrides applied) and empty pools."""
    unknown = sorted(set(overrides) - set(GENESIS_PARAMS))
    if unknown:
        raise ValueError(f"invalid genesis: unknown rules parameters {unknown}")
    refused = check_params({**GENESIS_PARAMS, **overrides})
    if refused:
        raise ValueError(f"invalid genesis: {refused}")
    code = load_default_rules()
    writes = {schema.RULES_CODE: code, schema.RULES_HASH: code_hash(code)}
    for name, value in {**GENESIS_PARAMS, **overrides}.items():
        writes[schema.param_key(name)] = pack_flat(value)
    for dimension in DIMENSIONS:
        writes[schema.pool_key(dimension)] = pack_flat(0)
    return writes


def get_param(view, name: str) -> int | None:
    raw = view.get(schema.param_key(name))
    return None if raw is None else msgpack.unpackb(raw)


def get_params(view) -> dict[str, int]:
    n = len(schema.RULES_PARAM)
    return {k[n:].decode(): msgpack.unpackb(v) for k, v in view.scan(schema.RULES_PARAM)}


def get_pool(view, dimension: str) -> int:
    raw = view.get(schema.pool_key(dimension))
    return 0 if raw is None else msgpack.unpackb(raw)


def get_code_hash(view) -> bytes | None:
    return view.get(schema.RULES_HASH)


def get_last_round(view) -> dict | None:
    """Status of the latest on_round call: round, height, gas and the fault code ("" when it
    completed)."""
    raw = view.get(schema.RULES_LAST_ROUND)
    if raw is None:
        return None
    number, height, gas, error = msgpack.unpackb(raw)
    return {"round": number, "height": height, "gas_used": gas, "error": error}


def add_to_pool(j: Journal, dimension: str, delta: int) -> None:
    """Saturating at MAX_INT: a full pool stops growing rather than overflow the codec (the
    parameter ranges keep this a century away)."""
    j.put(schema.pool_key(dimension), pack_flat(min(MAX_INT, get_pool(j, dimension) + delta)))


# ------------------------------------------------------------------------------ the host
# where records.encode puts the account fields the host reads
(_BALANCE, _STAKE, _REFERRER, _JOINED, _CONTENT, _BEHAVIOUR, _RELATIONSHIP, _MATURING) = (
    Account.__slots__.index(name) for name in ("balance", "stake", "referrer", "joined_height",
                                               "content", "behaviour", "relationship", "maturing"))


class ChainHost:
    """contracts' Host over one state Journal, for one contract call. That journal is dropped
    when the call fails (the tx is rejected, or the round leaves only its status), so the host is
    all or nothing and the VM hands it each write as it is made. What the call reads of accounts,
    pools and parameters is cached for the call: only the call's own awards change an account or
    a pool during it, and a call reads accounts as they were when it started. `params`, when
    given, are the parameters of the block being applied (see `ContractRules.begin_block`);
    otherwise they are read from state.

    Everything it returns is built from checked state, the tx's checked body (`core.types`) or
    the block's context, and every list and map is new on every call, so that a contract
    changing what it read changes nothing here: it says `trusted_values`, and the VM neither
    checks nor copies its values."""

    all_or_nothing = True
    trusted_values = True
    __slots__ = ("j", "ctx", "current_tx", "_accounts", "_paid", "_pools", "_params", "_all_params")

    def __init__(self, j: Journal, ctx, current_tx: dict, params: dict[str, int] | None = None):
        self.j = j
        self.ctx = ctx
        self.current_tx = current_tx
        self._accounts: dict[str, list | None] = {}
        self._paid: dict[str, list] = {}
        self._pools: dict[str, int] = {}
        self._all_params = params is not None  # then a name not in it is no parameter
        self._params = {} if params is None else params

    def tx(self) -> dict:
        return copy_value(self.current_tx)

    def block(self) -> dict:
        return {"height": self.ctx.height, "slot": self.ctx.slot, "timestamp": self.ctx.timestamp_ms}

    def now(self) -> int:
        return self.ctx.timestamp_ms

    def storage_get(self, key: bytes):
        raw = self.j.get(schema.contract_storage_key(key))
        return None if raw is None else decode_own_value(raw)  # only this host writes there

    def storage_get_encoded(self, key: bytes) -> bytes | None:
        return self.j.get(schema.contract_storage_key(key))

    def storage_set(self, key: bytes, value) -> None:
        self.j.put(schema.contract_storage_key(key), encode_value(value))

    def put_encoded(self, key: bytes, blob: bytes) -> None:
        """storage_set of a value the VM's journal already encoded (and checked)."""
        self.j.put(schema.contract_storage_key(key), blob)

    def storage_delete(self, key: bytes) -> None:
        self.j.delete(schema.contract_storage_key(key))

    def _fields(self, name: str) -> list | None:
        """The account record's fields as the call started (`records.encode` packs them in
        declaration order), decoded once per call; awards change a copy (see `award`)."""
        if name in self._accounts:
            return self._accounts[name]
        raw = self.j.get(schema.account_key(name))
        fields = self._accounts[name] = None if raw is None else msgpack.unpackb(raw)
        return fields

    def account(self, name: str) -> dict | None:
        f = self._fields(name)
        if f is None:
            return None
        return {"name": name, "balance": f[_BALANCE], "stake": f[_STAKE],
                "referrer": f[_REFERRER] or None, "joined_height": f[_JOINED],
                "content": f[_CONTENT], "behaviour": f[_BEHAVIOUR], "relationship": f[_RELATIONSHIP]}

    def stake(self, name: str) -> int:
        """`Account.active_stake`, as the call started."""
        f = self._fields(name)
        return 0 if f is None else f[_STAKE] - f[_MATURING]

    def post(self, author: str, permlink: str) -> dict | None:
        raw = self.j.get(schema.post_key(author, permlink))
        if raw is None:
            return None
        p = records.decode(Post, raw)
        return {"author": author, "permlink": permlink, "parent": p.parent or None,
                "is_event": p.event is not None, "created_height": p.created_height,
                "created_at": p.created_ms, "net_votes": p.net_votes, "vote_count": p.vote_count,
                "attendees": p.attendees, "children": p.children}

    def param(self, name: str) -> int:
        value = self._params.get(name) if type(name) is str else None
        if value is None:
            if not self._all_params and type(name) is str:
                value = get_param(self.j, name)
            if value is None:
                raise VMFault("unknown_param", f"no parameter {name!r}")
            self._params[name] = value
        return value

    def pool(self, dimension: str) -> int:
        pool = self._pools.get(dimension)
        if pool is None:
            pool = self._pools[dimension] = get_pool(self.j, dimension)
        return pool

    def award(self, account: str, dimension: str, amount: int) -> None:
        """Pays what the pool has, up to amount: never fails (the VM's journal checked the rest).
        The account's record is written as `records.encode` would write it, from a copy of its
        fields that the call's awards change: what the call reads stays as it started."""
        pool = self.pool(dimension)
        paid = min(amount, pool)
        if paid <= 0:
            return
        self._pools[dimension] = pool - paid
        self.j.put(schema.pool_key(dimension), pack_flat(pool - paid))
        fields = self._paid.get(account)
        if fields is None:
            fields = self._paid[account] = list(self._fields(account))
        fields[_ACCOUNT_FIELD[dimension]] += paid
        self.j.put(schema.account_key(account), pack_flat(fields))

    def emit(self, name: str, data: dict) -> None:
        """Dropped (see the module docstring)."""


# ------------------------------------------------------------------------------ the hook
class ContractRules:
    """The RulesHook that runs the on-chain rules contract. Its state is a cache of bytecode by
    code hash, which is content-addressed, and the code and parameters of the block being built
    or applied, read at its `begin_block` (see there); neither can make two nodes differ."""

    def __init__(self):
        self._code: dict[bytes, bytes] = {}
        self._block: tuple[Layer, bytes, dict[str, int]] | None = None

    def code(self, view) -> bytes:
        """The active bytecode; decoded and verified once per code hash (`prepare` caches it by
        the bytes object, and this keeps handing out the same object)."""
        digest = view.get(schema.RULES_HASH)
        code = self._code.get(digest)
        if code is None:
            code = view.get(schema.RULES_CODE)
            if code is None:
                raise InvariantBroken("the state holds no rules contract: the data directory was "
                                      "made before the rules were part of the chain")
            prepare(code)
            self._code[digest] = code
        return code

    def _code_and_params(self, layer) -> tuple[bytes, dict[str, int] | None]:
        """The block's code and parameters for a call on `layer` itself; for any other view (the
        mempool's dry run on a fresh layer over the tip) the code, and None: read them from it."""
        block = self._block
        if block is not None and block[0] is layer:
            return block[1], block[2]
        return self.code(layer), None

    def on_tx(self, journal: Journal, tx, ctx) -> None:
        hook = HOOK_FOR_KIND.get(tx.kind)
        if hook is None:
            return
        code, params = self._code_and_params(journal.base)
        host = ChainHost(journal, ctx, {"kind": tx.kind, "sender": tx.sender, "id": tx.id,
                                        "body": tx.body}, params)
        try:
            run(code, hook, [], host, HOOK_GAS_LIMITS[hook])
        except VMError as e:
            raise InvalidTx("contract_failed", str(e)) from None

    def begin_block(self, layer, ctx) -> None:
        """Issue this block's new assets into the reward pools, and keep the block's code and
        parameters for the calls on this layer. That is safe because they change only at a
        block's start: genesis and `governance.enact_due` (run by `transition.begin_block` just
        before this) are the only writers of their keys, and no tx writes them."""
        j = Journal(layer)
        issuance = get_param(j, "issuance_per_block") or 0
        for dimension in DIMENSIONS:
            share = issuance * (get_param(j, f"{dimension}_pool_bps") or 0) // BPS
            if share:
                add_to_pool(j, dimension, share)
        j.commit()
        self._block = (layer, self.code(layer), get_params(layer))

    def end_block(self, layer, ctx) -> None:
        """on_round at every round_blocks-th height; a failed round leaves only its status."""
        every = get_param(layer, "round_blocks") or 0
        if every <= 0 or ctx.height % every:
            return
        number = ctx.height // every
        code, params = self._code_and_params(layer)
        j = Journal(layer)
        try:
            result = run(code, ROUND_HOOK, [number], ChainHost(j, ctx, _NO_TX, params),
                         HOOK_GAS_LIMITS[ROUND_HOOK])
        except VMError as e:
            # the code only: it is state, and a message's wording may change between releases
            gas, error = e.gas_used, e.code
        else:
            j.commit()
            gas, error = result.gas_used, ""
        layer.writes[schema.RULES_LAST_ROUND] = pack_flat([number, ctx.height, gas, error])
