"""Default community-asset rules (contract source: compiled by contracts.compiler, never imported).

The chain calls these hooks after the base rules of a transaction have been applied:

    on_post()           a post or comment was created: queue it for payout, activate a referral
    on_vote()           a member voted on a post: spend voting power, score the post,
                        award participation points
    on_attend()         a member attended an event: attendance points, once per event
    on_refer()          a member admitted a new member: remember the referral until the new
                        member is active
    on_round(number)    periodically: pay out a bounded batch of matured posts

Three dimensions of community assets are paid with host.award from their reward pools:
content (posts and curation), behaviour (attending, voting) and relationship (referrals).
Amounts are integers in milli-units (1000 = 1.000). Parameters come from host.param; their
defaults are in contracts/rules/__init__.py. Storage keys are "kind:name" strings encoded to bytes.
"""

BPS = 10000                     # basis points: 10000 = 100%
FULL_POWER = 10000              # the voting power of a rested member
DAY_MS = 24 * 60 * 60 * 1000


def _counter(key):
    value = host.storage_get(key)
    if value is None:
        return 0
    return value


# ---- content: posts earn from votes, curators share ----------------------------------------

def on_post():
    """Queue the new post for payout when its window has passed; a first post is activity."""
    tx = host.tx()
    author = tx["sender"]
    ref = author + "/" + tx["body"]["permlink"]
    now = host.block()["timestamp"]
    # keys in canonical (sorted) order, as in every record below: it spares the encoder a sort
    host.storage_set(encode("post:" + ref), {
        "author": author,
        "created_at": now,
        "curation_rshares": 0,  # rshares of the upvotes that earn curation
        "rshares": [],          # each counted vote's rshares, in voting order
        "score": 0,             # net rshares: upvotes minus downvotes
        "voters": [],           # who cast them
    })
    tail = host.storage_get(b"counter:queue_tail")
    if tail is None:
        tail = 0
    host.storage_set(encode("queue:" + str(tail)), ref)
    host.storage_set(b"counter:queue_tail", tail + 1)
    _activate(author, now)


def on_vote():
    """A vote on a post: participation points, then the vote's weight on the post's score.
    A vote reads and writes two records: the voter's (voting power and today's participation)
    and the post's (its score and its votes).

    Participation: participation_points per vote on a post, at most participation_cap_per_day
    a day (UTC).
    """
    tx = host.tx()
    body = tx["body"]
    if "post" not in body:
        return  # a vote for a block producer, not on content
    voter = tx["sender"]
    now = host.block()["timestamp"]
    member_key = encode("member:" + voter)
    member = host.storage_get(member_key)
    if member is None:
        member = {"at": now, "day": -1, "earned": 0, "power": FULL_POWER}  # day -1: none yet
    today = now // DAY_MS
    if member["day"] != today:
        member["day"] = today
        member["earned"] = 0
    points = min(host.param("participation_points"),
                 host.param("participation_cap_per_day") - member["earned"])
    if points > 0:
        host.award(voter, "behaviour", points)
        member["earned"] += points
    post_key = encode("post:" + body["post"])
    post = host.storage_get(post_key)
    # no record: already paid out, or created before these rules were installed
    if post is not None and _count_vote(voter, member, post, body["weight"], now):
        host.storage_set(post_key, post)
    host.storage_set(member_key, member)


def _count_vote(voter, member, post, weight, now):
    """Record the vote's rshares = stake * power spent / FULL_POWER (negative for a downvote)
    in the post; False if the vote does not count.

    A vote spends ceil(weight / vote_power_divisor) of the member's voting power, at most what
    is left; power regenerates linearly from empty to FULL_POWER over vote_regen_ms.
    A member's second vote on the same post replaces the first. Only the first
    max_votes_per_post voters of a post count, which bounds the size of its record. Upvotes by
    anyone but the author share the curation reward.
    """
    author = post["author"]
    if voter == author:
        weight = min(weight, host.param("self_vote_max_bps"))
    voters = post["voters"]
    rshares_of = post["rshares"]
    if voter in voters:  # replacing the member's earlier vote
        index = 0
        while voters[index] != voter:
            index += 1
        previous = rshares_of[index]
        post["score"] -= previous
        if previous > 0 and voter != author:
            post["curation_rshares"] -= previous
    else:
        index = len(voters)
        if index >= host.param("max_votes_per_post"):
            return False
        append(voters, voter)
        append(rshares_of, 0)
    regenerated = (now - member["at"]) * FULL_POWER // host.param("vote_regen_ms")
    power = min(FULL_POWER, member["power"] + regenerated)
    divisor = host.param("vote_power_divisor")
    spent = min(power, (abs(weight) + divisor - 1) // divisor)
    member["power"] = power - spent
    member["at"] = now
    rshares = host.account(voter)["stake"] * spent // FULL_POWER
    if weight < 0:
        rshares = -rshares
    rshares_of[index] = rshares
    post["score"] += rshares
    if rshares > 0 and voter != author:
        post["curation_rshares"] += rshares
    return True


def on_round(round_number):
    """Pay out, oldest first, at most payouts_per_round posts older than payout_window_ms."""
    now = host.block()["timestamp"]
    window = host.param("payout_window_ms")
    budget = host.param("payouts_per_round")
    head = _counter(b"counter:queue_head")
    tail = _counter(b"counter:queue_tail")
    paid = 0
    while paid < budget and head < tail:
        queue_key = encode("queue:" + str(head))
        ref = host.storage_get(queue_key)
        post = host.storage_get(encode("post:" + ref))
        if post["created_at"] + window > now:
            break  # the queue is in creation order: nothing after this has matured either
        _pay_out(ref, post)
        host.storage_delete(queue_key)
        head += 1
        paid += 1
    if paid > 0:
        host.storage_set(b"counter:queue_head", head)
        host.emit("round", {"round": round_number, "paid_posts": paid})
    return paid


def _pay_out(ref, post):
    """reward = score * content_reward_bps / BPS. Curators share curation_bps of it in
    proportion to their rshares, in the order they voted; the author gets the rest, rounding
    dust included. Then the post's record goes."""
    reward = 0
    if post["score"] > 0:
        reward = post["score"] * host.param("content_reward_bps") // BPS
    curation = 0
    if post["curation_rshares"] > 0:
        curation = reward * host.param("curation_bps") // BPS
    to_curators = 0
    if curation > 0:
        voters = post["voters"]
        rshares_of = post["rshares"]
        for index in range(len(voters)):
            voter = voters[index]
            rshares = rshares_of[index]
            if rshares > 0 and voter != post["author"]:
                share = curation * rshares // post["curation_rshares"]
                if share > 0:
                    host.award(voter, "content", share)
                    to_curators += share
    if reward - to_curators > 0:
        host.award(post["author"], "content", reward - to_curators)
    host.storage_delete(encode("post:" + ref))
    host.emit("payout", {"post": ref, "author": post["author"], "reward": reward,
                         "curation": to_curators})


# ---- behaviour: attending events, voting -----------------------------------------------------

def on_attend():
    """attend_points for attending an event, once per event and member; attending is activity."""
    tx = host.tx()
    member = tx["sender"]
    key = encode("attended:" + tx["body"]["event"] + ":" + member)
    if host.storage_get(key) is not None:
        return  # the chain allows one attendance; these rules never pay twice either
    host.storage_set(key, True)
    host.award(member, "behaviour", host.param("attend_points"))
    _activate(member, host.block()["timestamp"])


# ---- relationship: referrals pay when the new member becomes active ---------------------------

def on_refer():
    """Remember who referred the new member; the bonus waits for the member's first activity."""
    tx = host.tx()
    host.storage_set(encode("referral:" + tx["body"]["new_account"]), tx["sender"])


def _activate(member, now):
    """On a member's first post or attendance, pay their referrer referral_bonus, unless the
    referrer already earned referral_cap_per_period bonuses in this period (periods are
    consecutive windows of referral_period_ms); a capped bonus is not paid later."""
    referral_key = encode("referral:" + member)
    referrer = host.storage_get(referral_key)
    if referrer is None:
        return  # no referral pending: a founding member, or already active
    host.storage_delete(referral_key)
    period = now // host.param("referral_period_ms")
    count_key = encode("referrals:" + referrer)
    record = host.storage_get(count_key)
    if record is None or record["period"] != period:
        record = {"count": 0, "period": period}
    if record["count"] >= host.param("referral_cap_per_period"):
        host.emit("referral_capped", {"referrer": referrer, "member": member})
        return
    record["count"] += 1
    host.storage_set(count_key, record)
    host.award(referrer, "relationship", host.param("referral_bonus"))
