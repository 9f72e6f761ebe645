"""The default community-asset rules: contract source, parameter defaults and a loader.

`default.py` in this package is contract source text (the restricted Python subset), not a
module to import. The chain compiles it with `load_default_rules()`, stores the bytecode and its
`code_hash` in genesis, and calls `HOOK_FOR_KIND[tx.kind]` after each such tx and `on_round`
periodically, each with at most `HOOK_GAS_LIMITS[hook]` gas.
"""
from functools import lru_cache
from pathlib import Path

from contracts.bytecode import code_hash
from contracts.compiler import compile_source

SOURCE_PATH = Path(__file__).with_name("default.py")

HOOK_FOR_KIND = {"post": "on_post", "vote": "on_vote", "attend": "on_attend", "refer": "on_refer"}
ROUND_HOOK = "on_round"

HOUR_MS, DAY_MS = 3600 * 1000, 24 * 3600 * 1000

# Chain parameters the rules read with host.param, with their ranges (enforced at genesis, at
# proposal and at enactment: state.rules.check_params); amounts in milli-units, times in ms.
# contracts/README.md gives the reason for each.
DEFAULT_PARAMS = {
    # shares of the pools
    "claims_decay_ms": DAY_MS,                     # claims weigh against those of the last day
    "max_payout_bps": 1000,                        # one payment takes at most 10% of a pool
    "min_earning_stake": 10_000,                   # 10 CP of active stake before earning at all
    # content
    "payout_window_ms": 7 * DAY_MS,                # a post pays out 7 days after creation
    "payout_budget_per_round": 1000,               # posts + their votes paid per on_round
    "posts_paid_per_day": 4,                       # an author's posts and comments that earn, a day
    "curation_bps": 2500,                          # 25% of a post's reward goes to its curators
    "curve_s": 100_000,                            # the reward curve's knee, in rshares
    "max_votes_per_post": 100,                     # votes kept per post (a full post drops its smallest)
    "vote_power_divisor": 2,                       # a 100% vote spends half of the power left
    "vote_regen_ms": 5 * DAY_MS,                   # power refills from 0 to 100% in 5 days
    "downvote_power_bps": 2500,                    # free downvote power: 25% of the upvote power
    "upvote_lockout_ms": 12 * HOUR_MS,             # no upvotes in the last 12 h before payout
    "self_vote_max_bps": 1000,                     # a self-vote counts with at most 10% weight
    "self_votes_per_day": 1,                       # and one self-vote a day counts
    "reciprocal_vote_bps": 2500,                   # an upvote for one's recent upvoter counts 25%
    "reciprocity_ms": 7 * DAY_MS,                  # recent: in the last 7 days
    # behaviour
    "participation_points": 100,                   # per first counted vote on another tree's post
    "participation_votes_per_day": 1,              # such votes paid per day
    "attend_points": 1000,                         # per event attended, halved per repeat
    "attends_per_week": 2,                         # attendances paid per member per week
    "organizer_attends_per_week": 60,              # attendances paid per organizer per week
    "min_event_ms": HOUR_MS,                       # an event shorter than an hour pays nothing
    "max_event_ms": DAY_MS,                        # nor one open longer than a day
    "repeat_period_ms": 30 * DAY_MS,               # repeats of one organizer halve within 30 days
    # relationship
    "referral_points": 5000,                       # per activated referral
    "activation_vouchers": 3,                      # upvoters from other trees that activate one
    "vouches_per_period": 1,                       # referrals a member may vouch for per period
    "referral_min_age_ms": 7 * DAY_MS,             # and the newcomer's age before it pays
    "referral_cap_per_period": 5,                  # bonuses per referrer per period at most
    "referral_tree_cap_per_period": 10,            # bonuses per referral tree per period at most
    "referral_period_ms": 30 * DAY_MS,             # referral periods of 30 days
}
SECOND_MS = 1000
PARAM_RANGES = {
    "claims_decay_ms": (HOUR_MS, 30 * DAY_MS),
    "max_payout_bps": (1, 10_000),
    "min_earning_stake": (0, 10**12),
    "payout_window_ms": (SECOND_MS, 90 * DAY_MS),
    # 1,500 posts without votes, the longest names: 2.2M of on_round's 5M gas, ~3 of its 4 MiB
    "payout_budget_per_round": (10, 1_500),
    "posts_paid_per_day": (0, 1_000),
    "curation_bps": (0, 10_000),
    "curve_s": (1, 10**15),
    "max_votes_per_post": (1, 200),
    "vote_power_divisor": (1, 10_000),
    "vote_regen_ms": (SECOND_MS, 90 * DAY_MS),
    "downvote_power_bps": (0, 10_000),
    "upvote_lockout_ms": (0, 90 * DAY_MS),
    "self_vote_max_bps": (0, 10_000),
    "self_votes_per_day": (0, 100),
    "reciprocal_vote_bps": (0, 10_000),
    "reciprocity_ms": (0, 90 * DAY_MS),
    "participation_points": (0, 10**9),
    "participation_votes_per_day": (0, 100),
    "attend_points": (0, 10**9),
    "attends_per_week": (0, 100),
    "organizer_attends_per_week": (0, 100_000),
    "min_event_ms": (0, 30 * DAY_MS),
    "max_event_ms": (SECOND_MS, 365 * DAY_MS),
    "repeat_period_ms": (SECOND_MS, 365 * DAY_MS),
    "referral_points": (0, 10**9),
    "activation_vouchers": (0, 50),
    "vouches_per_period": (0, 1_000),
    "referral_min_age_ms": (0, 365 * DAY_MS),
    "referral_cap_per_period": (0, 1_000),
    "referral_tree_cap_per_period": (0, 100_000),
    "referral_period_ms": (SECOND_MS, 365 * DAY_MS),
}

# Gas per hook call: measured worst cases (contracts.bench) with ample headroom.
HOOK_GAS_LIMITS = {"on_post": 100_000, "on_vote": 100_000, "on_attend": 100_000,
                   "on_refer": 100_000, "on_round": 5_000_000}


def default_rules_source() -> str:
    return SOURCE_PATH.read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def load_default_rules() -> bytes:
    """The default rules compiled to bytecode (deterministic: same source, same bytes)."""
    return compile_source(default_rules_source())


def default_rules_hash() -> bytes:
    return code_hash(load_default_rules())
