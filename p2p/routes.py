"""The `/p2p/` endpoints. Pushes (txs, block, vote) must come in an envelope signed by a known node
key; they are checked against a per-IP limit before the signature is verified and a per-sender
limit after it. A sender caught sending invalid data is ignored for a while. `GET /p2p/blocks`
serves public data (final blocks with their votes, then the non-final tree) for catch-up sync.
"""
import logging

import msgpack
from fastapi import APIRouter, Request
from starlette.responses import Response

from core import codec, types
from core.errors import InvalidBlock, InvalidTx, InvalidVote, Malformed, ProtocolError
from core.types import Block, Tx, Vote
from node.http import json_response, read_body
from p2p.envelope import is_penalized, open_envelope

log = logging.getLogger("p2p")
MAX_TXS_BODY = 12 * 1024 * 1024
MAX_TXS_PER_BATCH = 1000
MAX_BLOCK_BODY = types.MAX_BLOCK_BYTES + 1024
MAX_VOTES_PER_BATCH = 64
MAX_VOTES_BODY = MAX_VOTES_PER_BATCH * 512
MAX_SYNC_COUNT = 256
MAX_SYNC_BYTES = 16 * 1024 * 1024


def make_p2p_router(service) -> APIRouter:
    router = APIRouter(prefix="/p2p")
    net = service.net
    chain_id = service.genesis.chain_id

    async def receive(request: Request, kind: str, limit: int) -> tuple[str, bytes]:
        host = request.client.host if request.client else "?"
        net.ip_guard.admit("ip:" + host, 0)
        data = await read_body(request, limit)
        sender, body = open_envelope(data, chain_id, kind, net.key_of)
        net.guard.admit(sender, len(data))
        return sender, body

    def punish(sender: str, err: ProtocolError) -> None:
        if is_penalized(err):
            net.guard.penalize(sender)
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
                net.guard.penalize(sender)
                raise Malformed(e.code, f"tx in batch: {e.message}") from None
        # a tx refused here (duplicate, expired, unfunded...) is no fault: honest states differ
        errors = await service.submit_many(txs, source=sender)
        return json_response({"accepted": errors.count(None)}, 202)

    @router.post("/block")
    async def post_block(request: Request):
        sender, body = await receive(request, "block", MAX_BLOCK_BODY)
        try:
            new = await service.import_block_bytes(body, source=sender)
        except InvalidBlock as e:
            log.debug("block from %s refused: %s", sender, e)
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

    @router.get("/blocks")
    async def get_blocks(request: Request):
        host = request.client.host if request.client else "?"
        net.ip_guard.admit("ip:" + host, 0)
        try:
            start = int(request.query_params.get("from", "1"))
            count = int(request.query_params.get("count", "64"))
        except ValueError:
            raise Malformed("bad_query", "from and count are integers") from None
        if start < 1 or not 1 <= count <= MAX_SYNC_COUNT:
            raise Malformed("bad_query", f"from >= 1 and 1 <= count <= {MAX_SYNC_COUNT}")
        final, entries = service.sync_entries(start, count, MAX_SYNC_BYTES)
        return Response(msgpack.packb([final, entries]), media_type="application/msgpack")

    return router
