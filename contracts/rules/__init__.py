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

# Chain parameters the rules read with host.param; amounts in milli-units, times in ms.
DEFAULT_PARAMS = {
    "payout_window_ms": 7 * 24 * 3600 * 1000,      # a post pays out 7 days after creation
    "payouts_per_round": 20,                       # posts paid per on_round call at most
    "content_reward_bps": 500,                     # reward = 5% of a post's net rshares
    "curation_bps": 2500,                          # 25% of a post's reward goes to its curators
    "max_votes_per_post": 100,                     # voters counted per post (bounds payout cost)
    "vote_power_divisor": 50,                      # a 100% vote spends 10000/50 = 2% power
    "vote_regen_ms": 5 * 24 * 3600 * 1000,         # power refills from 0 to 100% in 5 days
    "self_vote_max_bps": 1000,                     # a self-vote counts with at most 10% weight
    "attend_points": 1000,                         # 1.000 behaviour per event attended
    "participation_points": 100,                   # 0.100 behaviour per vote on a post
    "participation_cap_per_day": 1000,             # at most 1.000 behaviour a day from votes
    "referral_bonus": 5000,                        # 5.000 relationship per activated referral
    "referral_cap_per_period": 5,                  # bonuses per referrer per period at most
    "referral_period_ms": 30 * 24 * 3600 * 1000,   # referral periods of 30 days
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
