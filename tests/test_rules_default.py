"""The default rules, rule by rule, on an in-memory host."""
import pytest

from contracts import DictHost, VMFault, run
from contracts.bench import bench_vm
from contracts.rules import DEFAULT_PARAMS, HOOK_FOR_KIND, HOOK_GAS_LIMITS, load_default_rules

DAY = 86_400_000
WINDOW = DEFAULT_PARAMS["payout_window_ms"]


class Community:
    """Drives the rules hooks the way the chain does: set tx and block, call the hook."""

    def __init__(self, **params):
        self.code = load_default_rules()
        self.host = DictHost(params=dict(DEFAULT_PARAMS, **params))
        self.height = 0

    def member(self, name, stake=1_000_000, referrer=None):
        self.host.add_account(name, stake=stake, referrer=referrer)

    def _call(self, hook, at, args=()):
        self.height += 1
        self.host.set_block(self.height, at)
        return run(self.code, hook, list(args), self.host, HOOK_GAS_LIMITS[hook])

    def tx(self, kind, sender, body, at=0):
        self.host.set_tx(kind, sender, body)
        return self._call(HOOK_FOR_KIND[kind], at)

    def post(self, author, permlink, at=0):
        return self.tx("post", author, {"permlink": permlink, "title": "", "body": "", "tags": []}, at)

    def vote(self, voter, ref, weight, at=0):
        return self.tx("vote", voter, {"post": ref, "weight": weight}, at)

    def round(self, at, number=1):
        return self._call("on_round", at, [number])

    def earned(self, name, dimension):
        return self.host.accounts[name][dimension]

    def stored(self, key):
        return self.host.storage_get(key.encode())


def power(c, member):
    """The voting power part of a member's record."""
    record = c.stored(f"member:{member}")
    return {"power": record["power"], "at": record["at"]}


@pytest.fixture
def c():
    community = Community()
    for name in ("alice", "bob", "carol"):
        community.member(name)
    return community


def test_post_pays_out_only_after_its_window(c):
    c.post("alice", "p")
    c.vote("bob", "alice/p", 10_000)
    assert c.round(WINDOW - 1).return_value == 0
    assert c.earned("alice", "content") == 0
    result = c.round(WINDOW)
    assert result.return_value == 1
    # bob: stake 1_000_000 spends 200 power -> 20_000 rshares; reward 5% = 1000; curation 25%
    assert result.awards == (("bob", "content", 250), ("alice", "content", 750))
    assert c.stored("post:alice/p") is None  # the post's votes are in its record
    assert c.round(2 * WINDOW).return_value == 0


def test_votes_are_stake_weighted_and_curation_is_proportional(c):
    c.member("dave", stake=3_000_000)
    c.post("alice", "p")
    c.vote("bob", "alice/p", 10_000)
    c.vote("dave", "alice/p", 10_000)
    result = c.round(WINDOW)
    # rshares 20_000 + 60_000 -> reward 4000, curation 1000 split 1:3, author the rest
    assert result.awards == (("bob", "content", 250), ("dave", "content", 750),
                             ("alice", "content", 3000))


def test_voting_power_is_spent_and_regenerates_linearly(c):
    for i in range(5):
        c.post("alice", f"p{i}")
    for i in range(5):
        c.vote("bob", f"alice/p{i}", 10_000)
    assert power(c, "bob") == {"power": 9000, "at": 0}
    regen = DEFAULT_PARAMS["vote_regen_ms"]
    c.post("alice", "late")
    c.vote("bob", "alice/late", 5_000, at=regen // 20)      # +500 power, then spends 100
    assert power(c, "bob") == {"power": 9400, "at": regen // 20}
    c.vote("bob", "alice/p0", 10_000, at=regen)             # regenerated to full before spending
    assert power(c, "bob")["power"] == 9800


def test_exhausted_power_limits_vote_strength():
    c = Community(vote_power_divisor=1)                     # a full vote spends everything
    c.member("alice")
    c.member("bob")
    c.post("alice", "a")
    c.post("alice", "b")
    c.vote("bob", "alice/a", 10_000)
    c.vote("bob", "alice/b", 10_000)
    assert c.stored("post:alice/a")["rshares"] == [1_000_000]
    assert c.stored("post:alice/b")["rshares"] == [0]


def test_self_votes_are_capped_and_earn_no_curation(c):
    c.post("alice", "p")
    c.vote("alice", "alice/p", 10_000)
    # capped at 1000 bps -> spends 20 power -> 2000 rshares
    post = c.stored("post:alice/p")
    assert post["voters"] == ["alice"] and post["rshares"] == [2000]
    assert c.round(WINDOW).awards == (("alice", "content", 100),)


def test_downvotes_reduce_the_score_and_can_zero_the_reward(c):
    c.post("alice", "p")
    c.vote("bob", "alice/p", 10_000)
    c.vote("carol", "alice/p", -5_000)
    assert c.stored("post:alice/p")["score"] == 20_000 - 10_000
    assert c.round(WINDOW).awards == (("bob", "content", 125), ("alice", "content", 375))
    c.post("alice", "q", at=1)
    c.vote("bob", "alice/q", 1_000, at=1)
    c.vote("carol", "alice/q", -10_000, at=1)
    result = c.round(WINDOW + 1)
    assert result.awards == () and result.events[0][1]["reward"] == 0


def test_a_second_vote_replaces_the_first(c):
    c.post("alice", "p")
    c.vote("bob", "alice/p", 10_000)
    c.vote("bob", "alice/p", -10_000)
    post = c.stored("post:alice/p")
    assert post["voters"] == ["bob"] and post["curation_rshares"] == 0
    assert post["score"] == post["rshares"][0] < 0


def test_only_the_first_voters_count():
    c = Community(max_votes_per_post=2)
    for name in ("alice", "bob", "carol", "dave"):
        c.member(name)
    c.post("alice", "p")
    for voter in ("bob", "carol", "dave"):
        c.vote(voter, "alice/p", 10_000)
    assert c.stored("post:alice/p")["voters"] == ["bob", "carol"]
    assert c.earned("dave", "behaviour") == DEFAULT_PARAMS["participation_points"]


def test_votes_on_unknown_or_paid_posts_and_producer_votes_change_no_content(c):
    c.vote("bob", "nobody/nothing", 10_000)
    c.tx("vote", "bob", {"producer": "carol", "approve": True})
    assert c.earned("bob", "behaviour") == DEFAULT_PARAMS["participation_points"]
    assert power(c, "bob") == {"power": 10_000, "at": 0}  # nothing spent


def test_each_round_pays_a_bounded_batch_oldest_first():
    c = Community(payouts_per_round=2)
    c.member("alice")
    c.member("bob")
    for i in range(5):
        c.post("alice", f"p{i}", at=i)
        c.vote("bob", f"alice/p{i}", 100, at=i)
    assert [c.round(WINDOW + 10).return_value for _ in range(4)] == [2, 2, 1, 0]
    paid = [data["post"] for name, data in c.host.events if name == "payout"]
    assert paid == [f"alice/p{i}" for i in range(5)]
    assert c.stored("counter:queue_head") == 5


def test_attendance_pays_once_per_event(c):
    body = {"event": "carol/meetup", "ticket": bytes(64)}
    c.tx("attend", "bob", body)
    c.tx("attend", "bob", body)
    c.tx("attend", "bob", {"event": "carol/other", "ticket": bytes(64)})
    assert c.earned("bob", "behaviour") == 2 * DEFAULT_PARAMS["attend_points"]


def test_participation_is_capped_per_day(c):
    for i in range(15):
        c.vote("bob", f"x/{i}", 100, at=DAY + i)
    assert c.earned("bob", "behaviour") == DEFAULT_PARAMS["participation_cap_per_day"]
    c.vote("bob", "x/next", 100, at=2 * DAY)
    assert c.earned("bob", "behaviour") == DEFAULT_PARAMS["participation_cap_per_day"] + 100


def test_referral_pays_only_when_the_new_member_becomes_active(c):
    c.tx("refer", "alice", {"new_account": "newbie", "pubkey": bytes(32)})
    c.member("newbie", stake=0, referrer="alice")
    c.vote("newbie", "x/y", 100)
    assert c.earned("alice", "relationship") == 0
    c.post("newbie", "hello")
    assert c.earned("alice", "relationship") == DEFAULT_PARAMS["referral_bonus"]
    c.post("newbie", "again")
    c.tx("attend", "newbie", {"event": "carol/meetup", "ticket": bytes(64)})
    assert c.earned("alice", "relationship") == DEFAULT_PARAMS["referral_bonus"]


def test_referral_bonus_is_capped_per_period():
    period = DEFAULT_PARAMS["referral_period_ms"]
    c = Community(referral_cap_per_period=2)
    c.member("alice")
    names = [f"new-{i}" for i in range(4)]
    for name in names:
        c.tx("refer", "alice", {"new_account": name, "pubkey": bytes(32)})
        c.member(name, stake=0, referrer="alice")
    for name in names[:3]:
        c.tx("attend", name, {"event": "alice/e", "ticket": bytes(64)}, at=10)
    assert c.earned("alice", "relationship") == 2 * DEFAULT_PARAMS["referral_bonus"]
    assert ("referral_capped", {"referrer": "alice", "member": "new-2"}) in c.host.events
    c.post(names[3], "hi", at=period)                      # next period: the cap resets
    assert c.earned("alice", "relationship") == 3 * DEFAULT_PARAMS["referral_bonus"]


def test_a_failing_hook_leaves_no_writes():
    c = Community()
    c.member("alice")
    del c.host.params["attend_points"]
    before = c.host.snapshot()
    with pytest.raises(VMFault) as info:
        c.tx("attend", "alice", {"event": "x/e", "ticket": bytes(64)})
    assert info.value.code == "unknown_param"
    assert c.host.snapshot() == before


def test_bench_reports_every_hook_within_its_gas_limit():
    report = bench_vm(loop_iterations=2_000, posts=3, voters=5)
    assert report["vm"]["instructions_per_second"] > 0
    assert set(report["hooks"]) == {"on_post", "on_vote", "on_attend", "on_refer", "on_round"}
    for hook, figures in report["hooks"].items():
        assert 0 < figures["gas"] <= HOOK_GAS_LIMITS[hook]
    assert report["hooks"]["on_round"]["votes"] == 15
