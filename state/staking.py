"""Stake in time: approvals count only stake that has waited, and unstaked CP stays locked a while.

- `stake` moves CP from the balance into `stake` at once, but it approves producers (it becomes
  active stake) only `stake_activation_delay_ms` later: stake bought or borrowed today cannot
  elect a producer, and so govern, today.
- `unstake` takes only active stake. It stops approving at once and reaches the balance
  `unstake_delay_ms` later (meanwhile it is `unbonding`): one stake cannot approve or vote in one
  account, move to another and do it again within the delay.

What waits is a state entry keyed by its due time (`schema.stake_due_key`), applied at the start
of the first block whose timestamp reaches it, at most MAX_DUE_PER_BLOCK per block (the rest in
the next blocks, in due order), so no block does unbounded work. `STAKE_NEXT_DUE` holds the
earliest due time, so a block with nothing due reads one key. A delay of 0 acts at once.
"""
import msgpack

from core.codec import pack_flat
from state import records, schema
from state.records import Account, ProducerRecord
from state.view import Journal

ACTIVATE, RELEASE = b"a", b"r"
MAX_DUE_PER_BLOCK = 1000


def _get_account(view, name: str) -> Account:
    return records.decode(Account, view.get(schema.account_key(name)))


def add_approval(j: Journal, names, delta: int) -> None:
    """Move the approval of each registered producer in `names` by `delta` (active stake)."""
    for name in names:
        raw = j.get(schema.producer_key(name))
        if raw is not None:
            prod = records.decode(ProducerRecord, raw)
            prod.approval += delta
            j.put(schema.producer_key(name), records.encode(prod))


def _enqueue(j: Journal, action: bytes, name: str, due_ms: int, amount: int) -> None:
    key = schema.stake_due_key(due_ms, action, name)
    old = j.get(key)
    j.put(key, pack_flat(amount + (0 if old is None else msgpack.unpackb(old))))
    next_due = j.get(schema.STAKE_NEXT_DUE)
    if next_due is None or due_ms < msgpack.unpackb(next_due):
        j.put(schema.STAKE_NEXT_DUE, pack_flat(due_ms))


def stake(j: Journal, name: str, sender: Account, amount: int, ctx) -> None:
    """Balance -> stake; active after the activation delay. The caller writes `sender`."""
    sender.balance -= amount
    sender.stake += amount
    if ctx.stake_activation_delay_ms == 0:
        add_approval(j, sender.approvals, amount)
    else:
        sender.maturing += amount
        _enqueue(j, ACTIVATE, name, ctx.timestamp_ms + ctx.stake_activation_delay_ms, amount)


def unstake(j: Journal, name: str, sender: Account, amount: int, ctx) -> None:
    """Active stake -> balance after the unstake delay; it stops approving now."""
    sender.stake -= amount
    add_approval(j, sender.approvals, -amount)
    if ctx.unstake_delay_ms == 0:
        sender.balance += amount
    else:
        sender.unbonding += amount
        _enqueue(j, RELEASE, name, ctx.timestamp_ms + ctx.unstake_delay_ms, amount)


def process_due(layer, now_ms: int) -> None:
    """Apply the entries due at `now_ms` (a block's timestamp), oldest first, at most
    MAX_DUE_PER_BLOCK of them."""
    next_due = layer.get(schema.STAKE_NEXT_DUE)
    if next_due is None or msgpack.unpackb(next_due) > now_ms:
        return
    j = Journal(layer)
    start = len(schema.STAKE_DUE)
    later, done = None, 0
    for key, raw in list(j.scan(schema.STAKE_DUE)):
        due_ms = int.from_bytes(key[start:start + 8], "big")
        if due_ms > now_ms or done == MAX_DUE_PER_BLOCK:
            later = due_ms
            break
        action, name, amount = key[start + 8:start + 9], key[start + 9:].decode(), msgpack.unpackb(raw)
        account = _get_account(j, name)
        if action == ACTIVATE:
            account.maturing -= amount
            add_approval(j, account.approvals, amount)
        else:
            account.unbonding -= amount
            account.balance += amount
        j.put(schema.account_key(name), records.encode(account))
        j.delete(key)
        done += 1
    if later is None:
        j.delete(schema.STAKE_NEXT_DUE)
    else:
        j.put(schema.STAKE_NEXT_DUE, pack_flat(later))
    j.commit()
