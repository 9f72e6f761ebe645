"""Properties of the default rules over random communities (hypothesis): whatever members do, every
hook completes inside its gas, what is paid is exactly what left the pools and never more than
they held, and each post's record stays consistent and bounded."""
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import DIMENSIONS, DictHost, run
from contracts.rules import DEFAULT_PARAMS, HOOK_FOR_KIND, HOOK_GAS_LIMITS, ROUND_HOOK, load_default_rules

MEMBERS = ("ann", "ben", "cat", "dan", "eve")
HOUR = 3_600_000
# short windows, and claims that decay within the hour, so that a few steps reach every case
# (payouts, lockouts, activations, claims decayed to nothing)
PARAMS = dict(DEFAULT_PARAMS, max_votes_per_post=3, payout_window_ms=2 * HOUR,
              upvote_lockout_ms=HOUR // 2, referral_min_age_ms=HOUR, activation_vouchers=2,
              payout_budget_per_round=5, claims_decay_ms=HOUR)

member = st.sampled_from(MEMBERS)
permlink = st.sampled_from(("a", "b", "c"))
action = st.one_of(
    st.tuples(st.just("post"), member, permlink, st.booleans()),
    st.tuples(st.just("vote"), member, st.tuples(member, permlink), st.integers(-3, 3).filter(bool)),
    st.tuples(st.just("vote"), member, st.tuples(member, permlink),
              st.integers(-10_000, 10_000).filter(bool)),
    st.tuples(st.just("attend"), member, st.tuples(member, permlink)),
    st.tuples(st.just("refer"), member, st.integers(0, 3)),
    st.tuples(st.just("round")),
)


def _apply(host, code, step, at, posts, attended):
    """Run the step's hook, or None where the chain's base rules would refuse the tx."""
    kind = step[0]
    if kind == "round":
        return run(code, ROUND_HOOK, [at], host, HOOK_GAS_LIMITS[ROUND_HOOK])
    if kind == "post":
        _, author, link, is_event = step
        if (author, link) in posts:
            return None  # post_exists
        posts[(author, link)] = is_event
        body = {"permlink": link, "title": "", "body": "", "tags": []}
        if is_event:
            body["event"] = {"capacity": 9, "ends_at": at + 2 * HOUR, "starts_at": at}
        host.set_tx("post", author, body)
    elif kind == "vote":
        _, voter, (author, link), weight = step
        if (author, link) not in posts:
            return None  # unknown_post
        host.set_tx("vote", voter, {"post": f"{author}/{link}", "weight": weight})
    elif kind == "attend":
        _, attendee, (author, link) = step
        if not posts.get((author, link)) or (attendee, author, link) in attended:
            return None  # unknown_event, already_attended
        attended.add((attendee, author, link))
        host.set_tx("attend", attendee, {"event": f"{author}/{link}", "ticket": bytes(64)})
    else:
        _, referrer, n = step
        newcomer = f"new-{referrer}-{n}"
        if newcomer not in host.accounts:
            host.add_account(newcomer, stake=20_000)
        host.set_tx("refer", referrer, {"new_account": newcomer, "pubkey": bytes(32)})
    hook = HOOK_FOR_KIND[kind]
    return run(code, hook, [], host, HOOK_GAS_LIMITS[hook])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(action, st.integers(0, 3 * HOUR)), max_size=60),
       stakes=st.lists(st.one_of(st.integers(0, 100), st.integers(0, 10**9)),
                       min_size=len(MEMBERS), max_size=len(MEMBERS)))
def test_random_communities_conserve_the_pools_and_keep_posts_consistent(steps, stakes):
    code = load_default_rules()
    pools = {"content": 10**7, "behaviour": 10**6, "relationship": 10**6}
    host = DictHost(params=PARAMS, pools=pools)
    for name, stake in zip(MEMBERS, stakes):
        host.add_account(name, stake=stake)
    at, posts, attended = 0, {}, set()
    for height, (step, gap) in enumerate(steps, 1):
        at += gap
        host.set_block(height, at)
        _apply(host, code, step, at, posts, attended)  # a fault or running out of gas fails the test
    for dimension in DIMENSIONS:
        paid = sum(a for _, d, a in host.awards if d == dimension)
        assert paid == pools[dimension] - host.pools[dimension] and host.pools[dimension] >= 0
    for key, value in host.storage_values().items():
        if key.startswith(b"post:"):
            assert len(value["voters"]) == len(value["rshares"]) <= PARAMS["max_votes_per_post"]
            assert len(set(value["voters"])) == len(value["voters"])
            assert value["score"] == sum(value["rshares"])
            assert value["curation"] == sum(r for v, r in zip(value["voters"], value["rshares"])
                                            if r > 0 and v != value["author"])
            assert 0 not in value["rshares"]
