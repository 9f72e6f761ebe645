"""Bandwidth: a stake-based allowance per account, so members cannot write for free without bound.

In the spirit of Hive's resource credits and Antelope's staked NET: every tx costs its sender
`tx_base_bandwidth + len(tx.raw)` units (bytes, plus a base per tx so that many small txs cost
too). An account may spend at most its maximum,

    maximum = bandwidth_floor + stake * bandwidth_per_cp // 1000      (stake in milli-CP)

which regenerates linearly from empty to full over `bandwidth_window_ms`. The floor lets a new
member with no stake act a little; stake buys more. Regeneration is lazy: an account stores what
it had left (`bandwidth`) and when (`bandwidth_ms`), updated only when it transacts:

    available = min(maximum, bandwidth + maximum * (now - bandwidth_ms) // bandwidth_window_ms)

with `now` the block's timestamp. An account that never transacted (both 0) is full. A tx that
costs more than `available` is refused (`insufficient_bandwidth`) and changes nothing. Integers
only; `stake` counts maturing stake (it is locked: unstaking takes only active stake).
"""
from core.errors import InvalidTx
from state.records import Account


def compute_maximum(stake: int, floor: int, per_cp: int) -> int:
    """The most an account with `stake` (milli-CP) can hold."""
    return floor + stake * per_cp // 1000


def compute_available(account: Account, now_ms: int, maximum: int, window_ms: int) -> int:
    """What `account` can spend at `now_ms`: what it kept, plus linear regeneration, capped."""
    elapsed = max(0, now_ms - account.bandwidth_ms)
    # bandwidth_ms 0: never charged (no block has timestamp 0: slot 0 is genesis)
    if window_ms <= 0 or account.bandwidth_ms == 0 or elapsed >= window_ms:
        return maximum
    return min(maximum, account.bandwidth + maximum * elapsed // window_ms)


def compute_cost(tx_bytes: int, base: int) -> int:
    return base + tx_bytes


def process_bandwidth(account: Account, tx_bytes: int, ctx) -> None:
    """Charge the sender of a tx of `tx_bytes` bytes, in place (the caller writes the record);
    raise InvalidTx (429) and leave it unchanged if it cannot pay."""
    maximum = compute_maximum(account.stake, ctx.bandwidth_floor, ctx.bandwidth_per_cp)
    available = compute_available(account, ctx.timestamp_ms, maximum, ctx.bandwidth_window_ms)
    cost = compute_cost(tx_bytes, ctx.tx_base_bandwidth)
    # writes are paid for with stake-backed bandwidth: a member with dust stake cannot flood
    if cost > available:
        wait_ms = -(-(cost - available) * ctx.bandwidth_window_ms // maximum) if maximum else 0
        raise InvalidTx("insufficient_bandwidth",
                        f"the tx costs {cost} bandwidth, {available} of {maximum} is available; "
                        f"enough regenerates in {wait_ms} ms (stake more for a larger allowance)",
                        status=429)
    account.bandwidth = available - cost
    account.bandwidth_ms = ctx.timestamp_ms


def check_pending(account: Account, pending_txs: int, pending_bytes: int, tx_bytes: int, ctx) -> None:
    """For admission to a mempool: raise InvalidTx (429) unless what `account` has available
    covers the txs it already has pending there as well as this one (they will be charged first),
    so one account cannot queue more than its allowance will ever pay for."""
    maximum = compute_maximum(account.stake, ctx.bandwidth_floor, ctx.bandwidth_per_cp)
    available = compute_available(account, ctx.timestamp_ms, maximum, ctx.bandwidth_window_ms)
    cost = compute_cost(tx_bytes, ctx.tx_base_bandwidth)
    queued = pending_txs * ctx.tx_base_bandwidth + pending_bytes
    if queued + cost > available:
        raise InvalidTx("insufficient_bandwidth",
                        f"the tx costs {cost} bandwidth and {pending_txs} pending txs of the sender "
                        f"{queued}; {available} of {maximum} is available", status=429)
