"""The `/p2p/` endpoints. Pushes (txs, block, vote) must come in an envelope signed by the node key
of a producer in office or of a configured peer (p2p.gossip `key_of`; a registered candidate out of
office gets 403); they are checked against a per-IP limit before the signature is verified and a
per-sender limit after it. Each fault a sender commits (invalid data, a block of the wrong
producer, an unknown parent while we are not behind, a bad tx signature, a message over its rate)
adds to its misbehaviour score (p2p.envelope `FAULT_POINTS`); a sender whose score crosses the ban
threshold is ignored for a while (`GET /p2p/scores` shows scores and bans). `GET /p2p/blocks`
serves public data (final blocks with their votes, then the non-final tree) for catch-up sync, in
pages of at most MAX_SYNC_BYTES, metered in bytes per client address (p2p.sync_budget.SyncBudget).
"""
import logging

import msgpack
from fastapi import APIRouter, Request
from starlette.responses import Response

from core import codec, types
from core.errors import InvalidBlock, InvalidTx, InvalidVote, Malformed, ProtocolError
from core.types import Block, Tx, Vote
from node.http import client_key, json_response, read_body
from p2p.envelope import RateLimited, fault_of, is_penalized, open_envelope

log = logging.getLogger("p2p")
MAX_TXS_BODY = 12 * 1024 * 1024
MAX_TXS_PER_BATCH = 1000
MAX_BLOCK_BODY = types.MAX_BLOCK_BYTES + 1024
MAX_VOTES_PER_BATCH = 64
MAX_VOTES_BODY = MAX_VOTES_PER_BATCH * 512
MAX_SYNC_COUNT = 256
# a sync page holds this many bytes of blocks and votes (or one block, if larger): a request costs
# its sender ~100 bytes and us a page, so pages are small and each client's bytes are metered
# (p2p.sync_budget.SyncBudget); 1 MiB still carries hundreds of ordinary blocks per request
MAX_SYNC_BYTES = 1024 * 1024


class _SentPage(Response):
    """A sync page that says when it has been sent (or its client left), so the bytes of pages
    held in memory for slow readers are counted (p2p.sync_budget.SyncBudget)."""

    def __init__(self, page: bytes, on_sent):
        super().__init__(page, media_type="application/msgpack")
        self.on_sent = on_sent

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_sent()


def make_p2p_router(service) -> APIRouter:
    router = APIRouter(prefix="/p2p")
    net = service.net
    chain_id = service.genesis.chain_id

    async def receive(request: Request, kind: str, limit: int) -> tuple[str, bytes]:
        host = request.client.host if request.client else "?"
        net.ip_guard.admit("ip:" + client_key(host), 0)
        data = await read_body(request, limit)
        sender, body = open_envelope(data, chain_id, kind, net.key_of)
        try:
            net.guard.admit(sender, len(data))
        except RateLimited as e:
            if e.code == "rate_limited":
                net.guard.fault(sender, "flood")
            raise
        return sender, body

    def punish(sender: str, err: ProtocolError) -> None:
        """Charge `sender` for the fault `err` shows, if any; re-raise it if it is invalid data."""
        kind = fault_of(err)
        if kind is not None:
            net.guard.fault(sender, kind)
        if is_penalized(err):
            raise err

    def byte_strings(sender: str, body: bytes, low: int, high: int, what: str) -> list[bytes]:
        """The msgpack array of low..high byte strings a batch carries; anything else is malformed."""
        try:
            items = msgpack.unpackb(body)
        except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
            items = None
        if type(items) is not list or not low <= len(items) <= high or not all(type(i) is bytes for i in items):
            punish(sender, Malformed("malformed", f"{what} is a msgpack array of {low}..{high} byte strings"))
        return items

    @router.post("/txs")
    async def post_txs(request: Request):
        sender, body = await receive(request, "txs", MAX_TXS_BODY)
        raws = byte_strings(sender, body, 0, MAX_TXS_PER_BATCH, "txs")
        txs = []
        for raw in raws:
            if service.holds_tx(codec.sha256(raw)):
                continue  # relayed to us by several peers: skip before decoding
            try:
                txs.append(Tx.decode(raw))
            except (Malformed, InvalidTx) as e:  # static checks: no honest node relays such a tx
                net.guard.fault(sender, "invalid")
                raise Malformed(e.code, f"tx in batch: {e.message}") from None
        # a tx refused here (duplicate, expired, unfunded...) is no fault: honest states differ
        # (as Tendermint's RFC 26 on banning for CheckTx concludes); a bad signature is (an honest
        # node verified it), unless the sender's key just changed
        errors = await service.submit_many(txs, source=sender)
        if any(e is not None and e.code == "bad_signature" for e in errors):
            net.guard.fault(sender, "bad_tx_signature")
        return json_response({"accepted": errors.count(None)}, 202)

    @router.post("/block")
    async def post_block(request: Request):
        sender, body = await receive(request, "block", MAX_BLOCK_BODY)
        try:
            new = await service.import_block_bytes(body, source=sender)
        except InvalidBlock as e:
            log.debug("block from %s refused: %s", sender, e)
            # an unknown parent is honest when we are behind (sync is on its way), or under a race
            if e.code == "unknown_parent" and Block.decode_head(body)[0].height <= service.chain.tip().height + 1:
                net.guard.fault(sender, "unknown_parent")
            punish(sender, e)
            return json_response({"status": e.code}, 202)
        if new:
            return json_response({"status": "accepted"}, 202)
        return json_response({"status": "held" if Block.peek_id(body) in service.chain.held else "known"}, 202)

    @router.post("/votes")
    async def post_votes(request: Request):
        sender, body = await receive(request, "votes", MAX_VOTES_BODY)
        for raw in byte_strings(sender, body, 1, MAX_VOTES_PER_BATCH, "votes"):
            try:
                service.on_vote(Vote.decode(raw), source=sender)
            except (InvalidVote, Malformed) as e:
                log.debug("vote from %s refused: %s", sender, e)
                punish(sender, e)
        return json_response({"status": "accepted"}, 202)

    @router.get("/scores")
    async def get_scores(request: Request):
        """Misbehaviour scores and bans of the senders of pushes (p2p.envelope `PeerGuard.report`)."""
        host = request.client.host if request.client else "?"
        net.ip_guard.admit("ip:" + client_key(host), 0)
        return json_response(net.guard.report(), 200)

    @router.get("/blocks")
    async def get_blocks(request: Request):
        host = request.client.host if request.client else "?"
        net.ip_guard.admit("ip:" + client_key(host), 0)
        try:
            start = int(request.query_params.get("from", "1"))
            count = int(request.query_params.get("count", "64"))
        except ValueError:
            raise Malformed("bad_query", "from and count are integers") from None
        if start < 1 or not 1 <= count <= MAX_SYNC_COUNT:
            raise Malformed("bad_query", f"from >= 1 and 1 <= count <= {MAX_SYNC_COUNT}")
        who = client_key(request.client.host if request.client else None)  # (an IPv6 /64 is one)
        net.sync_budget.admit(who)  # 429 `sync_rate_limited` while its bytes are spent
        final, entries = service.sync_entries(start, count, MAX_SYNC_BYTES)
        if net.liar:  # test-only (p2p.gossip.LIAR_ENV): claims far more, sends nothing
            from p2p.gossip import LIAR_LEAD  # (gossip imports this module)
            final, entries = final + LIAR_LEAD, []
        page = msgpack.packb([final, entries])
        net.sync_budget.charge(who, len(page))
        return _SentPage(page, lambda: net.sync_budget.sent(who, len(page)))

    return router
