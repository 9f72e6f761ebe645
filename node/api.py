"""The wallet-facing HTTP API (`/v1/`), per docs/protocol.md.

Every error is `{"error": {"code", "message"}}` with the status the protocol names; an unexpected
exception becomes a 500 `internal_error` for that request only (logged with its traceback), never
a crash of the node; only our own broken invariant (`InvariantBroken`) stops it (node.health).
Bodies are read with a size cap before anything is decoded.
"""
import asyncio
import contextlib
import json
import logging
import urllib.parse

import msgpack
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response, StreamingResponse

from contracts import DIMENSIONS
from core import codec, types
from core.errors import InvariantBroken, Malformed, ProtocolError
from core.genesis import now_ms
from core.quorum import governance_quorum
from core.types import Tx
from node.http import MAX_BATCH_TXS, ClientLimits, client_key, json_response, read_body
from node.metrics import CONTENT_TYPE_LATEST
from node.paging import parse_page_query, scan_page
from node.service import NodeService
from p2p.envelope import RateLimited
from p2p.routes import make_p2p_router
from state import governance, records, rules, schema, transition

log = logging.getLogger("api")
MAX_BATCH_BYTES = 8 * 1024 * 1024
MAX_JSON_TX_BYTES = 2 * types.MAX_TX_BYTES + 64
MAX_WAIT_S = 120.0


async def submit_one(service: NodeService, body: bytes, content_type: str, wait: str | None,
                     timeout: float) -> tuple[int, dict]:
    """POST /v1/transactions: admit one tx, optionally wait until it is included or final."""
    check_route(service)
    tx = decode_submitted_tx(body, content_type)
    service.submit(tx)
    if wait is None:
        return 202, {"id": tx.id.hex(), "status": "pending"}
    result = await service.wait_for(tx.id, wait, timeout)
    reached = result["status"] in ("final", "rejected") or (wait == "included" and result["status"] == "included")
    return (200 if reached else 202), result


def check_route(service: NodeService) -> None:
    """Refuse txs that could never reach a block: a node that neither produces (no key file) nor
    has peers to relay to would hold them as `pending` until they expire."""
    if service.producer_name is None and not service.config.peers:
        raise ProtocolError("no_route", "this node has no peers and does not produce blocks, so no "
                                        "tx sent to it can reach a block: send it to a node that "
                                        "does, or configure `peers`", status=503)


class FastSubmit:
    """The ASGI front of the node: the per-client limits of the wallet API (`ClientLimits`; the
    `/p2p/` endpoints have their own), then POST /v1/transactions served as a bare handler.

    Single-tx submission is the hottest request a node serves; FastAPI's routing, dependency and
    middleware layers cost more CPU than decoding and verifying the tx. Everything else goes to
    the FastAPI app unchanged. Errors have the same shape and codes as the rest of the API."""

    def __init__(self, app, service: NodeService, limits: ClientLimits):
        self.app = app
        self.service = service
        self.limits = limits

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].startswith("/p2p/"):
            return await self.app(scope, receive, send)
        client = scope["client"][0] if scope.get("client") else None
        try:
            self.limits.admit_request(client)
        except RateLimited as e:
            return await _send_error(send, e)
        if scope["path"] != "/v1/transactions" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        try:
            wait, timeout = parse_wait_query(scope["query_string"].decode("latin-1"))
            body = await read_asgi_body(receive, headers, MAX_JSON_TX_BYTES)
            self.limits.admit_txs(client, 1)
            status, doc = await submit_one(self.service, body, headers.get(b"content-type", b"").decode("latin-1"),
                                           wait, timeout)
        except ProtocolError as e:
            return await _send_error(send, e)
        except Exception:
            log.exception("unexpected error on POST /v1/transactions")
            status, doc = 500, {"error": {"code": "internal_error", "message": "the node failed on this request"}}
        await _send_json(send, status, doc)


async def _send_json(send, status: int, doc: dict) -> None:
    payload = json.dumps(doc, separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


async def _send_error(send, e: ProtocolError) -> None:
    await _send_json(send, e.status, {"error": {"code": e.code, "message": e.message}})


async def read_asgi_body(receive, headers: dict, limit: int) -> bytes:
    declared = headers.get(b"content-length", b"")
    if declared.isdigit() and int(declared) > limit:
        raise Malformed("too_large", f"body of {int(declared)} bytes > limit {limit}", status=413)
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Malformed("malformed", "client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Malformed("too_large", f"body > limit {limit} bytes", status=413)
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def error_response(code: str, message: str, status: int) -> Response:
    return json_response({"error": {"code": code, "message": message}}, status)


class NotFound(ProtocolError):
    status = 404


def decode_submitted_tx(body: bytes, content_type: str) -> Tx:
    if content_type.startswith("application/json"):
        try:
            doc = json.loads(body)
            raw = bytes.fromhex(doc["tx"])
        except (ValueError, KeyError, TypeError, RecursionError):  # ([[[... 30,000 deep: RecursionError)
            raise Malformed("malformed", 'a JSON submission is {"tx": "<hex of the signed tx>"}') from None
        return Tx.decode(raw)
    return Tx.decode(body)


def parse_wait_query(query: str) -> tuple[str | None, float]:
    params = dict(urllib.parse.parse_qsl(query)) if query else {}
    wait = params.get("wait")
    if wait in (None, "", "none"):
        return None, 0.0
    if wait not in ("included", "final"):
        raise Malformed("bad_query", "wait is one of none, included, final")
    try:
        timeout = min(float(params.get("timeout", "30")), MAX_WAIT_S)
    except ValueError:
        raise Malformed("bad_query", "timeout is a number of seconds") from None
    if not timeout >= 0:
        raise Malformed("bad_query", "timeout is a number of seconds")
    return wait, timeout


def create_app(service: NodeService) -> "FastSubmit":
    limits = ClientLimits(service.config.api_requests_per_s, service.config.api_txs_per_s)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await service.start()
        yield
        await service.stop()

    app = FastAPI(title="community-chain node", version="1", docs_url="/docs", redoc_url=None,
                  lifespan=lifespan)
    app.state.service = service
    app.include_router(make_p2p_router(service))

    @app.exception_handler(ProtocolError)
    async def _protocol_error(request, exc: ProtocolError):
        return error_response(exc.code, exc.message, exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc):
        return error_response("malformed", "invalid request parameters", 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(code, str(exc.detail), exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request, exc):
        log.exception("unexpected error on %s", request.url.path)
        if isinstance(exc, InvariantBroken):  # e.g. committing what a peer's votes finalized
            service.health.halt(f"our own invariant broke on {request.url.path}: {exc}")
        return error_response("internal_error", "the node failed on this request", 500)

    @app.post("/v1/transactions/batch")
    async def submit_batch(request: Request):
        body = await read_body(request, MAX_BATCH_BYTES)
        check_route(service)
        try:
            items = msgpack.unpackb(body)
        except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
            raise Malformed("malformed", "a batch is a msgpack array of signed-tx byte strings") from None
        if type(items) is not list or not all(type(i) is bytes for i in items):
            raise Malformed("malformed", "a batch is a msgpack array of signed-tx byte strings")
        if len(items) > MAX_BATCH_TXS:
            raise Malformed("too_large", f"at most {MAX_BATCH_TXS} txs per batch", status=413)
        limits.admit_txs(request.client.host if request.client else None, len(items))
        decoded: list[Tx | ProtocolError] = []
        for raw in items:
            try:
                decoded.append(Tx.decode(raw))
            except ProtocolError as e:
                decoded.append(e)
        errors = iter(await service.submit_many([d for d in decoded if isinstance(d, Tx)]))
        results = []
        for raw, item in zip(items, decoded):
            err = item if isinstance(item, ProtocolError) else next(errors)
            tx_id = codec.sha256(raw).hex()
            results.append({"id": tx_id, "status": "pending"} if err is None
                           else {"id": tx_id, "error": {"code": err.code, "message": err.message}})
        accepted = sum(1 for r in results if "status" in r)
        return json_response({"accepted": accepted, "results": results})

    @app.get("/v1/transactions/{tx_id}")
    async def get_tx(tx_id: str):
        try:
            raw_id = bytes.fromhex(tx_id)
        except ValueError:
            raise Malformed("malformed", "a tx id is 64 hex digits") from None
        if len(raw_id) != 32:
            raise Malformed("malformed", "a tx id is 64 hex digits")
        result = service.tx_status(raw_id)
        if result["status"] == "unknown":
            raise NotFound("unknown_tx", "this node has never seen the tx")
        return json_response(result)

    @app.get("/v1/accounts/{name}")
    async def get_account(name: str):
        acct = transition.get_account(service.chain.tip().layer, name) if types.is_name(name) else None
        if acct is None:
            raise NotFound("unknown_account", f"{name} is not a member")
        return json_response(acct.to_json(name))

    @app.get("/v1/posts/{author}/{permlink}")
    async def get_post(author: str, permlink: str):
        ref = types.parse_post_ref(f"{author}/{permlink}")
        post = transition.get_post(service.chain.tip().layer, *ref) if ref else None
        if post is None:
            raise NotFound("unknown_post", f"{author}/{permlink} does not exist")
        return json_response(post.to_json())

    @app.get("/v1/blocks/{ref}")
    async def get_block(ref: str):
        return json_response(block_json(service, ref))

    @app.get("/v1/snapshots")
    async def get_snapshots():
        """The snapshot files this node keeps (node.snapshots), newest first, with the height of
        the final block attesting each (null: not attested yet, so not served yet)."""
        return json_response({"snapshot_interval": service.genesis.params.snapshot_interval,
                              "snapshots": service.snapshots.listing()})

    @app.get("/v1/snapshots/{height}")
    async def get_snapshot(height: str, request: Request):
        """A snapshot file: its manifest and proof, then its chunks (docs/protocol.md, *Snapshots*).
        Metered as sync pages are (p2p.sync_budget): a download goes at the client's allowance,
        so repeated downloads cost the node no more than catch-up sync may."""
        if not height.isdecimal() or len(height) > 18:
            raise Malformed("malformed", "a snapshot is named by its height")
        who = client_key(request.client.host if request.client else None)
        budget = service.net.sync_budget
        budget.admit(who)  # 429 `sync_rate_limited` before anything is opened
        stream = service.snapshots.export(int(height))
        if stream is None:
            raise NotFound("unknown_snapshot", f"no attested snapshot at height {height} here "
                                               "(GET /v1/snapshots lists them)")

        async def metered():
            for piece in stream:
                while True:
                    try:
                        budget.admit(who)
                        break
                    except RateLimited:
                        await asyncio.sleep(0.25)  # paced at the allowance, not refused midway
                budget.charge(who, len(piece))
                try:
                    yield piece
                finally:
                    budget.sent(who, len(piece))
        return StreamingResponse(metered(), media_type="application/octet-stream")

    @app.get("/v1/producers")
    async def get_producers(limit: str | None = None, after: str | None = None):
        """A page of the registered producers by name (node.paging), with the schedule."""
        size, start = parse_page_query(limit, after, after_is_hex=False)
        layer = service.chain.final.layer
        page, more = scan_page(layer, schema.PRODUCER, start, size)
        producers = []
        for k, v in page:
            name = k.decode()
            equivocation = transition.get_equivocation(layer, name)
            producers.append(dict(records.decode(records.ProducerRecord, v).to_json(name),
                                  equivocation=equivocation and equivocation.to_json()))
        schedules = service.chain.schedules
        # jailed for absence and not yet electable again (no `unjail` since, or its term not served)
        jailed = {name: {"height": height, "times": times, "term_blocks": schedules.jail_term(times),
                         "unjailed": rec is not None and rec.unjailed_height > height}
                  for name, (height, times) in sorted(schedules.jails.items())
                  if not schedules.is_eligible_again(name, rec := transition.get_producer(layer, name),
                                                     service.chain.final_height)}
        return json_response({"schedule": service.chain.schedule(), "producers": producers,
                              "next": producers[-1]["name"] if more else None,
                              "missed_slots": service.chain.missed_slots, "jailed": jailed,
                              "evidence": [e.to_json() for e in service.chain.evidence.values()]})

    @app.get("/metrics")
    async def get_metrics():
        return Response(service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/status")
    async def get_status():
        return json_response(service.status())

    @app.get("/v1/params")
    async def get_params():
        return json_response(service.genesis.to_json()["params"])

    @app.get("/v1/rules")
    async def get_rules():
        layer = service.chain.tip().layer
        return json_response({"code_hash": rules.get_code_hash(layer).hex(),
                              "params": rules.get_params(layer),
                              "ranges": {name: list(bounds) for name, bounds
                                         in sorted(rules.PARAM_RANGES.items())},
                              "pools": {d: rules.get_pool(layer, d) for d in DIMENSIONS},
                              "last_round": rules.get_last_round(layer)})

    @app.get("/v1/proposals")
    async def get_proposals(limit: str | None = None, after: str | None = None):
        """A page of the proposals by id (node.paging), with the producers in office."""
        size, start = parse_page_query(limit, after, after_is_hex=True)
        tip = service.chain.tip()
        office = service.chain.schedule(max(tip.slot + 1, service.genesis.slot_at(now_ms())))
        page, more = scan_page(tip.layer, schema.PROPOSAL, start, size)
        proposals = [dict(p.to_json(pid), status=governance.compute_status(p, tip.height + 1))
                     for pid, p in ((pid, records.decode(records.Proposal, v)) for pid, v in page)]
        return json_response({"height": tip.height, "producers": list(office),
                              "quorum": governance_quorum(len(office)), "proposals": proposals,
                              "next": proposals[-1]["id"] if more else None})

    return FastSubmit(app, service, limits)


def block_json(service: NodeService, ref: str) -> dict:
    chain = service.chain
    if ref == "head":
        node = chain.tip()
    elif ref == "final":
        node = chain.final
    elif ref.isdecimal() and len(ref) < 19:  # what int() reads ("²".isdigit() is true, int() refuses it)
        node = None
        n = chain.tip()
        while n is not None and n.height > int(ref) and not n.final:
            n = n.parent
        if n is not None and n.height == int(ref) and not n.final:
            node = n
    else:
        raise Malformed("malformed", "a block reference is a height, head or final")
    if node is not None and not node.final:
        return {"id": node.id.hex(), "header": node.header.to_json(), "final": False,
                "signature": node.block.signature.hex(), "txs": [t.to_json() for t in node.block.txs],
                "votes": [v.to_json() for v in node.votes.values()]}
    height = node.height if node is not None else int(ref)
    if height == 0:
        header = transition.genesis_header(service.genesis)
        return {"id": header.id.hex(), "header": header.to_json(), "final": True, "signature": None,
                "txs": [], "votes": []}
    raw = chain.final_block_bytes(height)
    if raw is None and service.pruner.is_pruned(height):
        raise ProtocolError("pruned", f"block {height} was pruned here: this node keeps final blocks "
                                      f"from {service.pruner.below} on", status=410)
    if raw is None:
        raise NotFound("unknown_block", f"no block at height {ref}")
    block = types.Block.decode(raw)
    votes = [types.Vote.from_list(v).to_json() for v in chain.final_block_votes(block.id)]
    return {"id": block.id.hex(), "header": block.header.to_json(), "final": True,
            "signature": block.signature.hex(), "txs": [t.to_json() for t in block.txs], "votes": votes}
