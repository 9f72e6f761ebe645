"""A synthetic community run through the real chain rules (`cli.py simulate`).

Why: the rules contract's limits are easiest to judge by watching what honest members and abusers
with the same stake earn. Every action is a real signed tx applied by the real state transition
(`begin_block` / `apply_tx` / `end_block`) with the rules contract (`ContractRules`), so payout
windows, rounds, voting power, stake delays and referral periods act as they do on a chain. The
simulation reads accounts and pools, never the contract's storage, whose layout is the
contract's own.

Choices that keep a 1,000-member month to a few minutes on one core:
- one block per simulated minute (BLOCK_MS), not one per 0.5 s slot; each action's tx goes into the
  block of its minute. Issuance is per block, so the pools fill 120x slower than on a live chain
  (the result says how much of what was issued was paid).
- blocks are applied on a Layer over a MemoryKV holding genesis and each block's writes are merged
  into it: no consensus, block signing or state root, which the simulation does not need.

The population (shares of --members): honest founders with varied stake and activity, honest
newcomers referred by them during the run (10%), and the adversary groups of
`node.simulate_adversaries`, each (but the whale and the griefers) with the stake of an
equal-sized honest group. Honest members upvote recent posts by their hidden quality, whoever wrote
them (an abuser's post of honest quality draws honest votes too), and use the rules' free
downvotes on whatever post looks most overvalued (`_plan_downvotes`).
Three random streams come from the seed: the honest members', the adversaries' and the griefers'.
The griefers' posts have no quality and their weight-1 votes never catch an honest member's eye,
so honest members act the same with or without the griefers: that makes the griefing harm
(a run with them against one without) a fair comparison. The same config gives the same result.
"""
import hashlib
import math
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from itertools import accumulate
from typing import Callable, NamedTuple

from contracts import DIMENSIONS
from core.crypto import Keypair
from core.errors import InvalidTx
from core.genesis import ChainParams, Genesis, Member, Producer
from core.types import Tx, make_ticket
from state import rules as R
from state import transition as T
from state.kv import MemoryKV
from state.view import Layer

GROUPS = ("honest", "self-vote ring", "leaky ring", "sybil farm", "event clique", "whale",
          "comment spammers", "stake passers", "slot squatters", "post spam")
GRIEFERS = ("slot squatters", "post spam")  # their harm is to others: see `griefing_harm`
CHAIN_ID = "simulation"
GENESIS_MS = 1_767_225_600_000  # 2026-01-01T00:00Z: simulated days are the rules' UTC days
BLOCK_MS = 60_000
BLOCKS_PER_DAY = 1440
TX_TTL_MS = 10 * BLOCK_MS
BALANCE = 1_000_000        # 1,000 CP each at genesis: what welcome transfers come from
WELCOME = 10_000           # a referrer gives each new member 10 CP, which the member stakes
REFER_FEE = 5_000          # what a referrer keeps aside per referral for the rules' fee
MEDIAN_STAKE = 100_000     # honest stake is log-normal around 100 CP

NEWCOMER_PCT = 10
POSTS_PER_DAY = 0.12       # honest rates per day, times the member's activity level
VOTES_PER_DAY = 2.0
DOWNVOTE_CHANCE = 0.25     # a member's daily chance to downvote, times its activity (at most 1)
DOWNVOTE_CANDIDATES = 20   # a downvoter picks one of the 20 posts that look most overvalued
FULL_VOTE = 10000
NOTICED_WEIGHT = 100       # an upvote under 1% adds no value a member would notice
HOST_PCT = 5               # honest founders who organize events, each about once a week
EVENT_BLOCKS = 180         # an event is open for 3 hours
ATTENDEES_MEAN = 12
VOTE_LOOKBACK_DAYS = 6     # votes go to posts younger than the 7-day payout window
SQUAT_TARGETS = 20         # the most active honest authors, whose posts slot squatters vote on


@dataclass(frozen=True, slots=True)
class SimConfig:
    members: int = 1000
    days: int = 30
    seed: int = 1
    griefers: bool = True  # False: the same run without the griefers, to measure their harm


@dataclass(frozen=True, slots=True)
class MemberResult:
    name: str
    group: str
    stake: int  # what the simulation gave the member to stake (genesis or welcome stake)
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
    pools_left: dict[str, int]
    params: dict[str, int]  # the rules parameters in force
    squat_targets: tuple[str, ...]  # the honest authors whose posts the slot squatters vote on
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


@dataclass(frozen=True, slots=True)
class Harm:
    """What griefers cost their targets: content reward with the griefers against without."""
    targets: int
    content_with: int
    content_without: int

    @property
    def harm(self) -> float:
        return 1 - self.content_with / self.content_without if self.content_without else 0.0


@dataclass(slots=True)
class _Actor:
    name: str
    group: str
    key: Keypair
    activity: float
    joined: bool


class _Post(NamedTuple):
    ref: str
    author: str
    group: str
    height: int
    day: int
    quality: float  # hidden: what honest members' votes and judgement follow


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
        from node.simulate_adversaries import Adversaries, sizes  # it builds on this module
        founders = config.members - config.members * NEWCOMER_PCT // 100 \
            - sum(sizes(config.members).values())
        if founders < SQUAT_TARGETS or config.days < 1:
            raise ValueError(f"too few members for {SQUAT_TARGETS} honest founders, or no days")
        self.cfg = config
        self.rng = random.Random(config.seed)  # the honest members'; the others have their own
        self.last_height = config.days * BLOCKS_PER_DAY - 1
        self.actors: dict[str, _Actor] = {}
        self.stakes: dict[str, int] = {}  # what each member stakes at genesis or on joining
        self.balances: dict[str, int] = {}  # genesis balances other than BALANCE
        self.schedule: dict[int, list] = defaultdict(list)  # height -> [(sender, kind, body)]
        self.posts: list[_Post] = []
        self.upvoters: dict[str, set[str]] = defaultdict(set)  # ref -> noticed upvoters scheduled
        self.downvoted: dict[str, set[str]] = defaultdict(set)  # member -> refs it downvoted
        self.sent: dict[str, Counter] = defaultdict(Counter)
        self.applied, self.rejected = Counter(), Counter()
        # per author and sender, so that a member's posts and txs are the same bytes in a run
        # with more or fewer others
        self.permlinks, self.salts = Counter(), Counter()
        self._populate_honest(founders)
        self.adversaries = Adversaries(self)
        founding = [a for a in self.actors.values() if a.joined]
        self.genesis = Genesis(
            CHAIN_ID, GENESIS_MS, ChainParams(block_interval_ms=BLOCK_MS),
            tuple(Member(a.name, a.key.public_key, self.balances.get(a.name, BALANCE),
                         self.stakes[a.name]) for a in founding),
            (Producer(founding[0].name, founding[0].key.public_key, ""),))
        self.kv = MemoryKV()
        self.kv.write(T.genesis_writes(self.genesis))
        self.state = Layer(None, self.kv)  # reads the store; each block's writes go to the store
        self.rules = R.ContractRules()

    # ---------------------------------------------------------------- population and genesis
    def add(self, name: str, group: str, activity: float, joined: bool, stake: int = 0) -> None:
        key = Keypair(hashlib.sha256(f"{CHAIN_ID}:{name}".encode()).digest())
        self.actors[name] = _Actor(name, group, key, activity, joined)
        self.stakes[name] = stake

    def activity(self, rng: random.Random) -> float:
        return min(8.0, rng.lognormvariate(0, 0.8))

    def _populate_honest(self, founders: int) -> None:
        rng = self.rng
        for i in range(1, founders + 1):
            self.add(f"h-{i:04d}", "honest", self.activity(rng), True,
                     max(1000, round(MEDIAN_STAKE * rng.lognormvariate(0, 1.0))))
        self.founders = list(self.actors.values())
        self.founder_weights = list(accumulate(a.activity for a in self.founders))
        self.hosts = [a.name for a in self.founders[:max(1, founders * HOST_PCT // 100)]]
        # newcomers join over the first 80% of the run, so each has time to become active
        newcomers = self.cfg.members * NEWCOMER_PCT // 100
        self.joins = sorted((rng.randint(1, self.last_height * 4 // 5), f"n-{i:04d}")
                            for i in range(1, newcomers + 1))
        for _, name in self.joins:
            self.add(name, "honest", self.activity(rng), False, WELCOME)
        self.mean_stake = sum(self.stakes.values()) // (founders + newcomers)
        self.squat_targets = tuple(sorted(
            a.name for a in sorted(self.founders, key=lambda a: -a.activity)[:SQUAT_TARGETS]))

    # ---------------------------------------------------------------- scheduling actions
    def at(self, height: int, sender: str, kind: str, body: dict) -> None:
        if height <= self.last_height:
            self.schedule[height].append((sender, kind, body))

    def post(self, height: int, author: str, quality: float, **extra) -> str:
        """Schedule a post; one with a quality (not an event, not spam) can be voted and judged."""
        self.permlinks[author] += 1
        number = self.permlinks[author]
        self.at(height, author, "post", {"permlink": f"p{number}", "title": f"post {number}",
                                         "body": "text", "tags": ["community"], **extra})
        ref = f"{author}/p{number}"
        if quality and height <= self.last_height:
            self.posts.append(_Post(ref, author, self.actors[author].group, height,
                                    height // BLOCKS_PER_DAY, quality))
        return ref

    def vote(self, height: int, voter: str, ref: str, weight: int) -> None:
        self.at(height, voter, "vote", {"post": ref, "weight": weight})
        if weight >= NOTICED_WEIGHT:
            self.upvoters[ref].add(voter)

    def event(self, height: int, host: str, capacity: int, blocks: int) -> str:
        """An event post open from the next block for `blocks` blocks."""
        opens = GENESIS_MS + (height + 1) * BLOCK_MS
        return self.post(height, host, 0, event={"capacity": capacity, "starts_at": opens,
                                                 "ends_at": opens + blocks * BLOCK_MS})

    def attend(self, height: int, name: str, event: str, organizer: str) -> None:
        ticket = make_ticket(self.actors[organizer].key, CHAIN_ID, event, name)
        self.at(height, name, "attend", {"event": event, "ticket": ticket})

    def join(self, rng: random.Random, height: int, referrer: str, name: str,
             funding: int = WELCOME, first_act: tuple[int, int] = (10, 720)) -> int:
        """refer + transfer, then the new member stakes its welcome; returns when it first acts."""
        self.at(height, referrer, "refer", {"new_account": name,
                                            "pubkey": self.actors[name].key.public_key})
        self.at(height, referrer, "transfer", {"amount": funding, "to": name})
        self.at(height + 5, name, "stake", {"amount": WELCOME})
        return height + rng.randint(*first_act)

    def behave_ordinarily(self, rng: random.Random, actor: _Actor, heights: range,
                          post_rate: float = POSTS_PER_DAY) -> None:
        """Post at `post_rate` and upvote recent posts (of any author but the griefers, whose
        posts have no quality) by their quality, by activity."""
        for _ in range(_poisson(rng, post_rate * actor.activity)):
            self.post(rng.choice(heights), actor.name, rng.lognormvariate(0, 0.75))
        for _ in range(_poisson(rng, VOTES_PER_DAY * actor.activity) if self.recent else 0):
            target = rng.choices(self.recent, cum_weights=self.recent_quality)[0]
            if target.author != actor.name:
                self.vote(rng.choice(heights), actor.name, target.ref,
                          rng.choice((FULL_VOTE, FULL_VOTE, FULL_VOTE, 5000, 2500)))

    # ---------------------------------------------------------------- planning one day
    def plan_day(self, day: int) -> None:
        """Schedule the day's txs: the honest members', the adversaries', the griefers', then the
        targets of the honest downvotes, judged on every upvote scheduled so far. Votes go to
        posts of earlier days, which exist by now."""
        first = day * BLOCKS_PER_DAY
        heights = range(max(1, first), first + BLOCKS_PER_DAY)
        self.recent = [p for p in self.posts if day - VOTE_LOOKBACK_DAYS <= p.day < day]
        self.recent_quality = list(accumulate(p.quality for p in self.recent))
        self.honest_recent = [p for p in self.recent if p.group == "honest"]
        self.honest_quality = list(accumulate(p.quality for p in self.honest_recent))
        downvoters = self._plan_honest(first, heights)
        self.adversaries.plan_day(day, heights)
        if self.cfg.griefers:
            self.adversaries.plan_griefers(day, heights)
        self._plan_downvotes(downvoters)

    def _plan_honest(self, first: int, heights: range) -> list[tuple[int, str]]:
        """The honest members' day; returns who downvotes when (the targets are chosen last)."""
        rng = self.rng
        honest = [a for a in self.actors.values() if a.joined and a.group == "honest"]
        weights = list(accumulate(a.activity for a in honest))
        for height, name in self.joins:
            if height in heights:  # founders refer: a newcomer's balance went into its stake
                referrer = rng.choices(self.founders, cum_weights=self.founder_weights)[0].name
                self.post(self.join(rng, height, referrer, name), name, 1.0)
        for host in self.hosts:
            if rng.random() < 1 / 7:
                self._honest_event(host, first + rng.randrange(480, 1080), honest, weights)
        downvoters = []
        for a in honest:
            self.behave_ordinarily(rng, a, heights)
            if rng.random() < DOWNVOTE_CHANCE * a.activity:
                downvoters.append((rng.choice(heights), a.name))
        return downvoters

    def _honest_event(self, host: str, height: int, honest: list, weights: list) -> None:
        """An event open for EVENT_BLOCKS; attendees beyond its capacity are refused (event_full)."""
        rng = self.rng
        ref = self.event(height, host, rng.randint(8, 30), EVENT_BLOCKS)
        attendees = {rng.choices(honest, cum_weights=weights)[0].name
                     for _ in range(_poisson(rng, ATTENDEES_MEAN))} - {host}
        for name in sorted(attendees):
            self.attend(rng.randint(height + 1, height + EVENT_BLOCKS), name, ref, host)

    def _plan_downvotes(self, downvoters: list[tuple[int, str]]) -> None:
        """Each downvoter hits one of the DOWNVOTE_CANDIDATES recent posts that look most
        overvalued, (noticed upvoters scheduled on it) / (its quality), that is not its own nor
        already downvoted by it (members judge the same feed, not all the same post)."""
        ranked = sorted((p for p in self.recent if self.upvoters.get(p.ref)),
                        key=lambda p: -len(self.upvoters[p.ref]) / p.quality)
        for height, name in downvoters:
            done = self.downvoted[name]
            candidates = [p for p in ranked[:DOWNVOTE_CANDIDATES + len(done) + 1]
                          if p.author != name and p.ref not in done][:DOWNVOTE_CANDIDATES]
            target = self.rng.choice(candidates) if candidates else None
            if target is not None:
                done.add(target.ref)
                self.vote(height, name, target.ref, -FULL_VOTE)

    # ---------------------------------------------------------------- the chain
    def run_block(self, height: int) -> None:
        """Build and apply one block as a producer does: invalid txs are left out and counted."""
        ts = GENESIS_MS + height * BLOCK_MS
        ctx = T.make_context(self.genesis, height, height, ts)
        block = Layer(self.state)
        T.begin_block(block, ctx, self.rules)
        index = 0
        for sender, kind, body in self.schedule.pop(height, ()):
            self.salts[sender] += 1
            try:  # creating it runs the static checks, which may refuse it too
                tx = Tx.create(self.actors[sender].key, CHAIN_ID, kind, sender, ts + TX_TTL_MS,
                               body, self.salts[sender])
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
        members = tuple(MemberResult(a.name, a.group, self.stakes[a.name], self.rewards(a.name),
                                     tuple(sorted(self.sent[a.name].items())))
                        for a in self.actors.values() if a.joined)
        return SimResult(self.cfg, members, tuple(daily), dict(sorted(self.applied.items())),
                         dict(sorted(self.rejected.items())), self.last_height,
                         {d: R.get_pool(self.state, d) for d in DIMENSIONS},
                         R.get_params(self.state), self.squat_targets, wall_s)


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


def without_griefers(config: SimConfig) -> SimConfig:
    return replace(config, griefers=False)


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


def griefing_harm(with_griefers: SimResult, without: SimResult) -> dict[str, Harm]:
    """Per griefer group, the harm to its targets: the squatters' are the honest authors whose
    posts they vote on, post spam's are all honest members."""
    if not with_griefers.config.griefers or without.config != without_griefers(with_griefers.config):
        raise ValueError("compare a run with the griefers to the same run without them")
    honest = {m.name for m in without.members if m.group == "honest"}
    targets = {"slot squatters": set(with_griefers.squat_targets), "post spam": honest}

    def content(result: SimResult, names: set[str]) -> int:
        return sum(m.rewards[0] for m in result.members if m.name in names)

    return {g: Harm(len(targets[g]), content(with_griefers, targets[g]), content(without, targets[g]))
            for g in GRIEFERS}


def issuance(result: SimResult) -> tuple[int, int, int]:
    """(issued into the pools, paid to members, left in the pools): issuance_per_block each block
    after genesis. The pools also take what the rules charge (fees), so the two parts may add up
    to more than what was issued."""
    paid = sum(sum(m.rewards) for m in result.members)
    return result.params["issuance_per_block"] * result.blocks, paid, sum(result.pools_left.values())


def dimension_gini(result: SimResult) -> dict[str, float]:
    """Gini of each dimension's and of the total rewards across all members."""
    ginis = {d: gini(m.rewards[i] for m in result.members) for i, d in enumerate(DIMENSIONS)}
    ginis["all"] = gini(sum(m.rewards) for m in result.members)
    return ginis

