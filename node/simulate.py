"""A synthetic community run through the real chain rules (`cli.py simulate`).

Why: the rules contract's limits (self-vote cap, daily participation cap, referral cap per period)
are easiest to judge by watching what honest members and abusers with the same stake earn. Every
action is a real signed tx applied by the real state transition (`begin_block` / `apply_tx` /
`end_block`) with the default rules contract (`ContractRules`), so payout windows, rounds, voting
power regeneration and referral periods act as they do on a chain.

Choices that keep a 1,000-member month to a minute or two on one core:
- one block per simulated minute (BLOCK_MS), not one per 0.5 s slot; each action's tx goes into the
  block of its minute. Issuance is per block, so the pools fill 120x slower than on a live chain;
  they still hold more than the rules pay here (the result says what is left in them).
- blocks are applied on a Layer over a MemoryKV holding genesis and each block's writes are merged
  into it: no consensus, block signing or state root, which the simulation does not need.

The population (shares of --members): honest founders with varied stake and activity, honest
newcomers referred by them during the run (10%), a sybil farm (5%: one farmer and fake accounts it
refers, each making one token post or attendance to count as active) and a self-vote ring (5%:
members who post and vote only on each other's posts, and self-vote). The farm's and the ring's
total stake equals the mean honest stake times their size. All randomness comes from one
random.Random(seed): the same config gives the same result.
"""
import hashlib
import math
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Callable

from contracts import DIMENSIONS
from core.crypto import Keypair
from core.errors import InvalidTx
from core.genesis import ChainParams, Genesis, Member, Producer
from core.types import Tx, make_ticket
from state import rules as R
from state import transition as T
from state.kv import MemoryKV
from state.rules import ChainHost, ContractRules
from state.view import Layer

GROUPS = ("honest", "sybil farm", "self-vote ring")
CHAIN_ID = "simulation"
GENESIS_MS = 1_767_225_600_000  # 2026-01-01T00:00Z: simulated days are the rules' UTC days
BLOCK_MS = 60_000
BLOCKS_PER_DAY = 1440
TX_TTL_MS = 10 * BLOCK_MS
BALANCE = 1_000_000        # 1,000 CP each at genesis: what welcome transfers come from
WELCOME = 10_000           # a referrer gives each new member 10 CP, which the member stakes
MEDIAN_STAKE = 100_000     # honest stake is log-normal around 100 CP

NEWCOMER_PCT, FARM_PCT, RING_PCT = 10, 5, 5
MIN_FAKES = 12             # more than one period's referral cap even in a small run
POSTS_PER_DAY = 0.12       # honest rates per day, times the member's activity level
VOTES_PER_DAY = 2.0
HOST_PCT = 5               # honest founders who organize events, each about once a week
EVENT_BLOCKS = 180         # an event is open for 3 hours
ATTENDEES_MEAN = 12
RING_POSTS_PER_DAY = 0.5
RING_VOTES_PER_DAY = 10    # 10 full votes a day spend what regenerates (2% each, 20%/day)
VOTE_LOOKBACK_DAYS = 6     # votes go to posts younger than the 7-day payout window


@dataclass(frozen=True, slots=True)
class SimConfig:
    members: int = 1000
    days: int = 30
    seed: int = 1


@dataclass(frozen=True, slots=True)
class MemberResult:
    name: str
    group: str
    stake: int
    rewards: tuple[int, int, int]  # content, behaviour, relationship (milli-units)
    txs: tuple[tuple[str, int], ...]  # applied txs sent, by kind

    def sent(self, kind: str) -> int:
        return dict(self.txs).get(kind, 0)


@dataclass(frozen=True, slots=True)
class SimResult:
    config: SimConfig
    members: tuple[MemberResult, ...]
    daily: tuple[dict, ...]  # per day: {group: (content, behaviour, relationship)}, cumulative
    applied: dict[str, int]  # txs applied by kind
    rejected: dict[str, int]  # txs rejected by error code
    blocks: int
    posts_awaiting_payout: int
    pools_left: dict[str, int]
    params: dict[str, int]  # the rules parameters in force
    wall_s: float = field(compare=False)


@dataclass(frozen=True, slots=True)
class GroupStats:
    group: str
    members: int
    stake: int
    referrals: int
    totals: dict[str, int]  # each dimension and "all" -> milli-units

    def mean(self, dim: str) -> float:
        return self.totals[dim] / self.members if self.members else 0.0

    def per_stake(self, dim: str) -> float:
        """Reward per unit staked (both in milli-units): the fair comparison at equal stake."""
        return self.totals[dim] / self.stake if self.stake else 0.0


@dataclass(slots=True)
class _Actor:
    name: str
    group: str
    key: Keypair
    activity: float
    joined: bool


def _poisson(rng: random.Random, lam: float) -> int:
    """Knuth's method: exact, and fast enough for the small means drawn here."""
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def gini(values) -> float:
    """0 when everyone has the same, towards 1 when one member has everything."""
    xs = sorted(values)
    total = sum(xs)
    if not xs or total == 0:
        return 0.0
    n = len(xs)
    return 2 * sum(i * x for i, x in enumerate(xs, 1)) / (n * total) - (n + 1) / n


class _Community:
    """The members, the chain state and the schedule of txs by block height."""

    def __init__(self, config: SimConfig):
        if config.members < 40 or config.days < 1:
            raise ValueError("simulate at least 40 members for at least 1 day")
        self.cfg, self.rng = config, random.Random(config.seed)
        self.last_height = config.days * BLOCKS_PER_DAY - 1
        self.actors: dict[str, _Actor] = {}
        self.schedule: dict[int, list] = defaultdict(list)  # height -> [(sender, kind, body)]
        self.posts: list[tuple[str, str, int, float]] = []  # (ref, author, day, quality)
        self.sent: dict[str, Counter] = defaultdict(Counter)
        self.applied, self.rejected = Counter(), Counter()
        self.salt = self.permlinks = 0
        self._populate()
        self.kv = MemoryKV()
        self.kv.write(T.genesis_writes(self.genesis))
        self.state = Layer(None, self.kv)  # reads the store; each block's writes go to the store
        self.rules = ContractRules()

    # ---------------------------------------------------------------- population and genesis
    def _add(self, name: str, group: str, activity: float, joined: bool) -> None:
        key = Keypair(hashlib.sha256(f"{CHAIN_ID}:{name}".encode()).digest())
        self.actors[name] = _Actor(name, group, key, activity, joined)

    def _activity(self) -> float:
        return min(8.0, self.rng.lognormvariate(0, 0.8))

    def _populate(self) -> None:
        n, rng = self.cfg.members, self.rng
        ring = max(3, n * RING_PCT // 100)
        fakes = max(MIN_FAKES, n * FARM_PCT // 100 - 1)
        newcomers = n * NEWCOMER_PCT // 100
        founders = n - ring - (1 + fakes) - newcomers
        stakes = {}
        for i in range(1, founders + 1):
            name = f"h-{i:04d}"
            self._add(name, "honest", self._activity(), True)
            stakes[name] = max(1000, round(MEDIAN_STAKE * rng.lognormvariate(0, 1.0)))
        self.founders = list(self.actors.values())
        self.founder_weights = list(accumulate(a.activity for a in self.founders))
        self.hosts = [a.name for a in self.founders[:max(1, founders * HOST_PCT // 100)]]
        # newcomers join over the first 80% of the run, so each has time to become active
        self.joins = sorted((rng.randint(1, self.last_height * 4 // 5), f"n-{i:04d}")
                            for i in range(1, newcomers + 1))
        for _, name in self.joins:
            self._add(name, "honest", self._activity(), False)
        mean_stake = (sum(stakes.values()) + newcomers * WELCOME) // (founders + newcomers)
        draws = [rng.lognormvariate(0, 1.0) for _ in range(ring)]
        for i, d in enumerate(draws, 1):
            name = f"ring-{i:03d}"
            self._add(name, "self-vote ring", 1.0, True)
            stakes[name] = round(mean_stake * ring * d / sum(draws))
        self._add("farmer", "sybil farm", 1.0, True)
        stakes["farmer"] = mean_stake * (1 + fakes) - fakes * WELCOME  # fakes stake the rest
        self.fake_joins = sorted((rng.randint(1, self.last_height - 120), f"fake-{i:04d}")
                                 for i in range(1, fakes + 1))
        for _, name in self.fake_joins:
            self._add(name, "sybil farm", 0.0, False)
        founding = [a for a in self.actors.values() if a.joined]
        balances = {"farmer": BALANCE + fakes * WELCOME}  # the farmer's welcome transfers
        self.genesis = Genesis(
            CHAIN_ID, GENESIS_MS, ChainParams(block_interval_ms=BLOCK_MS),
            tuple(Member(a.name, a.key.public_key, balances.get(a.name, BALANCE), stakes[a.name])
                  for a in founding),
            (Producer(founding[0].name, founding[0].key.public_key, ""),))

    # ---------------------------------------------------------------- planning one day
    def _at(self, height: int, sender: str, kind: str, body: dict) -> None:
        if height <= self.last_height:
            self.schedule[height].append((sender, kind, body))

    def _post(self, height: int, author: str, quality: float, **extra) -> str:
        """Schedule a post; a post with a quality (not an event) becomes a target of votes."""
        self.permlinks += 1
        permlink = f"p{self.permlinks}"
        self._at(height, author, "post", {"permlink": permlink, "title": f"post {self.permlinks}",
                                          "body": "text", "tags": ["community"], **extra})
        ref = f"{author}/{permlink}"
        if quality:
            self.posts.append((ref, author, height // BLOCKS_PER_DAY, quality))
        return ref

    def _join(self, height: int, referrer: str, name: str) -> int:
        """refer + welcome transfer, then the new member stakes it; returns when it first acts."""
        key = self.actors[name].key
        self._at(height, referrer, "refer", {"new_account": name, "pubkey": key.public_key})
        self._at(height, referrer, "transfer", {"amount": WELCOME, "to": name})
        self._at(height + 5, name, "stake", {"amount": WELCOME})
        return height + self.rng.randint(10, 720 if self.actors[name].group == "honest" else 60)

    def plan_day(self, day: int) -> None:
        """Schedule the day's txs. Votes go to posts of earlier days, which exist by now."""
        rng, first = self.rng, day * BLOCKS_PER_DAY
        heights = range(max(1, first), first + BLOCKS_PER_DAY)
        honest = [a for a in self.actors.values() if a.joined and a.group == "honest"]
        weights = list(accumulate(a.activity for a in honest))
        recent = [p for p in self.posts if day - VOTE_LOOKBACK_DAYS <= p[2] < day]
        quality = list(accumulate(p[3] for p in recent))

        for height, name in self.joins:
            if height in heights:  # founders refer: a newcomer's balance went into its stake
                referrer = rng.choices(self.founders, cum_weights=self.founder_weights)[0].name
                self._post(self._join(height, referrer, name), name, 1.0)
        if day == 0:  # the farm's open-ended "event", whose tickets the farmer signs for its fakes
            self.farm_event = self._post(1, "farmer", 0, event={
                "capacity": 1_000_000, "ends_at": GENESIS_MS + (self.cfg.days + 1) * 86_400_000,
                "starts_at": GENESIS_MS + 2 * BLOCK_MS})
        for i, (height, name) in enumerate(self.fake_joins):
            if height in heights:
                acts = self._join(height, "farmer", name)
                if i % 2:
                    ticket = make_ticket(self.actors["farmer"].key, CHAIN_ID, self.farm_event, name)
                    self._at(acts, name, "attend", {"event": self.farm_event, "ticket": ticket})
                else:
                    self._post(acts, name, 0.05)  # a token post: few honest members vote on it

        for host in self.hosts:
            if rng.random() < 1 / 7:
                self._event(host, first + rng.randrange(480, 1080), honest, weights)
        for a in honest + [self.actors["farmer"]]:  # the farmer is otherwise an ordinary member
            for _ in range(_poisson(rng, POSTS_PER_DAY * a.activity)):
                self._post(rng.choice(heights), a.name, rng.lognormvariate(0, 0.75))
            for _ in range(_poisson(rng, VOTES_PER_DAY * a.activity) if recent else 0):
                ref, author, _, _ = rng.choices(recent, cum_weights=quality)[0]
                if author != a.name:
                    weight = rng.choice((10000, 10000, 10000, 5000, 2500))
                    self._at(rng.choice(heights), a.name, "vote", {"post": ref, "weight": weight})
        self._plan_ring(day, heights, recent)

    def _event(self, host: str, height: int, honest: list, weights: list) -> None:
        """An event open for EVENT_BLOCKS; attendees beyond its capacity are refused (event_full)."""
        rng = self.rng
        opens = GENESIS_MS + (height + 1) * BLOCK_MS
        ref = self._post(height, host, 0, event={"capacity": rng.randint(8, 30),
                                                 "ends_at": opens + EVENT_BLOCKS * BLOCK_MS,
                                                 "starts_at": opens})
        key = self.actors[host].key
        attendees = {rng.choices(honest, cum_weights=weights)[0].name
                     for _ in range(_poisson(rng, ATTENDEES_MEAN))} - {host}
        for name in sorted(attendees):
            self._at(rng.randint(height + 1, height + EVENT_BLOCKS), name, "attend",
                     {"event": ref, "ticket": make_ticket(key, CHAIN_ID, ref, name)})

    def _plan_ring(self, day: int, heights: range, recent: list) -> None:
        """Ring members vote only on ring posts, as much as their voting power sustains, and
        self-vote on their own posts of yesterday at full weight (the rules cap it)."""
        rng = self.rng
        ring = {a.name for a in self.actors.values() if a.group == "self-vote ring"}
        ring_posts = [(ref, author, d) for ref, author, d, _ in recent if author in ring]
        for name in sorted(ring):
            for _ in range(_poisson(rng, RING_POSTS_PER_DAY)):
                self._post(rng.choice(heights), name, rng.lognormvariate(0, 0.75))
            others = [ref for ref, author, _ in ring_posts if author != name]
            own = [ref for ref, author, d in ring_posts if author == name and d == day - 1]
            for ref in rng.sample(others, min(RING_VOTES_PER_DAY, len(others))) + own:
                self._at(rng.choice(heights), name, "vote", {"post": ref, "weight": 10000})

    # ---------------------------------------------------------------- the chain
    def run_block(self, height: int) -> None:
        """Build and apply one block as a producer does: invalid txs are left out and counted."""
        ts = GENESIS_MS + height * BLOCK_MS
        ctx = T.make_context(self.genesis, height, height, ts)
        block = Layer(self.state)
        T.begin_block(block, ctx, self.rules)
        index = 0
        for sender, kind, body in self.schedule.pop(height, ()):
            self.salt += 1
            tx = Tx.create(self.actors[sender].key, CHAIN_ID, kind, sender, ts + TX_TTL_MS, body,
                           self.salt)
            try:
                T.apply_tx(block, tx, ctx, index, rules=self.rules)
            except InvalidTx as e:
                self.rejected[e.code] += 1
                continue
            index += 1
            self.applied[kind] += 1
            self.sent[sender][kind] += 1
            if kind == "refer":
                self.actors[body["new_account"]].joined = True
        T.end_block(block, ctx, self.rules)
        writes = block.writes
        self.kv.write({k: v for k, v in writes.items() if v is not None},
                      {k for k, v in writes.items() if v is None})

    def rewards(self, name: str) -> tuple[int, int, int]:
        a = T.get_account(self.state, name)
        return (0, 0, 0) if a is None else (a.content, a.behaviour, a.relationship)

    def group_totals(self) -> dict[str, tuple[int, int, int]]:
        totals = {g: [0, 0, 0] for g in GROUPS}
        for a in self.actors.values():
            if a.joined:
                for i, v in enumerate(self.rewards(a.name)):
                    totals[a.group][i] += v
        return {g: tuple(v) for g, v in totals.items()}

    def result(self, daily: list, wall_s: float) -> SimResult:
        members = []
        for a in self.actors.values():
            if a.joined:
                account = T.get_account(self.state, a.name)
                members.append(MemberResult(a.name, a.group, account.stake, self.rewards(a.name),
                                            tuple(sorted(self.sent[a.name].items()))))
        host = ChainHost(self.state, None, {})
        awaiting = (host.storage_get(b"counter:queue_tail") or 0) - (host.storage_get(b"counter:queue_head") or 0)
        return SimResult(self.cfg, tuple(members), tuple(daily), dict(sorted(self.applied.items())),
                         dict(sorted(self.rejected.items())), self.last_height, awaiting,
                         {d: R.get_pool(self.state, d) for d in DIMENSIONS},
                         R.get_params(self.state), wall_s)


def simulate(config: SimConfig = SimConfig(),
             on_day: Callable[[int, int], None] | None = None) -> SimResult:
    """Run the community for config.days; `on_day(day, applied_so_far)` after each day."""
    started = time.perf_counter()
    community = _Community(config)
    daily = []
    for day in range(config.days):
        community.plan_day(day)
        for height in range(max(1, day * BLOCKS_PER_DAY), (day + 1) * BLOCKS_PER_DAY):
            community.run_block(height)
        daily.append(community.group_totals())
        if on_day is not None:
            on_day(day + 1, sum(community.applied.values()))
    return community.result(daily, time.perf_counter() - started)


# ---------------------------------------------------------------- summaries
def group_stats(result: SimResult) -> dict[str, GroupStats]:
    stats = {}
    for g in GROUPS:
        ms = [m for m in result.members if m.group == g]
        totals = {d: sum(m.rewards[i] for m in ms) for i, d in enumerate(DIMENSIONS)}
        totals["all"] = sum(totals.values())
        stats[g] = GroupStats(g, len(ms), sum(m.stake for m in ms),
                              sum(m.sent("refer") for m in ms), totals)
    return stats


def dimension_gini(result: SimResult) -> dict[str, float]:
    """Gini of each dimension's and of the total rewards across all members."""
    ginis = {d: gini(m.rewards[i] for m in result.members) for i, d in enumerate(DIMENSIONS)}
    ginis["all"] = gini(sum(m.rewards) for m in result.members)
    return ginis


def referral_periods(result: SimResult) -> int:
    """How many referral periods the run touches: the referral cap applies once per period."""
    period = result.params["referral_period_ms"]
    end = GENESIS_MS + result.blocks * BLOCK_MS
    return end // period - GENESIS_MS // period + 1
