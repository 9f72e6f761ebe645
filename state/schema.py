"""Every key layout of the store, in one place, under a version prefix.

`s` keys are chain state: they go through the state transition and into the state root.
`c` keys are the node's chain store: blocks, votes, heights, head, own-signing records.
"""

S = b"v1/s/"
C = b"v1/c/"

ACCOUNT = S + b"acct/"
POST = S + b"post/"
POST_VOTE = S + b"pvote/"
ATTENDANCE = S + b"attend/"
PRODUCER = S + b"prod/"
EQUIVOCATION = S + b"equiv/"  # a producer's recorded equivocation: it is never elected again
# replay keys by second of expiry (state.replay), how many each second holds, and the earliest
# second that may still hold some with the total count
TX_SEEN = S + b"tx/"
TX_SEEN_BUCKET_MS = 1000  # one second of expiry
TX_EXPIRY_COUNT = S + b"txexpn/"
TX_PRUNE_NEXT = S + b"txprune"
# the rules contract: its code, parameters, reward pools and storage; governance proposals
RULES_CODE = S + b"rules/code"
RULES_HASH = S + b"rules/hash"
RULES_PARAM = S + b"rules/param/"
RULES_POOL = S + b"rules/pool/"
RULES_LAST_ROUND = S + b"rules/round"
CONTRACT_STORE = S + b"cstore/"
PROPOSAL = S + b"gov/prop/"
PROPOSAL_CODE = S + b"gov/code/"
PROPOSALS_DUE = S + b"gov/due/"
# proposals by effective height (their code is dropped then) and lapsed ones by deletion height
PROPOSALS_CLOSE = S + b"gov/close/"
PROPOSALS_PRUNE = S + b"gov/prune/"
# stake moving in time (state.staking): entries by due time, and the earliest due time
STAKE_DUE = S + b"stakedue/"
STAKE_NEXT_DUE = S + b"stakenext"
SNAPSHOT_ATTESTED = S + b"snap/attested"  # the latest snapshot height attested on chain (state.snapshot)

BLOCK = C + b"block/"
FINAL_AT_HEIGHT = C + b"height/"
FINAL_HEAD = C + b"head"
VOTES = C + b"votes/"
PENDING_BLOCK = C + b"pending/"
LAST_VOTE = C + b"own/last_vote_slot"
LAST_PRODUCED = C + b"own/last_produced_slot"
GENESIS_HASH = C + b"genesis"
EVIDENCE = C + b"evidence/"  # conflicting pairs this node saw (core.evidence), by producer and kind
# a final tx's height and index, written at commit: its status outlives its pruned replay key
TX_LOCATION = C + b"txloc/"
SNAPSHOT_ROOT = C + b"snaproot/"  # snapshot height -> the commitment this node computed (state.snapshot)
SNAPSHOT_ATTESTED_BY = C + b"snapattest/"  # snapshot height -> height of the final block attesting it
PRUNED_BELOW = C + b"prunedbelow"  # final blocks below this height were pruned (or never held)


def account_key(name: str) -> bytes:
    return ACCOUNT + name.encode()


def post_key(author: str, permlink: str) -> bytes:
    return POST + author.encode() + b"/" + permlink.encode()


def post_vote_key(ref: str, voter: str) -> bytes:
    return POST_VOTE + ref.encode() + b"\x00" + voter.encode()


def attendance_key(event_ref: str, attendee: str) -> bytes:
    return ATTENDANCE + event_ref.encode() + b"\x00" + attendee.encode()


def producer_key(name: str) -> bytes:
    return PRODUCER + name.encode()


def equivocation_key(name: str) -> bytes:
    return EQUIVOCATION + name.encode()


def tx_seen_key(expires_at: int, tx_id: bytes) -> bytes:
    """Sorted by expiry second, so the keys of a due second are one prefix (a copy of a tx has
    the same expiry, so the replay check finds the key from the tx alone)."""
    return tx_seen_prefix(expires_at // TX_SEEN_BUCKET_MS) + tx_id


def tx_seen_prefix(bucket: int) -> bytes:
    return TX_SEEN + height_bytes(bucket)


def tx_expiry_count_key(bucket: int) -> bytes:
    return TX_EXPIRY_COUNT + height_bytes(bucket)


def param_key(name: str) -> bytes:
    return RULES_PARAM + name.encode()


def pool_key(dimension: str) -> bytes:
    return RULES_POOL + dimension.encode()


def contract_storage_key(key: bytes) -> bytes:
    return CONTRACT_STORE + key


def proposal_key(proposal_id: bytes) -> bytes:
    return PROPOSAL + proposal_id


def proposal_code_key(proposal_id: bytes) -> bytes:
    return PROPOSAL_CODE + proposal_id


def stake_due_key(due_ms: int, action: bytes, name: str) -> bytes:
    """Sorted by due time, so the entries that are due are a prefix of the scan."""
    return STAKE_DUE + height_bytes(due_ms) + action + name.encode()


def proposals_due_key(height: int) -> bytes:
    return PROPOSALS_DUE + height_bytes(height)


def proposals_close_key(height: int) -> bytes:
    return PROPOSALS_CLOSE + height_bytes(height)


def proposals_prune_key(height: int) -> bytes:
    return PROPOSALS_PRUNE + height_bytes(height)


def height_bytes(height: int) -> bytes:
    return height.to_bytes(8, "big")


def snapshot_root_key(height: int) -> bytes:
    return SNAPSHOT_ROOT + height_bytes(height)


def snapshot_attested_by_key(height: int) -> bytes:
    return SNAPSHOT_ATTESTED_BY + height_bytes(height)


def tx_location_key(tx_id: bytes) -> bytes:
    return TX_LOCATION + tx_id


def block_key(block_id: bytes) -> bytes:
    return BLOCK + block_id


def final_at_height_key(height: int) -> bytes:
    return FINAL_AT_HEIGHT + height_bytes(height)


def votes_key(block_id: bytes) -> bytes:
    return VOTES + block_id


def evidence_key(producer: str, kind: str) -> bytes:
    return EVIDENCE + producer.encode() + b"/" + kind.encode()


def pending_block_key(height: int, block_id: bytes) -> bytes:
    return PENDING_BLOCK + height_bytes(height) + block_id

# elections and liveness, written with the final block that triggers them (chain store, not state)
SCHEDULE = C + b"sched/"
MISSED = C + b"missed/"
PRODUCED = C + b"produced/"  # epoch -> producers of the final blocks in it (absence is judged on it)
JAILED = C + b"jailed/"  # producer -> height of the final block whose election jailed it


def schedule_key(epoch: int) -> bytes:
    return SCHEDULE + height_bytes(epoch)


def missed_key(name: str) -> bytes:
    return MISSED + name.encode()


def produced_key(epoch: int) -> bytes:
    return PRODUCED + height_bytes(epoch)


def jailed_key(name: str) -> bytes:
    return JAILED + name.encode()
