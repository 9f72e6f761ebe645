"""The default rules (v2), defence by defence, on an in-memory host. Expected amounts are written
as the rules' own formulas over the numbers of each case, so each test also documents a rule."""
import pytest

from contracts import DictHost, VMFault, run
from contracts.bench import bench_vm
from contracts.rules import (DEFAULT_PARAMS, HOOK_FOR_KIND, HOOK_GAS_LIMITS, PARAM_RANGES,
                             load_default_rules)

P = DEFAULT_PARAMS
DAY = 86_400_000
HOUR = 3_600_000
WINDOW = P["payout_window_ms"]
POOL = 1_000_000
CAP = POOL * P["max_payout_bps"] // 10_000      # one payment takes at most 10% of a pool
STAKE = 1_000_000


def curve(score, s=P["curve_s"]):
    return score * (score + 2 * s) // (score + 4 * s)


class Community:
    """Drives the rules hooks the way the chain does: set tx and block, call the hook."""

    def __init__(self, **params):
        self.code = load_default_rules()
        self.host = DictHost(params=dict(P, **params), pools={"content": POOL, "behaviour": POOL,
                                                               "relationship": POOL})
        self.height = 0

    def member(self, name, stake=STAKE):
        self.host.add_account(name, stake=stake)

    def _call(self, hook, at, args=()):
        self.height += 1
        self.host.set_block(self.height, at)
        return run(self.code, hook, list(args), self.host, HOOK_GAS_LIMITS[hook])

    def tx(self, kind, sender, body, at=0):
        self.host.set_tx(kind, sender, body)
        return self._call(HOOK_FOR_KIND[kind], at)

    def post(self, author, permlink, at=0, event=None):
        body = {"permlink": permlink, "title": "", "body": "", "tags": []}
        if event is not None:
            body["event"] = {"capacity": 100, "ends_at": event[1], "starts_at": event[0]}
        return self.tx("post", author, body, at)

    def vote(self, voter, ref, weight, at=0):
        return self.tx("vote", voter, {"post": ref, "weight": weight}, at)

    def attend(self, member, event, at=0):
        return self.tx("attend", member, {"event": event, "ticket": bytes(64)}, at)

    def refer(self, referrer, newcomer, at=0, stake=STAKE):
        self.member(newcomer, stake)
        return self.tx("refer", referrer, {"new_account": newcomer, "pubkey": bytes(32)}, at)

    def round(self, at, number=1):
        return self._call("on_round", at, [number])

    def earned(self, name, dimension):
        return self.host.accounts[name][dimension]

    def stored(self, key):
        return self.host.storage_get(key.encode())


@pytest.fixture
def c():
    community = Community()
    for name in ("alice", "bob", "carol", "dave"):
        community.member(name)
    return community


# ---------------------------------------------------------------- content
def test_a_post_is_paid_after_its_window_as_a_capped_share_of_the_pool(c):
    c.post("alice", "p")
    c.vote("bob", "alice/p", 10_000)
    rshares = STAKE * (10_000 // 2) // 10_000              # a full vote spends half the power
    assert c.stored("post:alice/p")["rshares"] == [rshares]
    assert c.round(WINDOW - 1).return_value == 0
    result = c.round(WINDOW)
    assert result.return_value == 1
    # the vote's claim decayed out of recent claims a week ago: the post alone would take the
    # whole pool, and takes the cap; curators share 25%
    assert result.awards == (("bob", "content", CAP // 4), ("alice", "content", CAP - CAP // 4))
    assert c.stored("post:alice/p") is None
    assert c.round(2 * WINDOW).return_value == 0


def test_posts_share_the_pool_by_their_curved_scores():
    c = Community(payout_window_ms=1000, upvote_lockout_ms=0, max_payout_bps=10_000)
    for name, stake in (("alice", STAKE), ("bob", STAKE), ("carol", 3 * STAKE)):
        c.member(name, stake)
    c.post("alice", "small")
    c.post("alice", "large")
    c.vote("bob", "alice/small", 10_000)
    c.vote("carol", "alice/large", 10_000)
    small, large = STAKE // 2, 3 * STAKE // 2
    recent = (small + large) * (DAY - 1000) // DAY         # upvotes decay linearly for a day
    first = POOL * curve(small) // recent
    second = (POOL - first) * curve(large) // recent
    result = c.round(1000)
    assert sum(a for _, _, a in result.awards[:2]) == first
    assert sum(a for _, _, a in result.awards[2:]) == second
    # the curve: a score 3x larger claims more than 3x
    assert curve(large) > 3 * curve(small)


def test_the_more_one_votes_the_less_each_vote_weighs(c):
    for i in range(4):
        c.post("alice", f"p{i}")
        c.vote("bob", f"alice/p{i}", 10_000)
    spent = [c.stored(f"post:alice/p{i}")["rshares"][0] for i in range(4)]
    assert spent == [500_000, 250_000, 125_000, 62_500]
    # power refills linearly: a day is a fifth of the way
    c.post("carol", "q")
    c.vote("bob", "carol/q", 10_000, at=DAY)
    assert c.stored("member:bob")["power"] == (625 + 2000) - (625 + 2000) // 2


def test_self_votes_are_capped_in_weight_and_per_day_and_earn_no_curation(c):
    c.post("alice", "p")
    c.post("alice", "q")
    c.vote("alice", "alice/p", 10_000)
    c.vote("alice", "alice/q", 10_000)               # a second self-vote today does not count
    assert c.stored("post:alice/p")["rshares"] == [STAKE * (10_000 * 1000 // 10_000 // 2) // 10_000]
    assert c.stored("post:alice/q")["voters"] == []
    assert c.earned("alice", "behaviour") == 0       # nor does a self-vote pay participation
    c.post("alice", "r", at=DAY)
    c.vote("alice", "alice/r", 10_000, at=DAY)       # the next day it does
    assert c.stored("post:alice/r")["voters"] == ["alice"]
    assert c.round(WINDOW).awards == (("alice", "content", CAP),)


def test_downvotes_spend_a_separate_free_power(c):
    c.post("alice", "p")
    c.vote("bob", "alice/p", 10_000)
    c.vote("carol", "alice/p", -10_000)
    down = 10_000 * P["downvote_power_bps"] // 10_000 // 2
    assert c.stored("post:alice/p")["score"] == STAKE // 2 - STAKE * down // 10_000
    member = c.stored("member:carol")
    assert member["power"] == 10_000 and member["down"] == 2500 - down


def test_an_upvote_for_a_recent_upvoter_counts_less_vote_trading(c):
    c.post("alice", "p")
    c.post("bob", "q")
    c.vote("bob", "alice/p", 10_000)                 # bob is now one of alice's fans
    c.vote("alice", "bob/q", 10_000)                 # so alice's vote back counts 25%
    full = STAKE * (10_000 // 2) // 10_000
    assert c.stored("post:bob/q")["rshares"] == [full * P["reciprocal_vote_bps"] // 10_000]
    assert c.stored("upvoted:bob>alice") == c.stored("upvoted:alice>bob") == 0
    c.post("bob", "later", at=P["reciprocity_ms"])
    c.vote("alice", "bob/later", 10_000, at=P["reciprocity_ms"])  # a week on: it counts fully
    assert c.stored("post:bob/later")["rshares"][0] > full // 2


def test_a_dust_stakes_upvote_counts_but_leaves_no_vote_trading_record(c):
    c.member("dust", stake=P["min_earning_stake"] - 1)
    c.post("alice", "p")
    c.vote("dust", "alice/p", 10_000)
    assert c.stored("post:alice/p")["voters"] == ["dust"]
    assert c.stored("upvoted:dust>alice") is None    # sybils cannot grow state by the pair


def test_a_downvote_can_zero_the_reward(c):
    c.post("alice", "p")
    c.vote("bob", "alice/p", 1_000)
    c.vote("carol", "alice/p", -10_000)
    c.vote("dave", "alice/p", -10_000)
    result = c.round(WINDOW)
    assert result.awards == () and result.events == (("round", {"paid_posts": 1, "rewards": 0,
                                                                 "round": 1}),)


def test_a_second_vote_replaces_the_first(c):
    c.post("alice", "p")
    c.vote("bob", "alice/p", 10_000)
    c.vote("bob", "alice/p", -10_000)
    post = c.stored("post:alice/p")
    assert post["voters"] == ["bob"] and post["curation"] == 0
    assert post["score"] == post["rshares"][0] < 0


def test_a_full_post_drops_its_smallest_vote_and_free_accounts_take_no_place():
    c = Community(max_votes_per_post=2)
    for name, stake in (("alice", STAKE), ("bob", STAKE), ("carol", 2 * STAKE),
                        ("dave", 3 * STAKE), ("free", 0)):
        c.member(name, stake)
    c.post("alice", "p")
    c.vote("free", "alice/p", 10_000)                # no active stake: no rshares, no place
    c.vote("bob", "alice/p", 10_000)
    c.vote("carol", "alice/p", 10_000)
    c.vote("dave", "alice/p", 10_000)                # full: bob's smaller vote goes
    post = c.stored("post:alice/p")
    assert post["voters"] == ["dave", "carol"]
    assert post["score"] == post["curation"] == STAKE + 3 * STAKE // 2
    c.vote("bob", "alice/p", -2_500)                 # smaller than both: does not count
    assert c.stored("post:alice/p")["voters"] == ["dave", "carol"]


def test_upvotes_in_the_lockout_before_payout_do_not_count_downvotes_do(c):
    c.post("alice", "p")
    late = WINDOW - P["upvote_lockout_ms"]
    c.vote("bob", "alice/p", 10_000, at=late)
    c.vote("carol", "alice/p", -10_000, at=late)
    assert c.stored("post:alice/p")["voters"] == ["carol"]


def test_every_matured_post_is_paid_within_the_budget_and_empty_posts_cost_one():
    c = Community(payout_budget_per_round=10, posts_paid_per_day=12)
    c.member("alice")
    c.member("bob")
    for i in range(12):
        c.post("alice", f"p{i}", at=i)
    c.vote("bob", "alice/p0", 10_000)
    assert [c.round(WINDOW + 20).return_value for _ in range(3)] == [9, 3, 0]
    assert all(c.stored(f"post:alice/p{i}") is None for i in range(12))
    assert c.stored("queue") == {"head": 12, "tail": 12}


def test_only_an_authors_first_posts_of_the_day_earn_and_count_votes(c):
    for i in range(P["posts_paid_per_day"] + 1):
        c.post("alice", f"p{i}")
    extra = f"alice/p{P['posts_paid_per_day']}"
    assert c.stored(f"post:{extra}") is None
    c.vote("bob", extra, 10_000)                     # no record: nothing counted, nothing spent
    assert c.stored("member:bob")["power"] == 10_000
    c.post("alice", "tomorrow", at=DAY)
    assert c.stored("post:alice/tomorrow") is not None


def test_a_round_at_the_largest_budget_pays_a_flood_of_posts_within_its_gas():
    """Spam that fills the queue must not stop payouts: a round that faulted (out of gas, too
    many events) would fault again on the same queue head, forever."""
    budget = PARAM_RANGES["payout_budget_per_round"][1]
    c = Community(payout_budget_per_round=budget, posts_paid_per_day=budget)
    author = "a" * 16                                # the longest names cost the most gas
    c.member(author)
    for i in range(budget + 5):                      # the last 5 on the next day
        c.post(author, f"{i:05d}" + "x" * 59, at=DAY * (1 + i // budget))
    result = c.round(2 * DAY + WINDOW)
    assert result.return_value == budget             # (and the memory limit was not reached)
    assert result.gas_used < HOOK_GAS_LIMITS["on_round"] * 3 // 4
    assert c.round(2 * DAY + WINDOW).return_value == 5


def test_a_post_whose_curved_claim_is_zero_is_paid_nothing_and_the_round_goes_on():
    """A score of 1 curves to a claim of 0; with no recent claims left either, the payout must
    not divide by zero (a round that faults would fault again on the same post, forever)."""
    c = Community(min_earning_stake=0)
    c.member("alice")
    c.member("dust", stake=2)                        # a full vote: 2 * 5000 // 10000 = 1 rshare
    c.post("alice", "p")
    c.post("alice", "q")
    c.vote("dust", "alice/p", 10_000)
    assert c.stored("post:alice/p")["score"] == 1 and curve(1) == 0
    result = c.round(WINDOW + DAY)                   # the vote's claim decayed a day ago
    assert result.return_value == 2 and result.awards == ()


def test_members_without_enough_active_stake_earn_nothing(c):
    c.member("small", stake=P["min_earning_stake"] - 1)
    c.post("alice", "p")
    c.vote("small", "alice/p", 10_000)
    assert c.earned("small", "behaviour") == 0
    c.post("alice", "e", event=(0, 2 * HOUR))
    c.attend("small", "alice/e", at=HOUR)
    assert c.earned("small", "behaviour") == 0


# ---------------------------------------------------------------- behaviour
def test_participation_pays_a_first_vote_on_another_tree_once_a_day(c):
    c.post("alice", "p")
    c.post("alice", "q")
    c.vote("bob", "alice/p", 10_000)
    paid = c.earned("bob", "behaviour")
    assert paid == CAP  # the first claim of the pool takes the cap
    c.vote("bob", "alice/q", 10_000)                 # the day's participation is paid
    c.vote("bob", "alice/p", 5_000)                  # and a replaced vote never pays
    assert c.earned("bob", "behaviour") == paid
    c.post("alice", "r", at=DAY)
    c.vote("bob", "alice/r", 10_000, at=DAY)
    assert c.earned("bob", "behaviour") > paid


def test_votes_within_a_referral_tree_pay_no_participation(c):
    c.refer("alice", "kid")
    c.post("alice", "p")
    c.vote("kid", "alice/p", 10_000)
    assert c.earned("kid", "behaviour") == 0
    assert c.stored("member:kid")["root"] == "alice"


def test_attendance_needs_a_real_event_not_ones_own(c):
    c.post("alice", "short", event=(0, HOUR - 1))
    c.post("alice", "long", event=(0, DAY + 1))
    c.post("alice", "ok", event=(0, 2 * HOUR))
    c.attend("bob", "alice/short")
    c.attend("bob", "alice/long")
    c.attend("alice", "alice/ok")                    # a self-ticket
    assert c.earned("bob", "behaviour") == c.earned("alice", "behaviour") == 0
    c.attend("bob", "alice/ok")
    assert c.earned("bob", "behaviour") > 0


def test_attendance_is_capped_per_week_and_halves_per_repeat_of_an_organizer():
    c = Community(claims_decay_ms=HOUR)              # each claim decays before the next
    for name in ("alice", "bob", "carol"):
        c.member(name)
    for i in range(4):
        c.post("alice", f"e{i}", event=(0, 2 * HOUR))
    c.post("carol", "c0", event=(0, 2 * HOUR))
    paid, claims = [], []
    for at, event in ((0, "alice/e0"), (HOUR, "alice/e1"), (2 * HOUR, "carol/c0"),
                      (8 * DAY, "alice/e2"), (8 * DAY + HOUR, "alice/e3")):
        before = c.host.pools["behaviour"]
        c.attend("bob", event, at)
        paid.append(before - c.host.pools["behaviour"])
        claims.append(c.stored("claims")["behaviour"])
    # week 1: two paid, the third is over attends_per_week; week 2: alice's repeats still pay
    assert [p > 0 for p in paid] == [True, True, False, True, True]
    points = P["attend_points"]
    assert claims == [points, points // 2, points // 2, points // 4, points // 8]


def test_an_organizer_pays_at_most_its_weekly_attendances():
    c = Community(organizer_attends_per_week=2)
    c.member("alice")
    c.post("alice", "e", event=(0, 2 * HOUR))
    for name in ("bob", "carol", "dave"):
        c.member(name)
        c.attend(name, "alice/e", at=HOUR)
    assert [c.earned(n, "behaviour") > 0 for n in ("bob", "carol", "dave")] == [True, True, False]


# ---------------------------------------------------------------- relationship
def vouch(c, newcomer, voters, at):
    c.post(newcomer, f"hello-{at}", at)
    for voter in voters:
        c.vote(voter, f"{newcomer}/hello-{at}", 10_000, at)


def test_a_referral_pays_once_other_trees_vouch_and_the_newcomer_has_aged(c):
    c.refer("alice", "newbie")
    vouch(c, "newbie", ("bob", "carol"), at=0)
    assert c.earned("alice", "relationship") == 0
    vouch(c, "newbie", ("dave",), at=1)              # three vouchers, but a day old
    assert c.earned("alice", "relationship") == 0
    c.post("newbie", "week-later", at=P["referral_min_age_ms"])
    assert c.earned("alice", "relationship") == CAP
    c.post("newbie", "again", at=P["referral_min_age_ms"] + 1)
    assert c.earned("alice", "relationship") == CAP  # paid once


def test_a_member_vouches_for_few_newcomers_a_period(c):
    for newcomer in ("n1", "n2"):
        c.refer("alice", newcomer)
        vouch(c, newcomer, ("bob", "carol", "dave"), at=0)
    assert len(c.stored("referral:n1")["vouchers"]) == 3
    assert c.stored("referral:n2")["vouchers"] == []   # each voucher's one vouch went to n1
    c.post("n1", "later", at=P["referral_min_age_ms"])
    c.post("n2", "later", at=P["referral_min_age_ms"])
    assert c.stored("referral:n1") is None and c.stored("referral:n2") is not None


def test_vouchers_of_the_referrers_own_tree_do_not_activate(c):
    c.refer("alice", "newbie")
    for kid in ("k1", "k2", "k3"):
        c.refer("alice", kid)
    vouch(c, "newbie", ("k1", "k2", "k3", "alice"), at=0)
    c.post("newbie", "later", at=P["referral_min_age_ms"])
    assert c.earned("alice", "relationship") == 0
    assert c.stored("referral:newbie")["vouchers"] == []


def test_referrals_are_capped_per_referrer_and_per_tree():
    c = Community(referral_cap_per_period=2, referral_tree_cap_per_period=3, vouches_per_period=9)
    for name in ("alice", "v1", "v2", "v3"):
        c.member(name)
    for i in range(3):
        c.refer("alice", f"a{i}")
    c.refer("a0", "grandkid")                        # alice's tree through a0
    age = P["referral_min_age_ms"]
    for i, newcomer in enumerate(("a0", "a1", "a2", "grandkid")):
        vouch(c, newcomer, ("v1", "v2", "v3"), at=i)
        c.post(newcomer, "later", at=age + 10 * i)
    assert c.earned("alice", "relationship") > 0 and c.earned("a0", "relationship") > 0
    capped = [data["member"] for name, data in c.host.events if name == "referral_capped"]
    assert capped == ["a2"]                          # alice's third: over her cap of 2
    assert c.stored("tree:alice")["count"] == 3      # a0, a1 and a0's grandkid


# ---------------------------------------------------------------- the hooks
def test_a_failing_hook_leaves_no_writes():
    c = Community()
    c.member("alice")
    c.member("bob")
    c.post("alice", "e", event=(0, 2 * HOUR))
    del c.host.params["attend_points"]
    before = c.host.snapshot()
    with pytest.raises(VMFault) as info:
        c.attend("bob", "alice/e", at=HOUR)
    assert info.value.code == "unknown_param"
    assert c.host.snapshot() == before


def test_bench_reports_every_hook_within_its_gas_limit():
    report = bench_vm(loop_iterations=2_000, posts=3, voters=5)
    assert report["vm"]["instructions_per_second"] > 0
    assert set(report["hooks"]) == {"on_post", "on_vote", "on_attend", "on_refer", "on_round"}
    for hook, figures in report["hooks"].items():
        assert 0 < figures["gas"] <= HOOK_GAS_LIMITS[hook]


def test_every_parameter_has_a_range_and_is_documented():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "contracts" / "README.md").read_text()
    assert set(PARAM_RANGES) == set(P)
    for name, value in P.items():
        lo, hi = PARAM_RANGES[name]
        assert lo <= value <= hi, name
        assert f"| `{name}` | {value} |" in readme, name
