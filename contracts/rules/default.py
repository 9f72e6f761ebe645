"""Default community-asset rules, v2 (contract source: compiled by contracts.compiler, never imported).

The chain calls on_post, on_vote, on_attend and on_refer after the base rules of such a tx, and
on_round(number) periodically. Every reward is a share of what its pool actually holds: a claim
is paid pool * claim / recent_claims, where recent_claims are the dimension's claims of the last
claims_decay_ms (decaying linearly), so the pools pay out what issuance puts in, and no rate is
fixed that abuse could multiply. Only a member with min_earning_stake of active stake earns.
contracts/README.md gives the reason for each defence below.
"""

BPS = 10000                     # basis points: 10000 = 100%
FULL_POWER = 10000              # the voting power of a rested member
DAY_MS = 24 * 60 * 60 * 1000
WEEK_MS = 7 * DAY_MS


# ---- shared: members, trees, paying shares of a pool -----------------------------------------

def _member(name, now):
    """A member's record: voting powers, the day's and the week's counters, its referral tree.
    Members without a record (founders, or members from before these rules) are their own
    tree's root. "pending": its referral waits for activation (see _try_activate)."""
    record = host.storage_get(encode("member:" + name))
    if record is None:
        record = {"at": now, "attends": 0, "day": -1, "down": FULL_POWER, "paid": 0,
                  "pending": False, "posts": 0, "power": FULL_POWER, "root": name, "selfs": 0,
                  "week": -1}
    today = now // DAY_MS
    if record["day"] != today:
        record["day"] = today
        record["paid"] = 0
        record["posts"] = 0
        record["selfs"] = 0
    week = now // WEEK_MS
    if record["week"] != week:
        record["week"] = week
        record["attends"] = 0
    return record


def _pay(claims, member, dimension, claim):
    """Pay member claim's share of the dimension's pool: pool * claim / recent claims (this one
    added to `claims`, which the caller stores), and at most max_payout_bps of the pool."""
    if claim <= 0:
        return
    claims[dimension] += claim
    pool = host.pool(dimension)
    amount = min(pool * claim // claims[dimension], pool * host.param("max_payout_bps") // BPS)
    if amount > 0:
        host.award(member, dimension, amount)


def _recent_claims(now):
    """Each dimension's claims of the last claims_decay_ms, decaying linearly with time."""
    claims = host.storage_get(b"claims")
    if claims is None:
        return {"at": now, "behaviour": 0, "content": 0, "relationship": 0}
    decay = host.param("claims_decay_ms")
    left = max(0, decay - (now - claims["at"]))
    for dimension in ["behaviour", "content", "relationship"]:
        claims[dimension] = claims[dimension] * left // decay
    claims["at"] = now
    return claims


# ---- content: posts earn from votes, curators share ----------------------------------------

def on_post():
    """Record the post (an event: its organizer and length) and queue it for payout, if it is
    one of its author's first posts_paid_per_day posts and comments of the day (the rest earn,
    and their attendances pay, nothing: a flood of posts cannot catch more members' votes)."""
    tx = host.tx()
    author = tx["sender"]
    body = tx["body"]
    ref = author + "/" + body["permlink"]
    now = host.now()
    member = _member(author, now)
    member["posts"] += 1
    if member["posts"] <= host.param("posts_paid_per_day"):
        # keys in canonical (sorted) order, as in every record here: it spares the encoder a
        # sort. curation: the rshares of upvotes that earn curation; score: net rshares; the
        # i-th kept vote is voters[i] with rshares[i]; root: the author's referral tree
        host.storage_set(encode("post:" + ref), {
            "author": author, "created_at": now, "curation": 0, "pending": member["pending"],
            "root": member["root"], "rshares": [], "score": 0, "voters": []})
        queue = _queue()
        host.storage_set(encode("queue:" + str(queue["tail"])), ref)
        queue["tail"] += 1
        host.storage_set(b"queue", queue)
        if "event" in body:  # kept until the post is paid out, like the post
            event = body["event"]
            host.storage_set(encode("event:" + ref), {
                "length": event["ends_at"] - event["starts_at"], "organizer": author})
    if member["pending"]:
        member["pending"] = _try_activate(author, now)
    host.storage_set(encode("member:" + author), member)


def _queue():
    """The payout queue's bounds: posts head .. tail - 1 wait, in creation order."""
    queue = host.storage_get(b"queue")
    if queue is None:
        return {"head": 0, "tail": 0}
    return queue


def on_vote():
    """A vote on a post: weigh it on the post, participation points, a referral vouch."""
    tx = host.tx()
    body = tx["body"]
    if "post" not in body:
        return  # a vote for a block producer, not on content
    voter = tx["sender"]
    now = host.now()
    member = _member(voter, now)
    post_key = encode("post:" + body["post"])
    post = host.storage_get(post_key)
    # no record: already paid out, or created before these rules were installed
    if post is not None:
        first = voter not in post["voters"]
        stake = host.stake(voter)
        rshares = _count_vote(voter, member, post, body["weight"], stake, now)
        if rshares != 0:
            host.storage_set(post_key, post)
            claims = _recent_claims(now)
            if rshares > 0 and voter != post["author"]:
                claims["content"] += rshares
            earning = stake >= host.param("min_earning_stake")
            # a first vote of an earning member on another tree's post: participation, a vouch
            judged = earning and first and post["root"] != member["root"] and voter != post["author"]
            if judged and member["paid"] < host.param("participation_votes_per_day"):
                member["paid"] += 1
                _pay(claims, voter, "behaviour", host.param("participation_points"))
            host.storage_set(b"claims", claims)
            if earning and rshares > 0 and voter != post["author"]:
                # one small record per pair (a bounded list could be flushed by throwaway
                # upvoters), and only an earning voter's: dust stakes add no state
                host.storage_set(encode("upvoted:" + voter + ">" + post["author"]), now)
            if judged and rshares > 0 and post["pending"]:
                _vouch(post["author"], voter, now)
    if member["pending"]:
        member["pending"] = _try_activate(voter, now)
    host.storage_set(encode("member:" + voter), member)


def _count_vote(voter, member, post, weight, stake, now):
    """Record the vote's rshares (active stake * power spent / FULL_POWER) in the post and
    return them; 0 if it does not count. A vote spends power * weight / BPS / divisor of the
    member's upvote or free downvote power, each refilling linearly over vote_regen_ms: the
    more one votes, the less each vote weighs. A second vote replaces the first; a full post
    drops its smallest vote for a larger one."""
    author = post["author"]
    due = post["created_at"] + host.param("payout_window_ms")
    if weight > 0 and now >= due - host.param("upvote_lockout_ms"):
        return 0
    if voter == author:
        if member["selfs"] >= host.param("self_votes_per_day"):
            return 0
        member["selfs"] += 1
        weight = min(weight, host.param("self_vote_max_bps"))
    regen = host.param("vote_regen_ms")
    divisor = host.param("vote_power_divisor")
    elapsed = now - member["at"]
    member["at"] = now
    member["power"] = min(FULL_POWER, member["power"] + elapsed * FULL_POWER // regen)
    down_full = FULL_POWER * host.param("downvote_power_bps") // BPS
    member["down"] = min(down_full, member["down"] + elapsed * down_full // regen)
    if weight > 0:
        spent = member["power"] * weight // BPS // divisor
        member["power"] -= spent
    else:
        spent = member["down"] * -weight // BPS // divisor
        member["down"] -= spent
    rshares = stake * spent // FULL_POWER
    if weight > 0 and voter != author:  # vote trading: an upvote for a recent fan counts less
        upvoted = host.storage_get(encode("upvoted:" + author + ">" + voter))
        if upvoted is not None and now < upvoted + host.param("reciprocity_ms"):
            rshares = rshares * host.param("reciprocal_vote_bps") // BPS
    if rshares == 0:
        return 0
    if weight < 0:
        rshares = -rshares
    voters = post["voters"]
    rshares_of = post["rshares"]
    index = _slot(voters, rshares_of, voter, rshares)
    if index < 0:
        return 0
    if index < len(voters):  # the member's earlier vote, or the smallest one, goes
        post["score"] -= rshares_of[index]
        if rshares_of[index] > 0 and voters[index] != author:
            post["curation"] -= rshares_of[index]
        voters[index] = voter
        rshares_of[index] = rshares
    else:
        append(voters, voter)
        append(rshares_of, rshares)
    post["score"] += rshares
    if rshares > 0 and voter != author:
        post["curation"] += rshares
    return rshares


def _slot(voters, rshares_of, voter, rshares):
    """Where the vote goes: the voter's earlier vote, a free place, the place of the smallest
    vote if that is smaller than this one, or -1 (it does not count)."""
    count = len(voters)
    if voter in voters:
        index = 0
        while voters[index] != voter:
            index += 1
        return index
    if count < host.param("max_votes_per_post"):
        return count
    smallest = 0
    for index in range(1, count):
        if abs(rshares_of[index]) < abs(rshares_of[smallest]):
            smallest = index
    if abs(rshares_of[smallest]) < abs(rshares):
        return smallest
    return -1


def on_round(round_number):
    """Pay every matured post, oldest first: each takes 1 + its number of votes from
    payout_budget_per_round, so spam posts without votes are cleared cheaply."""
    now = host.now()
    window = host.param("payout_window_ms")
    budget = host.param("payout_budget_per_round")
    queue = _queue()
    paid = 0
    rewards = 0
    while budget > 0 and queue["head"] < queue["tail"]:
        queue_key = encode("queue:" + str(queue["head"]))
        ref = host.storage_get(queue_key)
        post = host.storage_get(encode("post:" + ref))
        if post["created_at"] + window > now:
            break  # the queue is in creation order: nothing after this has matured either
        budget -= 1 + len(post["voters"])
        rewards += _pay_out(ref, post, now)
        host.storage_delete(queue_key)
        queue["head"] += 1
        paid += 1
    if paid > 0:
        host.storage_set(b"queue", queue)
        # one event per round: a call emits at most 64, and a round may pay hundreds of posts
        host.emit("round", {"paid_posts": paid, "rewards": rewards, "round": round_number})
    return paid


def _pay_out(ref, post, now):
    """Pay the post's claim, curve(score), as a share of the content pool (see _pay): curators
    share curation_bps by rshares, the author gets the rest, rounding dust included."""
    reward = 0
    claim = 0
    if post["score"] > 0:  # the curve is 0 for a tiny score: no reward
        s = host.param("curve_s")
        claim = post["score"] * (post["score"] + 2 * s) // (post["score"] + 4 * s)
    if claim > 0:
        pool = host.pool("content")
        reward = min(pool * claim // max(_recent_claims(now)["content"], claim),
                     pool * host.param("max_payout_bps") // BPS)
    to_curators = 0
    if reward > 0 and post["curation"] > 0:
        curation = reward * host.param("curation_bps") // BPS
        voters = post["voters"]
        rshares_of = post["rshares"]
        for index in range(len(voters)):
            rshares = rshares_of[index]
            if rshares > 0 and voters[index] != post["author"]:
                share = curation * rshares // post["curation"]
                if share > 0:
                    host.award(voters[index], "content", share)
                    to_curators += share
    if reward - to_curators > 0:
        host.award(post["author"], "content", reward - to_curators)
    host.storage_delete(encode("post:" + ref))
    host.storage_delete(encode("event:" + ref))
    return reward


# ---- behaviour: attending events -----------------------------------------------------------

def on_attend():
    """attend_points for attending an event, if the event lasted between min_event_ms and
    max_event_ms, the attendee is not its organizer and earns, within attends_per_week for the
    attendee and organizer_attends_per_week for the organizer; halved for each attendance of
    the same organizer's events already paid in the same repeat_period_ms."""
    tx = host.tx()
    attendee = tx["sender"]
    now = host.now()
    member = _member(attendee, now)
    event = host.storage_get(encode("event:" + tx["body"]["event"]))
    if event is not None and _attendance_counts(attendee, member, event, now):
        repeats = _bump("pair:" + attendee + ":" + event["organizer"],
                        now // host.param("repeat_period_ms"), 1000)
        points = host.param("attend_points")
        for _ in range(min(repeats, 16)):
            points = points // 2
        member["attends"] += 1
        claims = _recent_claims(now)
        _pay(claims, attendee, "behaviour", points)
        host.storage_set(b"claims", claims)
    if member["pending"]:
        member["pending"] = _try_activate(attendee, now)
    host.storage_set(encode("member:" + attendee), member)


def _attendance_counts(attendee, member, event, now):
    """Whether the attendance pays (and if so, one more for its organizer this week)."""
    organizer = event["organizer"]
    if attendee == organizer or host.stake(attendee) < host.param("min_earning_stake"):
        return False
    if event["length"] < host.param("min_event_ms") or event["length"] > host.param("max_event_ms"):
        return False
    if member["attends"] >= host.param("attends_per_week"):
        return False
    week = now // WEEK_MS
    return _bump("organized:" + organizer, week, host.param("organizer_attends_per_week")) >= 0


# ---- relationship: a referral pays once the newcomer is valued by other trees -----------------

def on_refer():
    """The newcomer joins the referrer's tree; its referral waits for activation."""
    tx = host.tx()
    referrer = tx["sender"]
    now = host.now()
    newcomer = tx["body"]["new_account"]
    root = _member(referrer, now)["root"]
    record = _member(newcomer, now)
    record["pending"] = True
    record["root"] = root
    host.storage_set(encode("member:" + newcomer), record)
    host.storage_set(encode("referral:" + newcomer), {"joined": now, "referrer": referrer,
                                                      "root": root, "vouchers": []})


def _vouch(author, voter, now):
    """An earning member of another tree upvoted the author: one voucher towards activation, if
    the voter has vouched fewer than vouches_per_period times in the referral period (so a few
    accomplices cannot activate a farm)."""
    key = encode("referral:" + author)
    referral = host.storage_get(key)
    if referral is None or voter in referral["vouchers"]:
        return
    period = now // host.param("referral_period_ms")
    if (len(referral["vouchers"]) < host.param("activation_vouchers")
            and _bump("vouches:" + voter, period, host.param("vouches_per_period")) >= 0):
        append(referral["vouchers"], voter)
        host.storage_set(key, referral)
    _try_activate(author, now)


def _try_activate(newcomer, now):
    """Pay the referrer once the newcomer is referral_min_age_ms old and activation_vouchers
    members of other trees vouched, within the caps per referrer and per tree of the period (a
    capped bonus is forfeited). True while the referral still waits."""
    key = encode("referral:" + newcomer)
    referral = host.storage_get(key)
    if referral is None:
        return False
    if (len(referral["vouchers"]) < host.param("activation_vouchers")
            or now < referral["joined"] + host.param("referral_min_age_ms")):
        return True
    host.storage_delete(key)
    period = now // host.param("referral_period_ms")
    referrer = referral["referrer"]
    if (_bump("referrals:" + referrer, period, host.param("referral_cap_per_period")) >= 0
            and _bump("tree:" + referral["root"], period,
                      host.param("referral_tree_cap_per_period")) >= 0):
        claims = _recent_claims(now)
        _pay(claims, referrer, "relationship", host.param("referral_points"))
        host.storage_set(b"claims", claims)
    else:
        host.emit("referral_capped", {"referrer": referrer, "member": newcomer})
    return False


def _bump(name, period, cap):
    """Count one more in this period under name and return the count before; -1 (and count
    nothing) at the cap."""
    key = encode(name)
    record = host.storage_get(key)
    if record is None or record["period"] != period:
        record = {"count": 0, "period": period}
    if record["count"] >= cap:
        return -1
    record["count"] += 1
    host.storage_set(key, record)
    return record["count"] - 1
