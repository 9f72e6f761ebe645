"""Stake in time (state.staking): new stake approves producers only after the activation delay,
unstaked CP is locked for the unstake delay, and no stake approves or moves twice meanwhile."""
import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import InvalidTx
from state import schema, staking
from state import transition as T
from state.view import Layer
from state.rules import get_pool
from tests.conftest import BALANCE, MEMBERS, NOW_MS, STAKE, TEST_PARAMS, World, make_genesis, node_keypair
from tests.test_transition_blocks import build_txs, tx_sequences

ACTIVATION, UNBONDING = 3_000, 5_000
GENESIS = make_genesis(dataclasses.replace(TEST_PARAMS, stake_activation_delay_ms=ACTIVATION,
                                           unstake_delay_ms=UNBONDING))


class Blocks(World):
    """A World whose blocks advance in time: each `next_block` starts a block `ms` later."""

    def next_block(self, ms: int) -> None:
        self.ctx = T.make_context(self.genesis, self.ctx.height + 1, self.ctx.slot + 1, self.ctx.timestamp_ms + ms)
        T.begin_block(self.layer, self.ctx)


@pytest.fixture
def chain() -> Blocks:
    c = Blocks(GENESIS)
    c.do("dave", "register_producer",
         {"node_key": node_keypair("dave").public_key, "url": "http://dave"})
    return c


def approval(c: Blocks, name: str = "dave") -> int:
    return c.producer(name).approval


def test_new_stake_approves_only_after_the_activation_delay(chain):
    chain.do("bob", "vote", {"producer": "dave", "approve": True})
    assert approval(chain) == STAKE  # founders' genesis stake is active
    chain.do("bob", "stake", {"amount": 700})
    bob = chain.account("bob")
    assert (bob.stake, bob.maturing, bob.balance, approval(chain)) == (STAKE + 700, 700, BALANCE - 700, STAKE)
    chain.next_block(ACTIVATION - 1)
    assert approval(chain) == STAKE
    chain.next_block(1)
    assert (chain.account("bob").maturing, approval(chain)) == (0, STAKE + 700)
    assert chain.layer.get(schema.STAKE_NEXT_DUE) is None and not list(chain.layer.scan(schema.STAKE_DUE))


def test_approving_with_maturing_stake_adds_only_the_active_part(chain):
    chain.do("carol", "stake", {"amount": 500})
    chain.do("carol", "vote", {"producer": "dave", "approve": True})
    assert approval(chain) == STAKE
    chain.next_block(ACTIVATION)
    assert approval(chain) == STAKE + 500
    chain.do("carol", "vote", {"producer": "dave", "approve": False})
    assert approval(chain) == 0


def test_unstaked_cp_stops_approving_at_once_and_is_locked_for_the_delay(chain):
    chain.do("bob", "vote", {"producer": "dave", "approve": True})
    chain.do("bob", "transfer", {"to": "carol", "amount": BALANCE})  # bob keeps nothing spendable
    chain.do("bob", "unstake", {"amount": STAKE})
    bob = chain.account("bob")
    assert (bob.stake, bob.unbonding, bob.balance, approval(chain)) == (0, STAKE, 0, 0)
    # the same CP cannot move to another account and approve again while it is locked
    with pytest.raises(InvalidTx) as e:
        chain.do("bob", "transfer", {"to": "carol", "amount": 1})
    assert e.value.code == "insufficient_balance"
    chain.next_block(UNBONDING)
    assert (chain.account("bob").balance, chain.account("bob").unbonding) == (STAKE, 0)


def test_maturing_stake_cannot_be_unstaked(chain):
    chain.do("bob", "unstake", {"amount": STAKE})  # all active stake out
    chain.do("bob", "stake", {"amount": 900})
    with pytest.raises(InvalidTx) as e:
        chain.do("bob", "unstake", {"amount": 1})
    assert e.value.code == "insufficient_stake" and "maturing" in e.value.message
    chain.next_block(ACTIVATION)
    chain.do("bob", "unstake", {"amount": 900})


def test_one_stake_passed_through_accounts_approves_once_within_the_delays(chain):
    """The abuse of the issue: stake, approve, unstake, hand the CP on, repeat in a block."""
    names = [n for n in MEMBERS if n != "dave"]
    for name in names:
        chain.do(name, "transfer", {"to": "dave", "amount": BALANCE})  # only one stake to pass on
    for name in names:
        chain.do(name, "vote", {"producer": "dave", "approve": True})
    carried = approval(chain)
    first, rest = names[0], names[1:]
    chain.do(first, "unstake", {"amount": STAKE})
    for name in rest:  # the next account would need the unstaked CP: it is not spendable yet
        with pytest.raises(InvalidTx):
            chain.do(first, "transfer", {"to": name, "amount": STAKE})
    assert approval(chain) == carried - STAKE


def test_a_block_applies_at_most_max_due_per_block_entries_in_due_order(chain, monkeypatch):
    monkeypatch.setattr(staking, "MAX_DUE_PER_BLOCK", 2)
    for i, name in enumerate(["alice", "bob", "carol"]):
        chain.do(name, "stake", {"amount": 10 + i})
    chain.next_block(ACTIVATION)
    assert [chain.account(n).maturing for n in ("alice", "bob", "carol")] == [0, 0, 12]
    chain.next_block(1)
    assert chain.account("carol").maturing == 0


def run_in_blocks(txs, per_block: int, ms: int) -> Blocks:
    c = Blocks(GENESIS)
    for i, tx in enumerate(txs):
        if i and i % per_block == 0:
            c.next_block(ms)
        try:
            T.apply_tx(c.layer, tx, c.ctx, i)
        except InvalidTx:
            pass
    return c


@given(tx_sequences, st.integers(1, 6), st.sampled_from([400, 1_000, 2_500]))
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_supply_is_conserved_and_approvals_equal_active_stake_at_every_point_in_time(seq, per_block, ms):
    c = run_in_blocks(build_txs(*seq), per_block, ms)
    for settle in (0, ACTIVATION + UNBONDING):
        if settle:
            c.next_block(settle)
        accounts = {k[len(schema.ACCOUNT):].decode(): T.get_account(c.layer, k[len(schema.ACCOUNT):].decode())
                    for k, _ in c.layer.scan(schema.ACCOUNT)}
        fees = get_pool(c.layer, "relationship")  # referral fees: the only CP leaving accounts here
        assert (sum(a.balance + a.stake + a.unbonding for a in accounts.values()) + fees
                == len(MEMBERS) * (BALANCE + STAKE))
        assert all(min(a.balance, a.maturing, a.unbonding, a.active_stake) >= 0 for a in accounts.values())
        for k, _ in c.layer.scan(schema.PRODUCER):
            name = k[len(schema.PRODUCER):].decode()
            expected = sum(a.active_stake for a in accounts.values() if name in a.approvals)
            assert T.get_producer(c.layer, name).approval == expected
    assert all(a.maturing == 0 and a.unbonding == 0 for a in accounts.values())
    assert c.layer.get(schema.STAKE_NEXT_DUE) is None


def test_the_dry_run_layer_is_not_touched_by_a_block_with_nothing_due():
    c = Blocks(GENESIS)
    layer = Layer(c.layer)
    T.begin_block(layer, T.make_context(GENESIS, 2, 2, NOW_MS + 10))
    assert not any(k.startswith(schema.STAKE_DUE) or k == schema.STAKE_NEXT_DUE for k in layer.writes)
