"""Golden vectors for the default rules: pre-state, a sequence of calls, the expected awards of
each call, and the expected post-state. Every number below was worked out by hand from the rules
(see the comments); another implementation of the rules must reproduce them exactly."""
from contracts import DictHost, run
from contracts.rules import (DEFAULT_PARAMS, HOOK_FOR_KIND, HOOK_GAS_LIMITS, ROUND_HOOK,
                             load_default_rules)

W = DEFAULT_PARAMS["payout_window_ms"]

PRE_STATE = {
    "params": DEFAULT_PARAMS,
    "accounts": {"alice": 2_000_000, "bob": 1_000_000, "carol": 500_000, "dave": 0},  # stakes
    "storage": {},
}

# (timestamp, kind or "round", sender, body or round number, expected awards of the call)
CALLS = [
    (1000, "refer", "alice", {"new_account": "dave", "pubkey": bytes(32)}, []),
    (2000, "post", "bob", {"permlink": "garden-day", "title": "Garden day", "body": "",
                           "tags": ["event"], "event": {"starts_at": 0, "ends_at": 1, "capacity": 9}},
     []),
    # dave's first activity: alice's referral bonus
    (3000, "post", "dave", {"permlink": "hello", "title": "Hi", "body": "", "tags": []},
     [("alice", "relationship", 5000)]),
    # alice: 100% vote spends 200 power -> 2_000_000 * 200 / 10000 = 40_000 rshares
    (4000, "vote", "alice", {"post": "bob/garden-day", "weight": 10_000}, [("alice", "behaviour", 100)]),
    # carol: 50% spends 100 -> 500_000 * 100 / 10000 = 5_000 rshares
    (5000, "vote", "carol", {"post": "bob/garden-day", "weight": 5_000}, [("carol", "behaviour", 100)]),
    # bob's self-vote is capped to 1000 bps: spends 20 -> 2_000 rshares, no curation
    (6000, "vote", "bob", {"post": "bob/garden-day", "weight": 10_000}, [("bob", "behaviour", 100)]),
    # carol downvotes 30%: power 9900 (no visible regeneration after 2 s) spends 60 -> -3_000
    (7000, "vote", "carol", {"post": "dave/hello", "weight": -3_000}, [("carol", "behaviour", 100)]),
    (8000, "attend", "carol", {"event": "bob/garden-day", "ticket": bytes(64)},
     [("carol", "behaviour", 1000)]),
    (8500, "attend", "carol", {"event": "bob/garden-day", "ticket": bytes(64)}, []),
    # garden-day matured (created 2000): score 47_000 -> reward 2350, curation 587 over 45_000
    # curating rshares: alice 587*40000//45000 = 521, carol 587*5000//45000 = 65, bob the rest 1764.
    # dave/hello (created 3000) has not matured yet.
    (W + 2000, "round", None, 1,
     [("alice", "content", 521), ("carol", "content", 65), ("bob", "content", 1764)]),
    # dave/hello: negative score, no reward; its votes are cleaned up
    (W + 3000, "round", None, 2, []),
]

POST_STATE = {
    "accounts": {  # (content, behaviour, relationship)
        "alice": (521, 100, 5000), "bob": (1764, 100, 0), "carol": (65, 1200, 0), "dave": (0, 0, 0)},
    "storage": {
        b"attended:bob/garden-day:carol": True,
        b"counter:queue_head": 2,
        b"counter:queue_tail": 2,
        b"member:alice": {"at": 4000, "power": 9800, "day": 0, "earned": 100},
        b"member:bob": {"at": 6000, "power": 9980, "day": 0, "earned": 100},
        b"member:carol": {"at": 7000, "power": 9840, "day": 0, "earned": 200},
        b"referrals:alice": {"count": 1, "period": 0},
    },
    "events": [
        ("payout", {"post": "bob/garden-day", "author": "bob", "reward": 2350, "curation": 586}),
        ("round", {"round": 1, "paid_posts": 1}),
        ("payout", {"post": "dave/hello", "author": "dave", "reward": 0, "curation": 0}),
        ("round", {"round": 2, "paid_posts": 1}),
    ],
}

# Gas of each call above. Gas decides whether a call fits its limit, so it is consensus: a change
# here means the gas schedule, the compiler or the rules changed, and must be deliberate.
# (Last change: a post keeps its votes in its own record, so a vote reads and writes two records
# instead of four and a payout reads one per post; a value read from storage costs 1 gas per byte
# of its encoding. Same awards.)
GAS = [648, 2508, 3834, 3098, 3148, 3183, 3054, 1557, 405, 4486, 2680]


def _replay():
    host = DictHost(params=PRE_STATE["params"])
    for name, stake in PRE_STATE["accounts"].items():
        host.add_account(name, stake=stake, referrer="alice" if name == "dave" else None)
    code = load_default_rules()
    results = []
    for height, (at, kind, sender, body, _) in enumerate(CALLS, start=1):
        host.set_block(height, at)
        if kind == "round":
            results.append(run(code, ROUND_HOOK, [body], host, HOOK_GAS_LIMITS[ROUND_HOOK]))
        else:
            host.set_tx(kind, sender, body)
            hook = HOOK_FOR_KIND[kind]
            results.append(run(code, hook, [], host, HOOK_GAS_LIMITS[hook]))
    return host, results


def test_each_call_awards_what_the_vector_says():
    _, results = _replay()
    for (at, kind, sender, _, expected), result in zip(CALLS, results):
        assert list(result.awards) == expected, (at, kind, sender)


def test_post_state_matches_the_vector():
    host, _ = _replay()
    accounts = {name: (a["content"], a["behaviour"], a["relationship"])
                for name, a in host.accounts.items()}
    assert accounts == POST_STATE["accounts"]
    assert host.storage_values() == POST_STATE["storage"]
    assert host.events == POST_STATE["events"]


def test_gas_of_each_call_is_pinned():
    _, results = _replay()
    assert [r.gas_used for r in results] == GAS
