"""Nothing a client or peer sends may crash a node, through the HTTP API itself: random and mutated
bodies, path segments and queries, on every endpoint, into the real ASGI app (in-process, no
server). Every answer is below 500 and every refusal carries an error code; no block, vote or
mempool entry comes of it."""
import asyncio
import json
import urllib.parse

import msgpack
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from node.api import create_app
from node.service import NodeService
from p2p.envelope import PeerGuard, seal
from p2p.gossip import Peer
from state.kv import MemoryKV
from core.errors import ProtocolError
from core.types import ZERO_HASH, Block, BlockHeader, Hash, Vote, merkle_root
from tests.conftest import CHAIN_ID, make_tx
from tests.test_fuzz_decoders import mutated
from tests.test_p2p import ALICE, AppClient, fresh_tx

VALID_TX = fresh_tx("alice", "transfer", {"to": "bob", "amount": 1})
OTHER_TX = fresh_tx("bob", "vote", {"post": "alice/hello", "weight": 100})
VOTE = Vote.create(ALICE, CHAIN_ID, Hash(bytes([7]) * 32), 1, 3, "alice").encode()
BLOCK = Block.create(ALICE, BlockHeader(CHAIN_ID, 1, Hash(bytes(32)), 3, 1_700_000_001_500, "alice",
                                        merkle_root([VALID_TX.id]), ZERO_HASH, 0), (VALID_TX,)).encode()
OURS = (VALID_TX.raw, OTHER_TX.raw, VOTE, BLOCK)  # of this chain: mutations get past its checks
# (a mutation may undo itself, a flip flipped back: the valid seed itself is no junk)
JUNK = st.one_of(st.binary(max_size=300), mutated(), mutated(OURS).filter(lambda b: b not in OURS))
BATCH = st.lists(JUNK, min_size=1, max_size=4).map(msgpack.packb)  # what a peer batch carries
TEXT = st.text(max_size=40)
QUERY = st.one_of(st.just({}), st.dictionaries(
    st.sampled_from(["wait", "timeout", "from", "count", "status", "x"]),
    st.one_of(TEXT, st.sampled_from(["final", "included", "none", "0", "1", "-1", "nan", "1e999"]),
              st.integers(-10, 10**20).map(str)), max_size=3))
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _answered(r) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:300])
    if r.status_code >= 400:
        code = r.json()["error"]["code"]
        assert type(code) is str
        event(f"{r.status_code} {code}")  # what was exercised: pytest --hypothesis-show-statistics


def _query(params: dict) -> str:
    if params.get("wait") in ("included", "final"):
        params["timeout"] = "0"  # a tx that got in would otherwise hold the request
    return urllib.parse.urlencode(params)


@pytest.fixture
def node(service):
    before = (service.chain.tip().id, len(service.mempool))
    yield service, AppClient(create_app(service))
    assert (service.chain.tip().id, len(service.mempool)) == before


@SETTINGS
@given(body=st.one_of(JUNK, st.one_of(TEXT, st.binary(max_size=200).map(bytes.hex), st.integers()).map(
           lambda t: json.dumps({"tx": t}).encode())),
       ctype=st.sampled_from(["application/msgpack", "application/json", "text/plain", ""]), query=QUERY)
def test_tx_submission_answers_every_body_with_an_error_code(node, body, ctype, query):
    _, client = node
    _answered(client.post(f"/v1/transactions?{_query(query)}", content=body, headers={"content-type": ctype}))


@SETTINGS
@given(st.one_of(st.binary(max_size=300), BATCH,
                 st.recursive(st.one_of(st.integers(-2**63, 2**64 - 1), TEXT, st.binary(max_size=20), st.none()),
                              lambda inner: st.lists(inner, max_size=4), max_leaves=10).map(msgpack.packb)))
def test_batch_submission_answers_every_body_with_an_error_code(node, body):
    _, client = node
    _answered(client.post("/v1/transactions/batch", content=body))


@SETTINGS
@given(path=st.sampled_from(["/v1/transactions/{}", "/v1/accounts/{}", "/v1/posts/{}/{}", "/v1/blocks/{}",
                             "/v1/producers", "/v1/status", "/v1/params", "/v1/rules", "/v1/proposals",
                             "/p2p/blocks", "/metrics"]),
       segments=st.lists(TEXT, min_size=2, max_size=2), query=QUERY)
def test_reads_answer_every_path_and_query(node, path, segments, query):
    _, client = node
    quoted = [urllib.parse.quote(s, safe="") or "x" for s in segments]
    _answered(client.get(path.format(*quoted) + "?" + _query(query)))


@SETTINGS
@given(kind=st.sampled_from(["txs", "block", "votes"]), body=st.one_of(JUNK, BATCH), sealed=st.booleans())
def test_peer_messages_answer_every_body_with_an_error_code(node, kind, body, sealed):
    """Unsigned junk, and junk in an envelope a known node key signed (so that the body's own
    decoders run); the peer guard is reset each time, so that a ban does not stop them early."""
    service, client = node
    service.net.guard = PeerGuard()
    data = seal(ALICE, CHAIN_ID, kind, "alice", body) if sealed else body
    _answered(client.post(f"/p2p/{kind}", content=data, headers={"content-type": "application/msgpack"}))


def test_a_valid_tx_still_gets_in_after_the_fuzzing(node):
    """The fixture's check is not vacuous: what is valid does change the mempool."""
    service, client = node
    tx = make_tx("alice", "transfer", {"to": "bob", "amount": 1}, expires_at=VALID_TX.expires_at, salt=7)
    assert client.post("/v1/transactions", content=tx.raw).status_code == 202
    assert tx.id in service.mempool
    service.mempool.remove([tx.id])


_SYNC: dict = {}


def _sync_answer(service) -> tuple[bytes, list]:
    """What GET /p2p/blocks of a node with 3 final blocks (and one not final) answers, and the ids
    of those final blocks (made once: the same genesis and key make the same blocks)."""
    if not _SYNC:
        other = NodeService(service.config, kv=MemoryKV())
        g = other.genesis
        first = g.slot_at(g.genesis_time_ms + 60_000)
        for slot in range(first, first + 4):
            other.produce(slot)
        _SYNC["answer"] = msgpack.packb(other.sync_entries(1, 10, 1 << 24))
        _SYNC["final"] = [other.chain.final_block_id(h) for h in range(1, 4)]
    return _SYNC["answer"], _SYNC["final"]


@SETTINGS
@given(data=st.data())
def test_a_peer_answering_sync_with_anything_only_raises_protocol_errors(service, data):
    """The catch-up client's side: a sync answer, mutated or random, is applied as far as it is
    valid; whatever else it holds raises a ProtocolError (which ends the round), never anything
    else (which would end the sync loop). What it accepted is a valid prefix of the chain."""
    answer, final_ids = _sync_answer(service)
    body = data.draw(st.one_of(mutated((answer,)), st.binary(max_size=200), BATCH))
    fresh = NodeService(service.config, kv=MemoryKV())  # (the fixture lives across examples)
    peer, net = Peer("http://peer"), fresh.net

    async def go():
        _, entries = net._parse(body, peer)
        await net._apply(entries, peer)
    try:
        asyncio.run(go())
    except ProtocolError as e:
        event(e.code)
    chain = fresh.chain
    event(f"final height {chain.final_height}")
    assert [chain.final_block_id(h) for h in range(1, chain.final_height + 1)] == final_ids[:chain.final_height]
