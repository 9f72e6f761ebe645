"""Golden vectors for the default rules (v2): pre-state, a sequence of calls, the expected awards
of each call, and the expected post-state. The amounts in the comments are worked out by hand from
the rules (contracts/README.md); another implementation of the rules must reproduce them exactly."""
from contracts import DictHost, run
from contracts.rules import (DEFAULT_PARAMS, HOOK_FOR_KIND, HOOK_GAS_LIMITS, ROUND_HOOK,
                             load_default_rules)

W = DEFAULT_PARAMS["payout_window_ms"]
H = 3_600_000
DAY = 86_400_000

PRE_STATE = {
    # two vouchers activate a referral, 5 s after joining (the defaults are 3 and 7 days)
    "params": dict(DEFAULT_PARAMS, activation_vouchers=2, referral_min_age_ms=5000),
    "accounts": {"alice": 2_000_000, "bob": 1_000_000, "carol": 500_000, "dave": 0,
                 "erin": 1_000_000},  # active stakes
    "pools": {"content": 100_000, "behaviour": 10_000, "relationship": 50_000},
    "storage": {},
}
EVENT = {"capacity": 9, "ends_at": 2 * H, "starts_at": 0}

# (timestamp, kind or "round", sender, body or round number, expected awards of the call).
# Recent claims decay linearly over a day: c * (DAY - elapsed) // DAY at each update.
CALLS = [
    (1000, "refer", "alice", {"new_account": "dave", "pubkey": bytes(32)}, []),  # dave: alice's tree
    (2000, "post", "bob", {"permlink": "garden-day", "title": "Garden day", "body": "",
                           "tags": ["event"], "event": EVENT}, []),
    (3000, "post", "dave", {"permlink": "hello", "title": "Hi", "body": "", "tags": []}, []),
    # alice: a full vote spends 10000 // 2 = 5000 power -> 2_000_000 * 5000 // 10000 = 1_000_000
    # rshares (content claims 1_000_000). Participation: behaviour claims 100, the pool 10_000
    # alone would pay 10_000, capped at 10% of the pool: 1000
    (4000, "vote", "alice", {"post": "bob/garden-day", "weight": 10_000}, [("alice", "behaviour", 1000)]),
    # carol 50%: spends 2500 -> 125_000 rshares. Behaviour claims 100 decay to 99, + 100 = 199:
    # 9000 * 100 // 199 = 4522, capped at 900
    (5000, "vote", "carol", {"post": "bob/garden-day", "weight": 5_000}, [("carol", "behaviour", 900)]),
    # bob's self-vote: weight capped at 1000 -> spends 500 -> 50_000 rshares, no participation
    (6000, "vote", "bob", {"post": "bob/garden-day", "weight": 10_000}, []),
    # carol downvotes 30% from her free downvote power 2500: spends 375 -> -18_750 rshares; her
    # day's participation is already paid
    (7000, "vote", "carol", {"post": "dave/hello", "weight": -3_000}, []),
    # a 2-hour event of bob's: 1000 points; claims 199 -> 198, + 1000 = 1198: 8100 * 1000 // 1198
    # = 6761, capped at 810
    (8000, "attend", "carol", {"event": "bob/garden-day", "ticket": bytes(64)}, [("carol", "behaviour", 810)]),
    (8500, "attend", "bob", {"event": "bob/garden-day", "ticket": bytes(64)}, []),  # a self-ticket
    # bob (power 9500) spends 4750 -> 475_000 rshares; participation: claims 1198 -> 1197, + 100
    # = 1297: 7290 * 100 // 1297 = 562. bob is dave's first voucher from another tree
    (9000, "vote", "bob", {"post": "dave/hello", "weight": 10_000}, [("bob", "behaviour", 562)]),
    # alice is dave's referrer: her tree's vote neither pays participation nor vouches
    (9500, "vote", "alice", {"post": "dave/hello", "weight": 10_000}, []),
    # erin: participation, and the second voucher 9000 ms after dave joined: alice's referral
    # pays 5000 points, the pool's cap (50_000 alone, at most 10%)
    (10000, "vote", "erin", {"post": "dave/hello", "weight": 10_000},
     [("erin", "behaviour", 482), ("alice", "relationship", 5000)]),
    # garden-day matured: score 1_175_000, claim curve = 1_175_000 * 1_375_000 // 1_575_000 =
    # 1_025_793; its votes' claims decayed out long ago, so it would take the pool and takes the
    # cap 10_000. Curation 2500 by rshares over 1_125_000: alice 2222, carol 277; bob the rest.
    (W + 2000, "round", None, 1,
     [("alice", "content", 2222), ("carol", "content", 277), ("bob", "content", 7501)]),
    # dave/hello: capped at 10% of the 90_000 left; curation 2250 over bob, alice, erin's rshares
    (W + 3000, "round", None, 2,
     [("bob", "content", 724), ("alice", "content", 762), ("erin", "content", 762),
      ("dave", "content", 6752)]),
]

POST_STATE = {'accounts': {'alice': (2984, 1000, 5000),
              'bob': (8225, 562, 0),
              'carol': (277, 1710, 0),
              'dave': (6752, 0, 0),
              'erin': (762, 482, 0)},
 'pools': {'content': 81000, 'behaviour': 6246, 'relationship': 45000},
 'storage': {b'claims': {'at': 10000, 'behaviour': 1393, 'content': 2599909, 'relationship': 5000},
             b'member:alice': {'at': 9500,
                               'attends': 0,
                               'day': 0,
                               'down': 2500,
                               'paid': 1,
                               'pending': False,
                               'posts': 0,
                               'power': 2500,
                               'root': 'alice',
                               'selfs': 0,
                               'week': 0},
             b'member:bob': {'at': 9000,
                             'attends': 0,
                             'day': 0,
                             'down': 2500,
                             'paid': 1,
                             'pending': False,
                             'posts': 1,
                             'power': 4750,
                             'root': 'bob',
                             'selfs': 1,
                             'week': 0},
             b'member:carol': {'at': 7000,
                               'attends': 1,
                               'day': 0,
                               'down': 2125,
                               'paid': 1,
                               'pending': False,
                               'posts': 0,
                               'power': 7500,
                               'root': 'carol',
                               'selfs': 0,
                               'week': 0},
             b'member:dave': {'at': 1000,
                              'attends': 0,
                              'day': 0,
                              'down': 10000,
                              'paid': 0,
                              'pending': True,
                              'posts': 1,
                              'power': 10000,
                              'root': 'alice',
                              'selfs': 0,
                              'week': 0},
             b'member:erin': {'at': 10000,
                              'attends': 0,
                              'day': 0,
                              'down': 2500,
                              'paid': 1,
                              'pending': False,
                              'posts': 0,
                              'power': 5000,
                              'root': 'erin',
                              'selfs': 0,
                              'week': 0},
             b'organized:bob': {'count': 1, 'period': 0},
             b'pair:carol:bob': {'count': 1, 'period': 0},
             b'queue': {'head': 2, 'tail': 2},
             b'referrals:alice': {'count': 1, 'period': 0},
             b'tree:alice': {'count': 1, 'period': 0},
             b'upvoted:alice>bob': 4000,
             b'upvoted:alice>dave': 9500,
             b'upvoted:bob>dave': 9000,
             b'upvoted:carol>bob': 5000,
             b'upvoted:erin>dave': 10000,
             b'vouches:bob': {'count': 1, 'period': 0},
             b'vouches:erin': {'count': 1, 'period': 0}},
 'events': [('round', {'paid_posts': 1, 'rewards': 10000, 'round': 1}),
            ('round', {'paid_posts': 1, 'rewards': 9000, 'round': 2})]}

# Gas of each call above. Gas decides whether a call fits its limit, so it is consensus: a change
# here means the gas schedule, the compiler or the rules changed, and must be deliberate.
# (Last change: the v2 rules, with the host's now(), stake() and pool().)
GAS = [2416, 4172, 3826, 5352, 5603, 4367, 4162, 5043, 1622, 7737, 5108, 11367, 4817, 4594]


def _replay():
    host = DictHost(params=PRE_STATE["params"], pools=PRE_STATE["pools"])
    for name, stake in PRE_STATE["accounts"].items():
        host.add_account(name, stake=stake)
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
    assert host.pools == POST_STATE["pools"]


def test_gas_of_each_call_is_pinned():
    _, results = _replay()
    assert [r.gas_used for r in results] == GAS
