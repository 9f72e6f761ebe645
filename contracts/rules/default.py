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


def _now():
    return host.block()["timestamp"]


# ---- content: posts earn from votes, curators share ----------------------------------------

def on_post():
    """Queue the new post for payout when its window has passed; a first post is activity."""
    tx = host.tx()
    author = tx["sender"]
    ref = author + "/" + tx["body"]["permlink"]
    now = _now()
    host.storage_set(encode("post:" + ref), {
        "author": author,
        "created_at": now,
        "score": 0,             # net rshares: upvotes minus downvotes
        "curation_rshares": 0,  # rshares of the upvotes that earn curation
        "votes": 0,             # voters counted so far
    })
    tail = _counter(b"counter:queue_tail")
    host.storage_set(encode("queue:" + str(tail)), ref)
    host.storage_set(b"counter:queue_tail", tail + 1)
    _activate(author, now)


def on_vote():
    """A vote on a post: participation points, then the vote's weight on the post's score.
    The voter's voting power and today's participation are one record, read and written once."""
    tx = host.tx()
    body = tx["body"]
    if "post" not in body:
        return  # a vote for a block producer, not on content
    voter = tx["sender"]
    now = _now()
    member_key = encode("member:" + voter)
    member = host.storage_get(member_key)
    if member is None:
        member = {"power": FULL_POWER, "at": now, "day": -1, "earned": 0}  # day -1: none yet
    _award_participation(voter, member, now)
    _count_vote(voter, member, body["post"], body["weight"], now)
    host.storage_set(member_key, member)


def _count_vote(voter, member, ref, weight, now):
    """Record the vote's rshares = stake * power spent / FULL_POWER (negative for a downvote).

    A member's second vote on the same post replaces the first. Only the first
    max_votes_per_post voters of a post count, which bounds the cost of its payout.
    """
    post_key = encode("post:" + ref)
    post = host.storage_get(post_key)
    if post is None:
        return  # already paid out, or created before these rules were installed
    if voter == post["author"]:
        weight = min(weight, host.param("self_vote_max_bps"))
    voter_key = encode("voter:" + ref + ":" + voter)
    index = host.storage_get(voter_key)
    replacing = index is not None
    if not replacing:
        if post["votes"] >= host.param("max_votes_per_post"):
            return
        index = post["votes"]
        post["votes"] = index + 1
        host.storage_set(voter_key, index)
    vote_key = encode("vote:" + ref + ":" + str(index))
    if replacing:
        previous = host.storage_get(vote_key)
        post["score"] -= previous["rshares"]
        if _earns_curation(post, previous):
            post["curation_rshares"] -= previous["rshares"]
    spent = _spend_power(member, abs(weight), now)
    rshares = host.account(voter)["stake"] * spent // FULL_POWER
    if weight < 0:
        rshares = -rshares
    vote = {"voter": voter, "rshares": rshares}
    host.storage_set(vote_key, vote)
    post["score"] += rshares
    if _earns_curation(post, vote):
        post["curation_rshares"] += rshares
    host.storage_set(post_key, post)


def _earns_curation(post, vote):
    """Upvotes by anyone but the author share the curation reward."""
    return vote["rshares"] > 0 and vote["voter"] != post["author"]


def _spend_power(member, weight, now):
    """Spend ceil(weight / vote_power_divisor) of the member's voting power, at most what is left.

    Power regenerates linearly from empty to FULL_POWER over vote_regen_ms.
    """
    regenerated = (now - member["at"]) * FULL_POWER // host.param("vote_regen_ms")
    power = min(FULL_POWER, member["power"] + regenerated)
    divisor = host.param("vote_power_divisor")
    spent = min(power, (weight + divisor - 1) // divisor)
    member["power"] = power - spent
    member["at"] = now
    return spent


def on_round(round_number):
    """Pay out, oldest first, at most payouts_per_round posts older than payout_window_ms."""
    now = _now()
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
    proportion to their rshares; the author gets the rest, rounding dust included.
    Reads each of the post's votes once and deletes everything the post stored."""
    reward = 0
    if post["score"] > 0:
        reward = post["score"] * host.param("content_reward_bps") // BPS
    curation = 0
    if post["curation_rshares"] > 0:
        curation = reward * host.param("curation_bps") // BPS
    to_curators = 0
    for index in range(post["votes"]):
        vote_key = encode("vote:" + ref + ":" + str(index))
        vote = host.storage_get(vote_key)
        if curation > 0 and _earns_curation(post, vote):
            share = curation * vote["rshares"] // post["curation_rshares"]
            if share > 0:
                host.award(vote["voter"], "content", share)
                to_curators += share
        host.storage_delete(vote_key)
        host.storage_delete(encode("voter:" + ref + ":" + vote["voter"]))
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
    _activate(member, _now())


def _award_participation(voter, member, now):
    """participation_points per vote on a post, at most participation_cap_per_day a day (UTC)."""
    today = now // DAY_MS
    if member["day"] != today:
        member["day"] = today
        member["earned"] = 0
    points = min(host.param("participation_points"),
                 host.param("participation_cap_per_day") - member["earned"])
    if points > 0:
        host.award(voter, "behaviour", points)
        member["earned"] += points


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
        record = {"period": period, "count": 0}
    if record["count"] >= host.param("referral_cap_per_period"):
        host.emit("referral_capped", {"referrer": referrer, "member": member})
        return
    record["count"] += 1
    host.storage_set(count_key, record)
    host.award(referrer, "relationship", host.param("referral_bonus"))
