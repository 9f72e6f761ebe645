"""Bandwidth (state.allowance) through the real transition: a member with dust stake cannot flood
posts or referrals beyond its allowance, an honest member's heavy day passes untouched, and the
allowance regenerates linearly with block time exactly as the documented formula says."""
import dataclasses
import json
import time

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import InvalidTx
from core.genesis import DAY_MS, ChainParams, Genesis
from core.types import MAX_TX_BYTES
from node.config import NodeConfig
from node.keystore import write_key_file
from node.service import NodeService
from state import allowance, records
from state import transition as T
from state.kv import MemoryKV
from state.records import Account
from state.rules import GENESIS_PARAMS
from tests.conftest import NOW_MS, TEST_PARAMS, World, keypair, make_genesis, make_tx, node_keypair, post_body

P = ChainParams()  # the real chain's bandwidth parameters
GENESIS = make_genesis(dataclasses.replace(TEST_PARAMS, bandwidth_window_ms=P.bandwidth_window_ms))
BIG_TEXT = "x" * 8000  # a post near the 8 KiB body limit
WELCOME = 10_000  # 10 CP: what a referrer gives a newcomer, who stakes it


class Day(World):
    """A World whose blocks advance in time, so bandwidth regenerates."""

    def next_block(self, ms: int) -> None:
        self.ctx = T.make_context(self.genesis, self.ctx.height + 1, self.ctx.slot + 1,
                                  self.ctx.timestamp_ms + ms)
        T.begin_block(self.layer, self.ctx)

    def tx(self, sender, kind, body, **kw):
        kw.setdefault("expires_at", self.ctx.timestamp_ms + 30_000)
        return super().tx(sender, kind, body, **kw)

    def join(self, name: str, welcome: int) -> None:
        """alice refers `name` and gives it `welcome`, which it stakes (the referral path)."""
        self.do("alice", "refer", {"new_account": name, "pubkey": keypair(name).public_key})
        if welcome:
            self.do("alice", "transfer", {"to": name, "amount": welcome})
            self.stake_tx = self.do(name, "stake", {"amount": welcome})

    def maximum(self, name: str) -> int:
        a = self.account(name)
        return allowance.compute_maximum(a.stake, self.ctx.bandwidth_floor, self.ctx.bandwidth_per_cp)

    def available(self, name: str) -> int:
        return allowance.compute_available(self.account(name), self.ctx.timestamp_ms, self.maximum(name),
                                           self.ctx.bandwidth_window_ms)

    def flood(self, sender: str, make_body, kind: str, limit: int = 10_000) -> tuple[int, InvalidTx]:
        """Send txs until one is refused; (how many were applied, the refusal)."""
        for i in range(limit):
            tx = self.tx(sender, kind, make_body(i))
            before = dict(self.layer.writes)
            try:
                self.apply(tx)
            except InvalidTx as e:
                assert self.layer.writes == before  # a refused tx changes nothing
                return i, e
        raise AssertionError(f"{limit} txs and no refusal")


def cost(tx) -> int:
    return P.tx_base_bandwidth + len(tx.raw)


@pytest.fixture
def day() -> Day:
    return Day(GENESIS)


def test_the_stated_numbers():
    """The figures docs/protocol.md and core/genesis.py state."""
    vote = World(GENESIS).tx("bob", "vote", {"post": "alice/some-post-name", "weight": 10000})
    post = World(GENESIS).tx("bob", "post", post_body("a-post-name", body=BIG_TEXT))
    transfer = World(GENESIS).tx("bob", "transfer", {"to": "carol", "amount": 1000})
    heavy = 50 * cost(vote) + 3 * cost(post) + 10 * cost(transfer)
    assert 60_000 < heavy < 68_000  # "~64,000"
    newcomer = allowance.compute_maximum(WELCOME, P.bandwidth_floor, P.bandwidth_per_cp)
    assert newcomer == 250_000 > 3 * heavy  # a welcomed newcomer has three heavy days in hand
    assert P.bandwidth_floor // cost(vote) == 78 and P.bandwidth_floor // cost(post) == 5


def test_a_dust_staked_member_cannot_flood_posts(day):
    day.join("spammer", 1)  # 0.001 CP staked
    assert day.maximum("spammer") == P.bandwidth_floor + 1 * P.bandwidth_per_cp // 1000 == 50_020
    start = day.available("spammer")  # its stake tx was paid from the floor
    one = day.tx("spammer", "post", post_body("sizing", body=BIG_TEXT))
    sent, refusal = day.flood("spammer", lambda i: post_body(f"spam-{i:05d}", body=BIG_TEXT), "post")
    assert sent == start // cost(one) == 5  # five 8 KiB posts a day, not 1,100 a block
    assert (refusal.code, refusal.status) == ("insufficient_bandwidth", 429)
    # a day later it has its allowance back, no more
    day.next_block(DAY_MS)
    again, _ = day.flood("spammer", lambda i: post_body(f"more-{i:05d}", body=BIG_TEXT), "post")
    assert again == 5


def test_a_dust_staked_member_cannot_flood_referrals(day):
    day.join("spammer", 1)
    day.do("alice", "transfer", {"to": "spammer", "amount": 100 * GENESIS_PARAMS["referral_fee"]})
    sent, refusal = day.flood("spammer", lambda i: {"new_account": f"sybil-{i:05d}",
                                                    "pubkey": keypair(f"s{i}").public_key}, "refer")
    one = day.tx("spammer", "refer", {"new_account": "sybil-99999", "pubkey": keypair("x").public_key})
    # (the fees, a few CP each, are not what stops it: it holds a hundred)
    assert sent == (50_020 - cost(day.stake_tx)) // cost(one) and 70 <= sent <= 80
    assert refusal.code == "insufficient_bandwidth"
    assert T.get_account(day.layer, f"sybil-{sent:05d}") is None


def test_a_member_with_no_stake_can_still_act_a_little(day):
    day.join("newbie", 0)
    assert day.maximum("newbie") == P.bandwidth_floor
    day.do("newbie", "post", post_body("hello", body=BIG_TEXT))  # even the largest tx fits the floor
    day.do("newbie", "vote", {"post": "newbie/hello", "weight": 100})


def test_an_honest_members_heavy_day_passes_untouched(day):
    """A newcomer on its welcome stake: 50 votes, 3 full posts, 10 transfers, 2 referrals in each
    15 hours, three times in a row: never refused. Staking raises the maximum, not what is held:
    the newcomer starts from its floor, so its first hours are the tightest, and still leave a margin."""
    day.join("honest", WELCOME)
    day.do("alice", "transfer", {"to": "honest", "amount": 50_000})
    day.do("alice", "post", post_body("target", body="short"))
    lowest = day.available("honest")
    for d in range(3):
        for i in range(50):
            day.next_block(DAY_MS // 80)
            day.do("honest", "vote", {"post": "alice/target", "weight": 100 + i + d})
            if i % 17 == 0:
                day.do("honest", "post", post_body(f"d{d}-p{i}", body=BIG_TEXT))
            if i % 5 == 0:
                day.do("honest", "transfer", {"to": "bob", "amount": 10})
            if i % 25 == 0:
                day.do("honest", "refer", {"new_account": f"friend-{d}-{i}",
                                           "pubkey": keypair(f"f{d}{i}").public_key})
            lowest = min(lowest, day.available("honest"))
    assert lowest > 40_000
    assert day.available("honest") > day.maximum("honest") // 2  # by then it is well above the floor


def test_regeneration_is_linear_over_the_window(day):
    day.join("spammer", 1)
    day.flood("spammer", lambda i: post_body(f"s-{i:05d}", body=BIG_TEXT), "post")
    left, maximum = day.account("spammer").bandwidth, day.maximum("spammer")
    assert left < 9_000
    day.next_block(DAY_MS // 4)
    assert day.available("spammer") == left + maximum * (DAY_MS // 4) // DAY_MS
    day.next_block(DAY_MS // 4)
    assert day.available("spammer") == left + maximum * (DAY_MS // 2) // DAY_MS
    day.next_block(DAY_MS)
    assert day.available("spammer") == maximum  # capped at the maximum
    # the refusal says when enough is back, and it is exactly then
    day.flood("spammer", lambda i: post_body(f"t-{i:05d}", body=BIG_TEXT), "post")
    with pytest.raises(InvalidTx) as e:
        day.do("spammer", "post", post_body("exact", body=BIG_TEXT))
    wait = int(e.value.message.split("regenerates in ")[1].split(" ms")[0])
    day.next_block(wait - 1)
    with pytest.raises(InvalidTx):  # (a new tx of the same size: the first has expired)
        day.do("spammer", "post", post_body("exact", body=BIG_TEXT))
    day.next_block(1)
    day.do("spammer", "post", post_body("exact", body=BIG_TEXT))


def test_staking_raises_the_allowance(day):
    day.join("grower", 1)
    day.flood("grower", lambda i: post_body(f"g-{i:05d}", body=BIG_TEXT), "post")
    day.do("alice", "transfer", {"to": "grower", "amount": 500_000})
    day.next_block(DAY_MS // 10)
    day.do("grower", "stake", {"amount": 400_000})  # 400 CP
    assert day.maximum("grower") == P.bandwidth_floor + 400_001 * P.bandwidth_per_cp // 1000 == 8_050_020
    day.next_block(DAY_MS // 10)
    assert day.available("grower") > 800_000


def test_old_account_records_decode_with_a_full_allowance(day):
    old = msgpack.unpackb(records.encode(day.account("bob")))[:-2]  # a record before bandwidth
    bob = records.decode(Account, msgpack.packb(old))
    assert (bob.bandwidth, bob.bandwidth_ms) == (0, 0)
    assert allowance.compute_available(bob, NOW_MS, 1234, DAY_MS) == 1234


def test_a_genesis_whose_floor_cannot_carry_the_largest_tx_is_refused():
    doc = make_genesis().to_json()
    doc["params"]["bandwidth_floor"] = P.tx_base_bandwidth + MAX_TX_BYTES - 1
    with pytest.raises(ValueError, match="bandwidth_floor"):
        Genesis.from_json(doc)
    doc["params"]["bandwidth_per_cp"] = -1
    with pytest.raises(ValueError, match="bandwidth"):
        Genesis.from_json(doc)


# a random schedule of (ms until the next block, post body size) from one dust-staked sender
schedules = st.lists(st.tuples(st.integers(0, DAY_MS // 3), st.integers(1, 8000)), min_size=1, max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schedules)
def test_the_transition_agrees_with_the_formula(schedule):
    """A reference model of the documented formula decides every tx as the transition does, and
    the stored allowance stays within 0..maximum."""
    day = Day(GENESIS)
    day.join("spammer", 7)
    maximum = P.bandwidth_floor + 7 * P.bandwidth_per_cp // 1000
    joined = day.account("spammer")  # its stake tx was its first
    left, at = joined.bandwidth, joined.bandwidth_ms
    for i, (wait, size) in enumerate(schedule):
        day.next_block(wait)
        now = day.ctx.timestamp_ms
        tx = day.tx("spammer", "post", post_body(f"p{i}", body="y" * size))
        have = min(maximum, left + maximum * (now - at) // DAY_MS)
        expected = have >= cost(tx)
        try:
            day.apply(tx)
            applied = True
        except InvalidTx as e:
            assert e.code == "insufficient_bandwidth"
            applied = False
        assert applied == expected
        if applied:
            left, at = have - cost(tx), now
        a = day.account("spammer")
        assert 0 <= a.bandwidth <= maximum
        assert (a.bandwidth, a.bandwidth_ms) == (left, at)


def test_the_dev_chain_refills_in_minutes():
    from core.devnet import DEV_BANDWIDTH_WINDOW_MS, make_devnet
    doc, _ = make_devnet(3, 1, "dev-test", 500, NOW_MS)
    assert doc["params"]["bandwidth_window_ms"] == DEV_BANDWIDTH_WINDOW_MS == 600_000


def test_an_account_never_charged_is_full_even_on_a_chain_that_started_at_time_zero():
    """`bandwidth_ms` 0 means never charged, not 'charged at the epoch': a chain whose genesis is
    at 0 ms (the consensus simulation's) must not find every account nearly empty."""
    account = Account(b"k" * 32, stake=100)
    assert allowance.compute_available(account, 4_000, 52_000, 86_400_000) == 52_000


def test_a_mempool_admits_no_more_of_a_senders_txs_than_its_allowance_pays_for(tmp_path):
    """Admission charges nothing (the tip's state does not change), so without counting what the
    sender has pending, a stakeless member could queue thousands of txs of which blocks apply a
    few dozen, and every producer would try the rest in vain."""
    params = dataclasses.replace(TEST_PARAMS, bandwidth_floor=20_000)
    g = make_genesis(params)
    g = dataclasses.replace(g, members=tuple(dataclasses.replace(m, stake=0) if m.name == "dave" else m
                                             for m in g.members))
    (tmp_path / "genesis.json").write_text(json.dumps(g.to_json()))
    write_key_file(tmp_path / "key.json", "alice", node_keypair("alice"))
    service = NodeService(NodeConfig(genesis=str(tmp_path / "genesis.json"), key_file=str(tmp_path / "key.json")),
                          kv=MemoryKV())
    admitted, refused = 0, None
    for i in range(200):
        try:
            service.submit(make_tx("dave", "transfer", {"to": "bob", "amount": 1}, salt=i,
                                   expires_at=_soon()))
            admitted += 1
        except InvalidTx as e:
            refused = e
            break
    one = cost(make_tx("dave", "transfer", {"to": "bob", "amount": 1}, salt=0, expires_at=_soon()))
    assert admitted == 20_000 // one and (refused.code, refused.status) == ("insufficient_bandwidth", 429)
    assert "pending" in refused.message


def _soon() -> int:
    return time.time_ns() // 1_000_000 + 600_000
