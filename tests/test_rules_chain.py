"""The rules contract as part of the chain: real signed txs through begin_block / apply_tx /
end_block and apply_block over MemoryKV layers, with ContractRules as the rules hook. Awards per
dimension, reward pools, on_round payouts, contract faults and gas exhaustion rejecting a tx with
no writes, governance (quorum, producers in office, effective heights) and determinism."""
import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.chain import Chain
from contracts import code_hash, compile_source
from contracts.rules import DEFAULT_PARAMS, default_rules_hash, default_rules_source
from core import types
from core.codec import pack_flat
from core.errors import InvalidBlock, InvalidTx
from core.genesis import ChainParams, Genesis, Member, Producer
from core.types import Block, BlockHeader, Tx, Vote, make_ticket, merkle_root
from state import governance, records, schema
from state import rules as R
from state import transition as T
from state.kv import MemoryKV
from state.records import Account
from state.rules import ContractRules
from state.view import Layer
from tests.conftest import BALANCE, CHAIN_ID, GENESIS_MS, STAKE, keypair, make_genesis, make_tx, node_keypair

NAMES = ("alice", "bob", "carol", "dave", "erin")
BLOCK_MS = 500
WINDOW = 10_000  # payout window of these tests (ms)


def rules_genesis(producers=("alice",), **params) -> Genesis:
    """Five members; a short payout window and a round every 5 blocks unless overridden."""
    params = {"payout_window_ms": WINDOW, "upvote_lockout_ms": 2000, "round_blocks": 5, **params}
    g = Genesis(CHAIN_ID, GENESIS_MS, ChainParams(),
                tuple(Member(n, keypair(n).public_key, BALANCE, STAKE) for n in NAMES),
                tuple(Producer(n, node_keypair(n).public_key, "") for n in producers),
                tuple(sorted(params.items())))
    assert Genesis.from_json(g.to_json()) == g
    return g


class Ledger:
    """A chain without consensus: each block is built as a producer builds it (begin_block, the
    txs, end_block) and then applied with apply_block, as a peer applies it."""

    def __init__(self, genesis: Genesis, rules=None):
        self.g = genesis
        self.rules = rules or ContractRules()
        kv = MemoryKV()
        writes = T.genesis_writes(genesis)
        kv.write(writes)
        self.layer = Layer(None, kv)
        self.root = T.compute_state_root(types.ZERO_HASH, writes)
        self.height, self.ts, self.salt = 0, genesis.genesis_time_ms, 0

    def context(self, after_ms: int = BLOCK_MS) -> T.BlockContext:
        h = self.height + 1
        return T.make_context(self.g, h, h, self.ts + after_ms)

    def tx(self, ctx, sender: str, kind: str, body: dict) -> Tx:
        self.salt += 1
        return make_tx(sender, kind, body, expires_at=ctx.timestamp_ms + 30_000, salt=self.salt)

    def build(self, txs, ctx, skip_invalid: bool = False) -> Block:
        scratch, included = Layer(self.layer), []
        T.begin_block(scratch, ctx, self.rules)
        for tx in txs:
            try:
                T.apply_tx(scratch, tx, ctx, len(included), rules=self.rules)
                included.append(tx)
            except InvalidTx:
                if not skip_invalid:
                    raise
        T.end_block(scratch, ctx, self.rules)
        header = BlockHeader(self.g.chain_id, ctx.height, types.ZERO_HASH, ctx.slot, ctx.timestamp_ms,
                             self.g.producers[0].name, merkle_root([t.id for t in included]),
                             T.compute_state_root(self.root, scratch.writes), ctx.height - 1)
        return Block.create(node_keypair(self.g.producers[0].name), header, tuple(included))

    def apply(self, block: Block) -> None:
        self.layer = T.apply_block(self.layer, self.root, self.g, block, rules=self.rules)
        self.root, self.height = block.header.state_root, block.header.height
        self.ts = block.header.timestamp_ms

    def block(self, *specs, after_ms: int = BLOCK_MS) -> list[Tx]:
        """A block of txs (sender, kind, body), each of which must be valid."""
        ctx = self.context(after_ms)
        txs = [self.tx(ctx, *spec) for spec in specs]
        self.apply(self.build(txs, ctx))
        return txs

    def until(self, height: int, after_ms: int = BLOCK_MS) -> None:
        while self.height < height:
            self.block(after_ms=after_ms)

    def reject(self, sender: str, kind: str, body: dict) -> InvalidTx:
        """The tx is invalid in the next block: apply_tx leaves no write, a block with it is refused."""
        ctx = self.context()
        tx = self.tx(ctx, sender, kind, body)
        scratch = Layer(self.layer)
        T.begin_block(scratch, ctx, self.rules)
        before = dict(scratch.writes)
        with pytest.raises(InvalidTx) as e:
            T.apply_tx(scratch, tx, ctx, 0, rules=self.rules)
        assert scratch.writes == before
        header = BlockHeader(self.g.chain_id, ctx.height, types.ZERO_HASH, ctx.slot, ctx.timestamp_ms,
                             "alice", merkle_root([tx.id]), types.ZERO_HASH, ctx.height - 1)
        with pytest.raises(InvalidBlock) as b:
            T.apply_block(self.layer, self.root, self.g, Block.create(node_keypair("alice"), header, (tx,)),
                          rules=self.rules)
        assert b.value.code == "invalid_tx"
        return e.value

    def assets(self, name: str) -> tuple[int, int, int]:
        a = T.get_account(self.layer, name)
        return a.content, a.behaviour, a.relationship

    def param(self, name: str) -> int:
        return R.get_param(self.layer, name)


def post(permlink: str, **extra) -> dict:
    return {"permlink": permlink, "title": permlink, "body": "text", "tags": [], **extra}


def event_post(permlink: str, ledger: Ledger) -> dict:
    return post(permlink, event={"capacity": 100, "ends_at": ledger.ts + 10**7, "starts_at": ledger.ts})


def attend(ref: str, attendee: str) -> dict:
    return {"event": ref, "ticket": make_ticket(keypair(ref.split("/")[0]), CHAIN_ID, ref, attendee)}


def set_param(name: str, value: int, effective_height: int) -> dict:
    return {"proposal": {"action": "set_param", "effective_height": effective_height, "name": name,
                         "value": value}}


def upgrade(source: str, effective_height: int) -> dict:
    """A rules upgrade as a wallet makes it: the source compiled on the client, bytecode sent."""
    return upgrade_code(compile_source(source), effective_height)


def upgrade_code(code: bytes, effective_height: int) -> dict:
    return {"proposal": {"action": "upgrade_rules", "code": code, "effective_height": effective_height}}


# ---------------------------------------------------------------------------------- genesis
def test_genesis_writes_the_default_rules_params_and_empty_pools():
    ledger = Ledger(rules_genesis(attend_points=7))
    assert R.get_code_hash(ledger.layer) == default_rules_hash()
    assert R.get_params(ledger.layer) == {**R.GENESIS_PARAMS, "payout_window_ms": WINDOW,
                                          "upvote_lockout_ms": 2000, "round_blocks": 5, "attend_points": 7}
    assert [R.get_pool(ledger.layer, d) for d in ("content", "behaviour", "relationship")] == [0, 0, 0]


def test_genesis_without_rules_section_keeps_its_document_and_unknown_params_are_refused():
    g = make_genesis()
    assert "rules" not in g.to_json() and g.rules_params == ()
    with pytest.raises(ValueError, match="unknown rules parameters"):
        T.genesis_writes(rules_genesis(no_such_param=1))
    with pytest.raises(ValueError, match="invalid genesis"):
        Genesis.from_json({**g.to_json(), "rules": {"params": {"attend_points": -1}}})


def test_each_block_issues_into_the_pools_by_their_shares():
    ledger = Ledger(rules_genesis(issuance_per_block=1000, content_pool_bps=6000,
                                  behaviour_pool_bps=3000, relationship_pool_bps=1000))
    ledger.until(3)
    assert [R.get_pool(ledger.layer, d) for d in ("content", "behaviour", "relationship")] == [1800, 900, 300]


# ---------------------------------------------------------------------------------- awards
def test_post_then_votes_then_round_after_the_window_pays_author_and_curators():
    ledger = Ledger(rules_genesis())
    ledger.block(("alice", "post", post("p")))
    ledger.block(*[(n, "vote", {"post": "alice/p", "weight": 10000}) for n in ("bob", "carol", "dave")])
    ledger.until(5)  # round 1: the post is younger than the window
    last = R.get_last_round(ledger.layer)
    assert (last["round"], last["height"], last["error"]) == (1, 5, "")
    assert ledger.assets("alice") == (0, 0, 0)
    pool = R.get_pool(ledger.layer, "content")
    ledger.block(after_ms=WINDOW)
    ledger.until(10)  # round 2 pays
    issued = 5 * 5000
    paid = pool + issued - R.get_pool(ledger.layer, "content")
    # three equal votes: the curators share 25% of the reward equally, the author the rest
    share = paid * DEFAULT_PARAMS["curation_bps"] // 10_000 // 3
    assert share > 0
    for curator in ("bob", "carol", "dave"):
        content, behaviour, _ = ledger.assets(curator)
        assert content in (share, share + 1) and behaviour > 0  # and their participation
    assert ledger.assets("alice")[0] == paid - sum(ledger.assets(n)[0] for n in ("bob", "carol", "dave"))
    assert R.get_last_round(ledger.layer)["round"] == 2


def test_awards_write_account_and_pool_records_as_the_state_encodes_them():
    """ChainHost packs an awarded account's fields and the pools itself, once per award, from
    what it decoded once per call: the bytes must be those of records.encode and pack_flat."""
    ledger = Ledger(rules_genesis())
    ledger.block(("alice", "post", post("p")), ("alice", "post", post("q")))
    ledger.block(*[(n, "vote", {"post": f"alice/{p}", "weight": 10000})
                   for n in ("bob", "carol") for p in ("p", "q")])
    ledger.until(5)
    ledger.block(after_ms=WINDOW)
    ledger.until(10)  # one round pays both posts: several awards to each account in one call
    assert ledger.assets("bob")[0] > 0 and ledger.assets("alice")[0] > 0
    for name in NAMES:
        raw = ledger.layer.get(schema.account_key(name))
        assert records.encode(records.decode(Account, raw)) == raw
    for dimension in ("content", "behaviour", "relationship"):
        raw = ledger.layer.get(schema.pool_key(dimension))
        assert pack_flat(R.get_pool(ledger.layer, dimension)) == raw


def test_attendance_is_paid_as_a_share_of_the_pool():
    ledger = Ledger(rules_genesis())
    ledger.block(("alice", "post", event_post("meet", ledger)))
    ledger.block(("bob", "attend", attend("alice/meet", "bob")))
    # the first claim of the pool alone: it takes the most one payment may, 10% of 2 blocks' 2500
    assert ledger.assets("bob") == (0, 500, 0)
    assert R.get_pool(ledger.layer, "behaviour") == 2 * 2500 - 500


def test_awards_from_an_empty_pool_pay_nothing_and_never_fail():
    ledger = Ledger(rules_genesis(issuance_per_block=0))
    ledger.block(("alice", "post", event_post("meet", ledger)))
    ledger.block(("bob", "attend", attend("alice/meet", "bob")))
    assert ledger.assets("bob") == (0, 0, 0)


def test_a_referral_costs_its_fee_and_pays_once_other_trees_vouch():
    ledger = Ledger(rules_genesis(referral_min_age_ms=0))
    fee = ledger.param("referral_fee")
    ledger.block(("alice", "refer", {"new_account": "frank", "pubkey": keypair("frank").public_key}))
    assert T.get_account(ledger.layer, "alice").balance == BALANCE - fee
    assert R.get_pool(ledger.layer, "relationship") == 2500 + fee
    ledger.block(("frank", "post", post("hello")))
    ledger.block(("bob", "vote", {"post": "frank/hello", "weight": 10000}),
                 ("carol", "vote", {"post": "frank/hello", "weight": 10000}))
    assert ledger.assets("alice")[2] == 0
    ledger.block(("dave", "vote", {"post": "frank/hello", "weight": 10000}))  # the third voucher
    paid = ledger.assets("alice")[2]
    assert paid > 0
    ledger.block(("erin", "vote", {"post": "frank/hello", "weight": 10000}))
    assert ledger.assets("alice")[2] == paid  # paid once


def test_a_refer_without_the_fee_and_a_vote_of_weight_zero_are_refused():
    ledger = Ledger(rules_genesis(referral_fee=BALANCE + 1))
    err = ledger.reject("alice", "refer", {"new_account": "frank", "pubkey": keypair("frank").public_key})
    assert err.code == "insufficient_balance" and "referral fee" in err.message
    ledger.block(("alice", "post", post("p")))
    assert ledger.reject("bob", "vote", {"post": "alice/p", "weight": 0}).code == "zero_weight"


# ---------------------------------------------------------------------------------- faults
HOOKS = "def on_vote():\n    pass\n\ndef on_attend():\n    pass\n\ndef on_refer():\n    pass\n\n" \
        "def on_round(n):\n    return 0\n\n"
DIVIDES_BY_ZERO = HOOKS + "def on_post():\n    zero = 0\n    return 1 // zero\n"
LOOPS_FOREVER = HOOKS + "def on_post():\n    while True:\n        pass\n"


@pytest.mark.parametrize("source,fault", [(DIVIDES_BY_ZERO, "division_by_zero"),
                                          (LOOPS_FOREVER, "out_of_gas")], ids=["fault", "gas"])
def test_a_failing_hook_rejects_the_tx_with_no_writes(source, fault):
    ledger = Ledger(rules_genesis())
    ledger.block(("alice", "govern", upgrade(source, 3)))  # one producer: approved at once
    ledger.block(("bob", "post", post("before")))  # height 2: the default rules still apply
    assert R.get_code_hash(ledger.layer) == default_rules_hash()
    err = ledger.reject("bob", "post", post("after"))  # height 3: the new code
    assert err.code == "contract_failed" and fault in err.message
    ledger.block(("bob", "vote", {"post": "bob/before", "weight": 100}))  # other hooks still run
    assert R.get_code_hash(ledger.layer) != default_rules_hash()


def test_a_failing_round_leaves_the_block_valid_and_its_writes_out():
    faulting_round = "def on_round(n):\n    host.storage_set(b\"k\", 1)\n    return n // 0"
    source = HOOKS.replace("def on_round(n):\n    return 0", faulting_round) + "def on_post():\n    pass\n"
    ledger = Ledger(rules_genesis())
    ledger.block(("alice", "govern", upgrade(source, 2)))
    ledger.until(5)
    assert R.get_last_round(ledger.layer)["error"] == "division_by_zero"
    assert list(ledger.layer.scan(schema.CONTRACT_STORE)) == []


# ---------------------------------------------------------------------------------- governance
def test_set_param_changes_awards_from_its_effective_height_on_and_not_before():
    ledger = Ledger(rules_genesis())
    ledger.block(("alice", "post", event_post("meet", ledger)),
                 ("alice", "govern", set_param("attend_points", 0, 4)))
    ledger.block(("bob", "attend", attend("alice/meet", "bob")))
    ledger.block(("carol", "attend", attend("alice/meet", "carol")))
    assert ledger.height == 3 and ledger.param("attend_points") == 1000
    ledger.block(("dave", "attend", attend("alice/meet", "dave")))  # height 4: in effect
    assert [ledger.assets(n)[1] > 0 for n in ("bob", "carol", "dave")] == [True, True, False]
    [(_, proposal)] = governance.get_proposals(ledger.layer)
    assert (proposal.status, proposal.approvals) == ("enacted", ["alice"])


def test_a_dry_run_on_a_fresh_layer_reads_the_parameters_from_state():
    """The node's mempool applies a tx on a fresh layer over the tip with no begin_block: the
    parameters the rules keep for the block last begun are not used there."""
    ledger = Ledger(rules_genesis())
    ledger.block(("alice", "post", event_post("meet", ledger)))
    ctx = ledger.context()

    def dry_run_behaviour() -> int:
        dry = Layer(ledger.layer)
        T.apply_tx(dry, ledger.tx(ctx, "bob", "attend", attend("alice/meet", "bob")), ctx, 0,
                   rules=ledger.rules)
        return T.get_account(dry, "bob").behaviour

    assert dry_run_behaviour() > 0
    ledger.layer.writes[schema.param_key("attend_points")] = pack_flat(0)  # as if enacted
    assert dry_run_behaviour() == 0


def test_approvals_below_quorum_change_nothing_and_quorum_enacts():
    ledger = Ledger(rules_genesis(producers=("alice", "bob", "carol", "dave")))  # quorum 3 of 4
    weak, strong = ledger.block(("alice", "govern", set_param("attend_points", 5, 4)),
                                ("alice", "govern", set_param("referral_points", 9, 4)))
    ledger.block(("bob", "govern", {"approve": weak.id}), ("bob", "govern", {"approve": strong.id}))
    ledger.block(("carol", "govern", {"approve": strong.id}))
    assert governance.get_proposal(ledger.layer, weak.id).status == "pending"
    assert governance.get_proposal(ledger.layer, strong.id).status == "approved"
    ledger.until(4)
    assert ledger.param("attend_points") == 1000 and ledger.param("referral_points") == 9
    assert governance.compute_status(governance.get_proposal(ledger.layer, weak.id), 5) == "expired"
    assert ledger.reject("carol", "govern", {"approve": weak.id}).code == "proposal_closed"


def test_a_non_producers_approval_or_proposal_is_rejected():
    ledger = Ledger(rules_genesis(producers=("alice", "bob")))
    [proposal] = ledger.block(("alice", "govern", set_param("attend_points", 5, 9)))
    err = ledger.reject("erin", "govern", {"approve": proposal.id})
    assert (err.code, err.status) == ("not_producer", 403)
    assert ledger.reject("erin", "govern", set_param("attend_points", 5, 9)).code == "not_producer"
    assert governance.get_proposal(ledger.layer, proposal.id).approvals == ["alice"]


def test_the_producers_scheduled_for_the_block_govern_not_a_tally_of_approvals():
    """Office is the slot's schedule, which consensus passes in the block context: approval in
    state alone puts no one in office (it may never be elected: see consensus.schedule)."""
    ledger = Ledger(rules_genesis())
    ledger.block(("erin", "register_producer", {"node_key": node_keypair("erin").public_key, "url": ""}))
    ledger.block(("bob", "vote", {"producer": "erin", "approve": True}))
    assert ledger.reject("erin", "govern", set_param("attend_points", 5, 9)).code == "not_producer"
    ctx = dataclasses.replace(ledger.context(), producers=("erin",))
    T.apply_tx(Layer(ledger.layer), ledger.tx(ctx, "erin", "govern", set_param("attend_points", 5, 9)),
               ctx, 0, rules=ledger.rules)
    with pytest.raises(InvalidTx) as e:
        T.apply_tx(Layer(ledger.layer), ledger.tx(ctx, "alice", "govern", set_param("attend_points", 5, 9)),
                   ctx, 0, rules=ledger.rules)
    assert e.value.code == "not_producer"


@pytest.mark.parametrize("name,value", [
    ("issuance_per_block", 2**63 - 1),  # would overflow the pools within blocks
    ("attend_points", 10**14),  # one self-ticketed event would pay a fortune
    ("payout_budget_per_round", 0),
    ("max_votes_per_post", 10_000),  # a payout beyond the round's gas
    ("content_pool_bps", 10_001),
    ("content_pool_bps", 6000),  # with the other two pools' 5000: more than all issuance
    ("no_such_param", 1),
])
def test_a_parameter_outside_its_range_is_refused_when_proposed(name, value):
    ledger = Ledger(rules_genesis())
    err = ledger.reject("alice", "govern", set_param(name, value, 9))
    assert (err.code, err.status) == ("invalid_proposal", 400)
    assert name in err.message


def test_proposals_each_in_range_that_together_break_a_bound_are_refused_at_enactment():
    ledger = Ledger(rules_genesis())  # pools 5000 + 2500 + 2500
    ledger.block(("alice", "govern", set_param("relationship_pool_bps", 0, 3)))
    ledger.until(3)  # 5000 + 2500 + 0: room for 2500 more, which each of two proposals takes
    first, second = ledger.block(("alice", "govern", set_param("content_pool_bps", 7500, 6)),
                                 ("alice", "govern", set_param("behaviour_pool_bps", 5000, 6)))
    ledger.until(6)
    assert governance.get_proposal(ledger.layer, first.id).status == "enacted"
    assert governance.get_proposal(ledger.layer, second.id).status == "refused"
    assert (ledger.param("content_pool_bps"), ledger.param("behaviour_pool_bps")) == (7500, 2500)


def test_genesis_refuses_parameters_outside_their_ranges():
    with pytest.raises(ValueError, match="attend_points"):
        T.genesis_writes(rules_genesis(attend_points=10**14))
    assert set(R.PARAM_RANGES) == set(R.GENESIS_PARAMS)
    assert R.check_params(R.GENESIS_PARAMS) is None


def test_pools_saturate_instead_of_overflowing():
    ledger = Ledger(rules_genesis(issuance_per_block=R.PARAM_RANGES["issuance_per_block"][1]))
    ledger.layer.writes[schema.pool_key("content")] = pack_flat(2**63 - 10)
    ledger.block()
    assert R.get_pool(ledger.layer, "content") == 2**63 - 1


VALID_UPGRADE = HOOKS + "def on_post():\n    pass\n"


@pytest.mark.parametrize("body,code", [
    (set_param("attend_points", 5, 1), "invalid_proposal"),  # effective height not ahead
    (upgrade_code(VALID_UPGRADE.encode(), 9), "invalid_proposal"),  # source is not bytecode
    (upgrade_code(compile_source(VALID_UPGRADE)[:-1], 9), "invalid_proposal"),  # truncated
    (upgrade(HOOKS, 9), "invalid_proposal"),  # a hook is missing
    (upgrade(HOOKS + "def on_post(x):\n    pass\n", 9), "invalid_proposal"),  # wrong arity
    ({"approve": bytes(32)}, "unknown_proposal"),
], ids=["past", "source", "truncated", "missing_hook", "arity", "unknown"])
def test_bad_govern_txs_are_rejected(body, code):
    ledger = Ledger(rules_genesis(producers=("alice", "bob", "carol")))
    assert ledger.reject("alice", "govern", body).code == code


def test_an_upgrade_with_valid_bytecode_is_enacted_as_sent():
    ledger = Ledger(rules_genesis())
    ledger.block(("alice", "govern", upgrade(VALID_UPGRADE, 2)))
    ledger.block(("alice", "govern", upgrade(default_rules_source(), 3)))
    assert R.get_code_hash(ledger.layer) == code_hash(compile_source(VALID_UPGRADE))
    ledger.until(3)
    assert R.get_code_hash(ledger.layer) == default_rules_hash()
    assert list(ledger.layer.scan(schema.PROPOSAL_CODE)) == []  # enacted code is kept once


def test_approving_twice_is_rejected():
    ledger = Ledger(rules_genesis(producers=("alice", "bob", "carol")))
    [proposal] = ledger.block(("alice", "govern", set_param("attend_points", 5, 9)))
    assert ledger.reject("alice", "govern", {"approve": proposal.id}).code == "already_approved"


# ---------------------------------------------------------------------------------- chain
def test_chain_builds_and_imports_blocks_with_the_rules():
    """Chain.build_block and apply_block (a second node's add_block) run the same block steps."""
    g = make_genesis()
    producer, follower = Chain(MemoryKV(), g, ContractRules()), Chain(MemoryKV(), g, ContractRules())
    key = node_keypair("alice")
    for slot in range(1, 22):
        ts = g.slot_start_ms(slot)
        txs = [make_tx("bob", "post", post(f"p{slot}"), expires_at=ts + 30_000),
               make_tx("carol", "vote", {"post": f"bob/p{slot}", "weight": 5000}, expires_at=ts + 30_000)]
        block, layer, rejected = producer.build_block(key, "alice", slot, txs)
        assert rejected == []
        for chain in (producer, follower):
            node = chain.add_block(block, None, own_layer=layer if chain is producer else None)
            chain.add_vote(Vote.create(key, CHAIN_ID, node.id, node.height, node.slot, "alice"))
    assert producer.final.header.state_root == follower.final.header.state_root
    assert R.get_last_round(follower.final.layer)["height"] == 20
    assert T.get_account(follower.final.layer, "carol").behaviour > 0


# ---------------------------------------------------------------------------------- determinism
MEMBER = st.sampled_from(NAMES)
OP = st.one_of(
    st.tuples(st.just("post"), MEMBER, st.integers(0, 2)),
    st.tuples(st.just("vote"), MEMBER, MEMBER, st.integers(0, 2), st.integers(-10000, 10000)),
    st.tuples(st.just("attend"), MEMBER, MEMBER),
    st.tuples(st.just("refer"), MEMBER, st.integers(0, 1)),
    st.tuples(st.just("newcomer_posts"), MEMBER, st.integers(0, 1)))
BLOCKS = st.lists(st.tuples(st.lists(OP, max_size=8), st.sampled_from([BLOCK_MS, BLOCK_MS, WINDOW])),
                  min_size=1, max_size=12)


def newcomer(referrer: str, k: int) -> str:
    return f"new-{referrer}-{k}"


def op_tx(op, ts: int, salt: int) -> Tx:
    kind, sender = op[0], op[1]
    if kind == "post":
        body = post(f"p{op[2]}")
    elif kind == "vote":
        body = {"post": f"{op[2]}/p{op[3]}", "weight": op[4]}
    elif kind == "attend":
        body = attend(f"{op[2]}/ev", sender)
    elif kind == "refer":
        body = {"new_account": newcomer(sender, op[2]), "pubkey": keypair(newcomer(sender, op[2])).public_key}
    else:
        kind, sender, body = "post", newcomer(sender, op[2]), post("hi")
    return make_tx(sender, kind, body, expires_at=ts + 30_000, salt=salt)


@given(BLOCKS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_two_independent_chains_over_the_same_txs_reach_the_same_state_root(blocks):
    g = rules_genesis()
    a, b, follower = Ledger(g), Ledger(g), Ledger(g)
    first = a.context()
    event = {"capacity": 100, "ends_at": first.timestamp_ms + 10**7, "starts_at": first.timestamp_ms}
    opening = [make_tx(n, "post", post(permlink, **extra), expires_at=first.timestamp_ms + 30_000)
               for n in NAMES for permlink, extra in (("ev", {"event": event}), ("p0", {}))]
    for i, (ops, after_ms) in enumerate([([], BLOCK_MS)] + blocks):
        ctx = a.context(after_ms)
        txs = opening if i == 0 else [op_tx(op, ctx.timestamp_ms, j) for j, op in enumerate(ops)]
        block_a = a.build(txs, ctx, skip_invalid=True)
        block_b = b.build(txs, b.context(after_ms), skip_invalid=True)
        assert block_a.header.state_root == block_b.header.state_root
        a.apply(block_a)
        b.apply(block_b)
        follower.apply(block_a)
    assert a.root == b.root == follower.root
    assert list(a.layer.scan(b"v1/s/")) == list(b.layer.scan(b"v1/s/"))
