"""The adversaries of `cli.py simulate`: who they are, what they stake and what they do each day.

Each group but the whale and the griefers holds the stake of an equal-sized honest group (the
mean honest stake times its size), so its reward per CP staked compares with the honest one. The
whale holds 44% of all stake. The griefers (slot squatters, post spam) are free accounts with no
stake (their sponsor stakes a little, for the bandwidth of its referrals): what they do is
measured as harm to their targets (`node.simulate.griefing_harm`).

The adversaries draw from their own random stream and the griefers from theirs, both derived from
the seed, so the honest members draw the same numbers whoever else takes part. What the chain
refuses (zero-weight votes, a stake passed on before it matured, an organizer's own ticket) is
counted by error code like any other rejected tx.
"""
import random

from node import simulate as sim

RING_PCT, FARM_PCT = 5, 5        # of the members; the leaky ring is as large as the ring
RING_VOTES_PER_DAY = 10          # 10 full votes a day spend what regenerates (2% each, 20%/day)
LEAK = 0.3                       # the leaky ring's share of votes on honest posts, to look honest
MIN_FAKES = 9                    # more than one period's referral cap even in a small run
ACCOMPLICES = 3                  # the farm's founders of other trees, who vouch for each fake
REFERRALS_PER_REFERRER = 5       # the farmer and each fake refer at most this many fakes
FAKE_VOTES_PER_DAY = 10          # what the daily participation cap pays for
TOKEN_QUALITY = 0.05             # a token post or a spam comment: little worth to anyone
CLIQUE_FRIENDS = 10
CLIQUE_EVENTS_PER_DAY = 24       # one an hour, each open for 30 minutes
CLIQUE_EVENT_BLOCKS = 30
WHALE_STAKE_PCT = 44             # of all stake, the alt's included
ALT_POST_RATE = 3 * sim.POSTS_PER_DAY
COMMENT_SPAMMERS, COMMENTS_PER_DAY = 5, 100
PASSERS = 11
PASSER_POST_RATE = 3 * sim.POSTS_PER_DAY
PASSER_BALANCE = 10_000          # fees only: passing the stake on needs the stake itself
SQUATTER_PCT = 10                # 100 free accounts in a 1,000-member community
POST_SPAM_PCT = 5                # free accounts sharing the spam posts
SPAM_POSTS_PER_MEMBER = 2        # a day: 2,000 posts a day in a 1,000-member community
SPONSOR_STAKE = 10_000           # a griefer sponsor's stake: bandwidth for 100 referrals a day


def sizes(members: int) -> dict[str, int]:
    """Each adversary group's size, griefers included whether they take part or not (so that the
    honest population is the same in both runs of `griefing_harm`)."""
    ring = max(3, members * RING_PCT // 100)
    return {"self-vote ring": ring, "leaky ring": ring,
            "sybil farm": max(1 + ACCOMPLICES + MIN_FAKES, members * FARM_PCT // 100),
            "event clique": 1 + CLIQUE_FRIENDS, "whale": 2, "comment spammers": COMMENT_SPAMMERS,
            "stake passers": PASSERS,
            "slot squatters": 1 + members * SQUATTER_PCT // 100,  # and the sponsor who refers them
            "post spam": 1 + members * POST_SPAM_PCT // 100}


def _referrer_of(index: int) -> int:
    """The farm as a tree: the farmer (0) refers fakes 1..5, fake k refers fakes 5k+1..5k+5."""
    return (index - 1) // REFERRALS_PER_REFERRER


class Adversaries:
    """Adds the adversary groups to a community (`node.simulate._Community`) and plans their days."""

    def __init__(self, community):
        self.c = c = community
        self.rng = random.Random(f"{c.cfg.seed}:adversaries")
        self.griefer_rng = random.Random(f"{c.cfg.seed}:griefers")
        size = sizes(c.cfg.members)
        for group, prefix in (("self-vote ring", "ring"), ("leaky ring", "leaky")):
            self._add_group(group, [f"{prefix}-{i:03d}" for i in range(1, size[group] + 1)], 1.0)
        self._add_farm(size["sybil farm"] - 1 - ACCOMPLICES)
        self._add_group("event clique", ["organizer"] + [f"friend-{i:02d}" for i in
                                                         range(1, CLIQUE_FRIENDS + 1)], None)
        self._add_group("comment spammers",
                        [f"commenter-{i}" for i in range(1, COMMENT_SPAMMERS + 1)], 1.0)
        self.passers = [f"passer-{i:02d}" for i in range(1, PASSERS + 1)]
        self.passed_stake = c.mean_stake * PASSERS
        for name in self.passers:  # the first holds the stake the group passes around
            c.add(name, "stake passers", 1.0, True, self.passed_stake if name == self.passers[0] else 0)
            c.balances[name] = PASSER_BALANCE
        others = sum(c.stakes.values())  # every stake but the whale's, welcome stakes included
        whale_group = others * WHALE_STAKE_PCT // (100 - WHALE_STAKE_PCT)
        c.add("alt", "whale", 1.0, True, c.mean_stake)
        c.add("whale", "whale", 1.0, True, whale_group - c.mean_stake)
        self.squatters = [f"squatter-{i:03d}" for i in range(1, size["slot squatters"])]
        self.spammers = [f"spam-{i:03d}" for i in range(1, size["post spam"])]
        self.squatted = 0  # how many of the community's posts the squatters have seen
        if c.cfg.griefers:  # free accounts: referred by a sponsor, no stake
            for group, sponsor, accounts in (("slot squatters", "squat-sponsor", self.squatters),
                                             ("post spam", "spam-sponsor", self.spammers)):
                c.add(sponsor, group, 1.0, True, SPONSOR_STAKE)
                for name in accounts:
                    c.add(name, group, 0.0, False)

    def _add_group(self, group: str, names: list[str], activity: float | None) -> None:
        """Founding members sharing the stake of an equal-sized honest group, log-normally;
        activity None draws an honest member's activity."""
        c, rng = self.c, self.rng
        draws = [rng.lognormvariate(0, 1.0) for _ in names]
        for name, d in zip(names, draws):
            c.add(name, group, c.activity(rng) if activity is None else activity, True,
                  round(c.mean_stake * len(names) * d / sum(draws)))

    def _add_farm(self, fakes: int) -> None:
        """The farmer holds the farm's stake but the fakes' welcomes, which it passes down the
        referral tree with a referral fee for each fake that refers others, and but the
        accomplices' stake: founders of their own trees, as the rules want a referral's vouchers
        to be, each with a mean stake."""
        c, rng = self.c, self.rng
        names = ["farmer"] + [f"fake-{i:04d}" for i in range(1, fakes + 1)]
        c.add("farmer", "sybil farm", 1.0, True, c.mean_stake * (1 + fakes) - fakes * sim.WELCOME)
        self.accomplices = [f"accomplice-{i}" for i in range(1, ACCOMPLICES + 1)]
        for name in self.accomplices:
            c.add(name, "sybil farm", 1.0, True, c.mean_stake)
        for name in names[1:]:
            c.add(name, "sybil farm", 0.0, False, sim.WELCOME)
        funding = [sim.WELCOME] * len(names)
        for i in range(fakes, 0, -1):
            funding[_referrer_of(i)] += funding[i] + sim.REFER_FEE
        c.balances["farmer"] = sim.BALANCE + funding[0] - sim.WELCOME
        heights = [0] + sorted(rng.randint(1, c.last_height - 120) for _ in range(fakes))
        for i in range(1, fakes + 1):  # a fake refers only once it has joined and been funded
            heights[i] = max(heights[i], heights[_referrer_of(i)] + 1)
        self.fake_joins = [(heights[i], names[i], names[_referrer_of(i)], funding[i])
                           for i in range(1, fakes + 1)]
        self.fake_acts: dict[str, int] = {}  # fake -> the height from which it acts

    def _members(self, group: str) -> list:
        return [a for a in self.c.actors.values() if a.group == group and a.joined]

    # ---------------------------------------------------------------- the day's plans
    def plan_day(self, day: int, heights: range) -> None:
        self._plan_ring("self-vote ring", day, heights, 0)
        self._plan_ring("leaky ring", day, heights, LEAK)
        self._plan_farm(heights)
        self._plan_clique(heights)
        self._plan_whale(heights)
        self._plan_comment_spam(heights)
        self._plan_stake_passing(day, heights)

    def _plan_ring(self, group: str, day: int, heights: range, leak: float) -> None:
        """Members post as honest members do (more posts of honest quality would earn an honest
        author more too: what makes a ring is its votes), vote on each other's posts, as much as
        their voting power sustains, but for a `leak` share of votes on honest posts, and
        self-vote their posts of yesterday."""
        c, rng = self.c, self.rng
        ring_posts = [p for p in c.recent if p.group == group]
        for a in self._members(group):
            for _ in range(sim._poisson(rng, sim.POSTS_PER_DAY * a.activity)):
                c.post(rng.choice(heights), a.name, rng.lognormvariate(0, 0.75))
            others = [p.ref for p in ring_posts if p.author != a.name]
            own = [p.ref for p in ring_posts if p.author == a.name and p.day == day - 1]
            leaked = sum(rng.random() < leak for _ in range(RING_VOTES_PER_DAY)) \
                if leak and c.honest_recent else 0
            targets = rng.sample(others, min(RING_VOTES_PER_DAY - leaked, len(others)))
            if leaked:
                targets += [p.ref for p in rng.choices(c.honest_recent, cum_weights=c.honest_quality,
                                                       k=leaked)]
            for ref in targets + own:
                c.vote(rng.choice(heights), a.name, ref, sim.FULL_VOTE)

    def _plan_farm(self, heights: range) -> None:
        """The farmer is an ordinary member but for its daily event, which its fakes attend with
        tickets it signs (it tries one for itself too). Fakes join down the referral tree, make a
        token post, which each accomplice upvotes in full (the vouchers a referral needs), and
        cast the day's participation in zero-weight votes on the farm's posts, each followed by a
        weight-1 vote for when zero weight is refused."""
        c, rng = self.c, self.rng
        first, last = heights.start, heights.stop - 1
        event = c.event(first, "farmer", 1_000_000, last - first)  # open until the day ends
        c.attend(first + 2, "farmer", event, "farmer")
        c.behave_ordinarily(rng, c.actors["farmer"], heights)
        for height, name, referrer, funding in self.fake_joins:
            if height in heights:
                acts = self.fake_acts[name] = c.join(rng, height, referrer, name, funding, (10, 60))
                token = c.post(acts, name, TOKEN_QUALITY)
                for accomplice in self.accomplices:
                    c.vote(acts + rng.randint(1, 60), accomplice, token, sim.FULL_VOTE)
        farm_posts = [p.ref for p in c.recent if p.group == "sybil farm"]
        for name, acts in self.fake_acts.items():
            if acts <= last - 2:
                height = max(acts, rng.randint(first + 2, last - 2))
                c.attend(height, name, event, "farmer")
                for ref in rng.choices(farm_posts, k=FAKE_VOTES_PER_DAY) if farm_posts else ():
                    c.vote(height, name, ref, 0)
                    c.vote(height + 1, name, ref, 1)

    def _plan_clique(self, heights: range) -> None:
        """Ordinary members, but the organizer holds an event an hour and its friends attend all."""
        c, rng = self.c, self.rng
        friends = [a.name for a in self._members("event clique") if a.name != "organizer"]
        for hour in range(CLIQUE_EVENTS_PER_DAY):
            height = heights.start + hour * 60
            event = c.event(height, "organizer", CLIQUE_FRIENDS, CLIQUE_EVENT_BLOCKS)
            for name in friends:
                c.attend(rng.randint(height + 1, height + CLIQUE_EVENT_BLOCKS), name, event, "organizer")
        for a in self._members("event clique"):
            c.behave_ordinarily(rng, a, heights)

    def _plan_whale(self, heights: range) -> None:
        """The alt posts at three times the honest rate; the whale votes each post in full at once."""
        c, rng = self.c, self.rng
        for _ in range(sim._poisson(rng, ALT_POST_RATE)):
            height = rng.choice(heights)
            c.vote(height + 1, "whale", c.post(height, "alt", rng.lognormvariate(0, 0.75)),
                   sim.FULL_VOTE)

    def _plan_comment_spam(self, heights: range) -> None:
        """Each spammer comments 100 times a day, on its own posts or recent honest ones (half
        each, as there are), and self-votes each comment in full."""
        c, rng = self.c, self.rng
        for a in self._members("comment spammers"):
            own = [p.ref for p in c.recent if p.author == a.name]
            honest = [p.ref for p in c.honest_recent]
            for _ in range(COMMENTS_PER_DAY):
                parents = own if own and (rng.random() < 0.5 or not honest) else honest
                extra = {"parent": rng.choice(parents)} if parents else {}
                height = rng.choice(heights)
                c.vote(height + 1, a.name, c.post(height, a.name, TOKEN_QUALITY, **extra),
                       sim.FULL_VOTE)

    def _plan_stake_passing(self, day: int, heights: range) -> None:
        """The day's holder votes the group's posts in full, then unstakes the passed stake and
        transfers it to the next account, which stakes it. The script assumes each step works;
        the chain's stake delays refuse most of them."""
        c, rng = self.c, self.rng
        for _ in range(sim._poisson(rng, PASSER_POST_RATE)):
            c.post(rng.choice(heights), self.passers[0], rng.lognormvariate(0, 0.75))
        holder = self.passers[day % PASSERS]
        successor = self.passers[(day + 1) % PASSERS]
        own = [p.ref for p in c.recent if p.group == "stake passers"]
        for i, ref in enumerate(rng.sample(own, min(RING_VOTES_PER_DAY, len(own)))):
            c.vote(heights.start + 1 + i, holder, ref, sim.FULL_VOTE)
        passing = heights.start + 600
        c.at(passing, holder, "unstake", {"amount": self.passed_stake})
        c.at(passing + 1, holder, "transfer", {"amount": self.passed_stake, "to": successor})
        c.at(passing + 2, successor, "stake", {"amount": self.passed_stake})

    # ---------------------------------------------------------------- the griefers
    def plan_griefers(self, day: int, heights: range) -> None:
        """Squatters vote weight 1 on each new post of the squat targets in the block after it
        appears, taking the post's counted voter slots; post spam posts SPAM_POSTS_PER_MEMBER
        posts a day per community member, spread over its accounts."""
        c, rng = self.c, self.griefer_rng
        if day == 0:
            for sponsor, accounts in (("squat-sponsor", self.squatters),
                                      ("spam-sponsor", self.spammers)):
                for name in accounts:
                    c.at(1, sponsor, "refer", {"new_account": name,
                                               "pubkey": c.actors[name].key.public_key})
        targets = set(c.squat_targets)
        for p in c.posts[self.squatted:]:
            if p.author in targets:
                for name in self.squatters:
                    c.vote(p.height + 1, name, p.ref, 1)
        self.squatted = len(c.posts)
        spam_heights = range(max(2, heights.start), heights.stop)  # after the referrals
        for i in range(SPAM_POSTS_PER_MEMBER * c.cfg.members):
            c.post(rng.choice(spam_heights), self.spammers[i % len(self.spammers)], 0)
