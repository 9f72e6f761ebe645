"""The /p2p/ endpoints in-process: only envelopes signed by a known node key get through; a peer
that sends invalid data is ignored for a while; rate limits; txs are not echoed to their sender;
sync serves final blocks with their votes."""
import asyncio
import dataclasses
import os
import signal
import time

import httpx
import msgpack
import pytest

from core.crypto import Keypair
from core.types import PROTOCOL_VERSION, ZERO_HASH, Block, BlockHeader, Hash, Vote, merkle_root
from node.api import create_app
from node.orphans import MAX_ORPHAN_VOTES, MAX_ORPHAN_VOTES_PER_SOURCE
from node.service import NodeService
from node.verify_worker import NICE
from p2p.envelope import PeerGuard, seal
from p2p.gossip import Peer
from state.kv import MemoryKV
from state.transition import get_account
from tests.conftest import CHAIN_ID, make_tx, node_keypair

ALICE = node_keypair("alice")


def fresh_tx(sender, kind, body):
    return make_tx(sender, kind, body, expires_at=time.time_ns() // 1_000_000 + 600_000)


class AppClient:
    """Requests straight into the ASGI app (no server, no lifespan: no producer loop, no peers)."""

    def __init__(self, app):
        self.app = app

    def _run(self, method, path, **kw):
        async def go():
            async with httpx.AsyncClient(transport=httpx.ASGITransport(self.app),
                                         base_url="http://node") as c:
                return await c.request(method, path, **kw)
        return asyncio.run(go())

    def post(self, path, **kw):
        return self._run("POST", path, **kw)

    def get(self, path, **kw):
        return self._run("GET", path, **kw)


@pytest.fixture
def client(service):
    return AppClient(create_app(service))


def post(client, path, kind, body, key=ALICE, sender="alice"):
    return client.post(path, content=seal(key, CHAIN_ID, kind, sender, body),
                       headers={"content-type": "application/msgpack"})


def test_unknown_sender_and_bad_signature_are_refused(client):
    body = msgpack.packb([fresh_tx("bob", "stake", {"amount": 5}).raw])
    r = post(client, "/p2p/txs", "txs", body, key=Keypair(bytes(32)), sender="mallory")
    assert (r.status_code, r.json()["error"]["code"]) == (401, "unknown_peer")
    r = post(client, "/p2p/txs", "txs", body, key=Keypair(bytes(32)))
    assert (r.status_code, r.json()["error"]["code"]) == (401, "bad_signature")
    r = post(client, "/p2p/block", "txs", body)  # signed for another endpoint
    assert r.json()["error"]["code"] == "bad_signature"
    r = client.post("/p2p/votes", content=b"\xc1garbage")
    assert (r.status_code, r.json()["error"]["code"]) == (400, "malformed")


def test_txs_from_a_peer_are_admitted_and_not_echoed_back(service, client):
    tx = fresh_tx("bob", "stake", {"amount": 5})
    service.net.peers = [Peer("http://a"), Peer("http://c")]
    service.net.peers[0].name, service.net.peers[1].name = "alice", "carol"
    for p in service.net.peers:
        p.ok = True
    r = post(client, "/p2p/txs", "txs", msgpack.packb([tx.raw, tx.raw]))
    assert (r.status_code, r.json()["accepted"]) == (202, 1)
    assert tx.id in service.mempool
    assert service.net.peers[0].txs == [] and service.net.peers[1].txs == [tx.raw]


def test_a_peer_sending_an_invalid_block_is_ignored_for_a_while(client):
    r = post(client, "/p2p/block", "block", b"\x93\x01\x02\x03")
    assert (r.status_code, r.json()["error"]["code"]) == (400, "malformed")
    r = post(client, "/p2p/txs", "txs", msgpack.packb([]))
    assert (r.status_code, r.json()["error"]["code"]) == (429, "peer_banned")


def test_rate_limit_per_sender():
    guard = PeerGuard(msgs_per_s=5)
    for _ in range(10):
        guard.admit("alice", 100)
    with pytest.raises(Exception) as e:
        guard.admit("alice", 100)
    assert e.value.code == "rate_limited"
    guard.admit("bob", 100)  # others are unaffected


def test_block_and_vote_from_a_peer_are_accepted_and_sync_serves_final_blocks(service, client):
    g = service.genesis
    first = g.slot_at(g.genesis_time_ms + 60_000)
    # blocks made on another node with alice's key, delivered over /p2p/
    other = NodeService(service.config, kv=MemoryKV())
    for slot in range(first, first + 4):
        other.produce(slot)
    oc = other.chain
    sent = [(oc.final_block_bytes(h), oc.final_block_votes(oc.final_block_id(h)))
            for h in range(1, oc.final_height + 1)]
    sent += [(n.block.encode(), [v.to_list() for v in n.votes.values()])
             for n in oc.nodes.values() if not n.final]
    for raw, votes in sent:
        assert post(client, "/p2p/block", "block", raw).json()["status"] == "accepted"
        if votes:
            body = msgpack.packb([Vote.from_list(v).encode() for v in votes])
            assert post(client, "/p2p/votes", "votes", body).status_code == 202
    assert service.chain.final_height == oc.final_height == 3
    r = client.get("/p2p/blocks", params={"from": 1, "count": 10})
    final, entries = msgpack.unpackb(r.content)
    assert final == 3 and len(entries) == 4  # 3 final + 1 not yet final
    for block_id, raw, votes in entries:
        assert Block.decode(raw).id == block_id
        assert [Vote.from_list(v).voter for v in votes] == ["alice"]
    assert client.get("/p2p/blocks", params={"from": 0}).status_code == 400


def _peers(service, links: dict[str, set]):
    service.net.peers = []
    for name, linked in links.items():
        peer = Peer(f"http://{name}")
        peer.name, peer.links, peer.ok = name, frozenset(linked), True
        service.net.peers.append(peer)
    return {p.name: p for p in service.net.peers}


def test_a_tx_is_not_relayed_to_peers_its_sender_is_linked_to(service):
    peers = _peers(service, {"bob": {"carol"}, "carol": {"bob"}, "dave": set()})
    service.net.queue_tx(b"from-bob", "bob")  # bob sent it to carol himself; dave is not his peer
    assert (peers["carol"].txs, peers["dave"].txs) == ([], [b"from-bob"])
    service.net.broadcast_vote(b"vote", "dave")  # dave reports no links: all but dave
    assert [len(peers[n].votes) for n in ("bob", "carol", "dave")] == [1, 1, 0]
    service.net.queue_tx(b"from-wallet")  # our own: to every peer
    assert all(p.txs[-1] == b"from-wallet" for p in peers.values())


def test_votes_come_in_batches_and_a_bad_batch_is_refused(service, client):
    g = service.genesis
    slot = g.slot_at(g.genesis_time_ms + 60_000)
    other = NodeService(service.config, kv=MemoryKV())
    other.produce(slot)
    node = next(n for n in other.chain.nodes.values() if n.height == 1)
    assert post(client, "/p2p/block", "block", node.block.encode()).json()["status"] == "accepted"
    vote = next(iter(node.votes.values())).encode()
    r = post(client, "/p2p/votes", "votes", msgpack.packb([vote, vote]))  # a repeat is harmless
    assert r.status_code == 202
    assert service.chain.nodes[node.id].votes.keys() == {"alice"}
    for bad in (msgpack.packb([]), msgpack.packb([b"x"] * 65), msgpack.packb([vote, 7])):
        fresh = AppClient(create_app(NodeService(service.config, kv=MemoryKV())))
        r = post(fresh, "/p2p/votes", "votes", bad)
        assert (r.status_code, r.json()["error"]["code"]) == (400, "malformed")
        r = post(fresh, "/p2p/votes", "votes", msgpack.packb([vote]))  # ignored for a while now
        assert (r.status_code, r.json()["error"]["code"]) == (429, "peer_banned")


def test_a_batch_verified_off_the_event_loop_still_gives_each_bad_tx_its_code(service, client):
    txs = [fresh_tx("bob", "transfer", {"to": "carol", "amount": 1 + i}) for i in range(40)]
    forged = fresh_tx("bob", "transfer", {"to": "carol", "amount": 999})
    forged = type(forged).create(Keypair(bytes(32)), forged.chain_id, "transfer", "bob",
                                 forged.expires_at, forged.body)
    unfunded = fresh_tx("dave", "transfer", {"to": "carol", "amount": 10**12})
    body = msgpack.packb([t.raw for t in txs] + [forged.raw, unfunded.raw, b"\xc1"])
    r = client.post("/v1/transactions/batch", content=body, headers={"content-type": "application/msgpack"})
    results = r.json()["results"]
    assert r.json()["accepted"] == 40 and all(t.id in service.mempool for t in txs)
    assert [x["error"]["code"] for x in results[40:]] == ["bad_signature", "insufficient_balance", "malformed"]
    assert forged.id not in service.mempool and unfunded.id not in service.mempool


def test_a_relayed_tx_gets_the_same_dry_run_as_a_wallets(service, client):
    unfunded = fresh_tx("dave", "transfer", {"to": "carol", "amount": 10**12})
    forged = type(unfunded).create(Keypair(bytes(32)), unfunded.chain_id, "transfer", "dave",
                                   unfunded.expires_at, {"to": "carol", "amount": 1})
    r = post(client, "/p2p/txs", "txs", msgpack.packb([unfunded.raw, forged.raw]))
    assert r.json()["accepted"] == 0  # a peer's dry run is not taken on trust
    assert unfunded.id not in service.mempool and forged.id not in service.mempool


def status_doc(service, **changes) -> dict:
    """A peer's `/v1/status` answer, at final height 8, as far as the sync client reads it."""
    return dict({"genesis_hash": service.genesis.hash.hex(), "protocol_version": PROTOCOL_VERSION,
                 "head": {"height": 9}, "final": {"height": 8}, "notarized": {"height": 9},
                 "producer": None, "peers": []}, **changes)


@pytest.mark.parametrize("doc", [
    [], {"genesis_hash": "00"}, "text",
    {"head": {"height": "7"}, "final": {"height": 1}, "notarized": {"height": 1}, "producer": None, "peers": []},
    {"head": {"height": 7}, "final": {"height": 1}, "notarized": 3, "producer": None, "peers": []},
    {"head": {"height": 7}, "final": {"height": 1}, "notarized": {"height": 1}, "producer": ["x"], "peers": []},
    {"head": {"height": 7}, "final": {"height": 1}, "notarized": {"height": 1}, "producer": "bob", "peers": ["up"]},
    {"head": {"height": 7}, "final": {"height": 1}, "notarized": {"height": 1}, "producer": "bob",
     "peers": [{"up": True, "name": 5}]},
])
def test_a_peer_answering_a_malformed_status_is_marked_down(service, doc):
    if isinstance(doc, dict) and "head" in doc:
        doc = dict(doc, genesis_hash=service.genesis.hash.hex(), protocol_version=PROTOCOL_VERSION)
    peer = Peer("http://bob")
    peer.client = httpx.AsyncClient(base_url="http://bob",
                                    transport=httpx.MockTransport(lambda request: httpx.Response(200, json=doc)))
    peer.ok = True
    asyncio.run(service.net._poll(peer))
    assert not peer.ok and peer.head == -1


def test_a_peer_status_gives_its_heights_name_and_links(service):
    doc = status_doc(service, head={"height": 7}, final={"height": 5}, notarized={"height": 6}, producer="bob",
                     peers=[{"up": True, "name": "carol"}, {"up": False, "name": "dave"}, {"up": True, "name": None}])
    peer = Peer("http://bob")
    peer.client = httpx.AsyncClient(base_url="http://bob",
                                    transport=httpx.MockTransport(lambda request: httpx.Response(200, json=doc)))
    asyncio.run(service.net._poll(peer))
    assert (peer.ok, peer.name, peer.head, peer.final, peer.notarized, peer.links) == (
        True, "bob", 7, 5, 6, frozenset({"carol"}))


def test_mempool_verification_runs_in_worker_processes_below_the_node(service):
    """Txs on their way into the mempool are verified in worker processes (no GIL shared with
    the event loop) at a lower priority than the node; a forged signature is reported as such."""
    tx = fresh_tx("bob", "stake", {"amount": 5})
    key = get_account(service.chain.tip().layer, "bob").public_key
    forged = bytes(64)

    async def go():
        try:
            await service.verify_pool.start()
            pids = service.verify_pool.pids
            assert len(pids) == 2
            own = os.getpriority(os.PRIO_PROCESS, 0)
            assert [os.getpriority(os.PRIO_PROCESS, p) for p in pids] == [min(19, own + NICE)] * 2
            answers = await service.verify_pool.verify(
                [[(key, tx.signing_message(), tx.signature)], [(key, tx.signing_message(), forged)]])
            assert answers == [[True], [False]]
        finally:
            await service.stop()
        return pids

    pids = asyncio.run(go())
    assert not any(os.path.exists(f"/proc/{p}") for p in pids)  # stopped with the node


def test_a_tx_being_verified_is_waited_for_not_verified_again(service, monkeypatch):
    """A block holding txs that are still being verified on their way into the mempool waits
    for that verification instead of repeating it."""
    txs = [fresh_tx("bob", "stake", {"amount": 1 + i}) for i in range(64)]
    verified_in_block_import = []

    def verify_all(pairs):
        verified_in_block_import.extend(pairs)
        return [tx.verify(key) for tx, key in pairs]

    monkeypatch.setattr("node.service._verify_all", verify_all)

    async def both():
        try:
            await asyncio.gather(service.preverify(txs), service.preverify(txs, for_block=True))
        finally:
            await service.stop()

    asyncio.run(both())
    assert verified_in_block_import == []
    key = get_account(service.chain.tip().layer, "bob").public_key
    assert all(service.chain.verified.has(tx, key) for tx in txs)
    assert service._verifying == {}


def test_a_block_reuses_the_txs_being_verified_instead_of_decoding_them_again(service):
    """A block that arrives while its txs are on their way into the mempool (their batch's
    signatures being checked) takes those decoded txs, as it takes the mempool's."""
    txs = [fresh_tx("bob", "stake", {"amount": 1 + i}) for i in range(64)]
    header = BlockHeader(CHAIN_ID, 1, ZERO_HASH, 1, 1000, "alice", merkle_root([t.id for t in txs]),
                         ZERO_HASH, 0)
    data = Block.create(Keypair.generate(), header, tuple(txs)).encode()

    async def go():
        verifying = asyncio.ensure_future(service.preverify(txs))
        try:
            await asyncio.sleep(0)  # the batch is now with the verify workers
            return set(service._verifying), service.decode_block(data).txs
        finally:
            await verifying
            await service.stop()

    in_flight, decoded = asyncio.run(go())
    assert in_flight == {tx.id for tx in txs}
    assert all(a is b for a, b in zip(decoded, txs))
    assert all(a is not b for a, b in zip(service.decode_block(data).txs, txs))  # decoded anew


def test_stopping_while_the_verify_workers_start_leaves_no_worker_and_no_hung_task(service):
    """A node stopped while a batch is starting its verify workers: the worker that starts after
    the stop is killed at once (nothing else would stop it), and the batch's task ends. Before,
    that task kept the event loop from closing."""
    txs = [fresh_tx("bob", "stake", {"amount": 1 + i}) for i in range(64)]
    before = _live_verify_workers()

    async def go():
        verifying = asyncio.ensure_future(service.preverify(txs))
        await asyncio.sleep(0)  # inside the start of the first worker
        await service.stop()
        await asyncio.wait_for(verifying, 10)
        return service.verify_pool.pids

    assert asyncio.run(asyncio.wait_for(go(), 20)) == []
    assert _live_verify_workers() <= before


def _live_verify_workers() -> set[str]:
    """Pids of this process's live verify worker children (a killed one not yet reaped is not)."""
    return {p for p in os.listdir("/proc") if p.isdigit() and _is_verify_worker_of_this_process(p)}


def _is_verify_worker_of_this_process(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        with open(f"/proc/{pid}/stat") as f:
            parent = int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return False
    return b"node.verify_worker" in cmdline and parent == os.getpid()


@pytest.mark.parametrize("fault", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "stopped"])
def test_a_failed_verify_worker_is_replaced_and_admission_still_verifies(service, monkeypatch, fault):
    """A worker that dies, or stops answering (one timeout), costs nothing but time: that batch
    is verified on the admission path instead, and a new worker takes its place."""
    monkeypatch.setattr("node.verify_pool.REQUEST_TIMEOUT_S", 0.5)
    txs = [fresh_tx("bob", "stake", {"amount": 1 + i}) for i in range(64)]
    more = [fresh_tx("bob", "stake", {"amount": 100 + i}) for i in range(64)]
    key = get_account(service.chain.tip().layer, "bob").public_key

    async def go():
        try:
            await service.verify_pool.start()
            failed = service.verify_pool.pids[0]
            os.kill(failed, fault)
            errors = await service.submit_many(txs, source=None)
            assert errors == [None] * len(txs)  # all admitted, each signature checked
            assert all(service.chain.verified.has(tx, key) for tx in txs)
            await service.preverify(more)
            assert failed not in service.verify_pool.pids and len(service.verify_pool.pids) == 2
            assert all(service.chain.verified.has(tx, key) for tx in more)
        finally:
            await service.stop()

    asyncio.run(go())


def test_a_peer_of_another_chain_or_protocol_version_is_left_down_and_says_why(service, caplog):
    """Nodes of two protocol versions may compute different state for one block: a peer whose
    status names another version (or none: a node from before versions) or another genesis gets
    nothing from us and is no catch-up source, with the reason logged once and in our status."""
    answers = {"http://old": status_doc(service, protocol_version=None),
               "http://newer": status_doc(service, protocol_version=PROTOCOL_VERSION + 1),
               "http://other": status_doc(service, genesis_hash="00" * 32, chain_id="elsewhere"),
               "http://same": status_doc(service)}

    async def go():
        service.net.peers = []
        for url, doc in answers.items():
            peer = Peer(url)
            peer.client = httpx.AsyncClient(base_url=url, transport=httpx.MockTransport(
                lambda request, doc=doc: httpx.Response(200, json=doc)))
            service.net.peers.append(peer)
        for _ in range(2):
            await asyncio.wait_for(service.net._poll_round(), 2.0)
        return {p.url: (p.ok, p.incompatible) for p in service.net.peers}, service.net._ahead(0)

    with caplog.at_level("WARNING", logger="p2p"):
        peers, ahead = asyncio.run(go())
    assert peers["http://same"] == (True, None) and [p.url for p in ahead] == ["http://same"]
    assert not any(peers[u][0] for u in ("http://old", "http://newer", "http://other"))
    assert f"protocol version None, this node {PROTOCOL_VERSION}" in peers["http://old"][1]
    assert f"protocol version {PROTOCOL_VERSION + 1}" in peers["http://newer"][1]
    assert "another chain ('elsewhere'" in peers["http://other"][1]
    assert len([r for r in caplog.records if "not gossiping with" in r.message]) == 3  # once each
    assert service.status()["protocol_version"] == PROTOCOL_VERSION
    assert [p["incompatible"] is None for p in service.status()["peers"]] == [False, False, False, True]


def test_a_peer_that_does_not_answer_its_status_does_not_hold_the_sync_round(service, monkeypatch):
    """A paused peer's status request stays open for the whole request timeout; the round goes on
    without it after SYNC_INTERVAL_S, asks it nothing more until it answers, and does not pick it
    to catch up from on the status it gave before."""
    monkeypatch.setattr("p2p.gossip.SYNC_INTERVAL_S", 0.05)
    doc = status_doc(service)

    async def go():
        release, asked = asyncio.Event(), []

        async def hung(request):
            asked.append(request.url.path)
            await release.wait()
            return httpx.Response(200, json=dict(doc, final={"height": 50}))

        live, paused = Peer("http://live"), Peer("http://paused")
        live.client = httpx.AsyncClient(base_url="http://live", transport=httpx.MockTransport(
            lambda request: httpx.Response(200, json=doc)))
        paused.client = httpx.AsyncClient(base_url="http://paused", transport=httpx.MockTransport(hung))
        paused.ok, paused.final = True, 40  # what it said before it stopped answering
        service.net.peers = [live, paused]
        for _ in range(3):
            await asyncio.wait_for(service.net._poll_round(), 2.0)
        ahead = service.net._ahead(0)
        release.set()
        await paused.polling
        return asked, live, ahead, service.net._ahead(0)

    asked, live, ahead, after = asyncio.run(go())
    assert asked == ["/v1/status"]  # one request, left running, not one per round
    assert (live.ok, live.final) == (True, 8)
    assert ahead == [live]
    assert [p.url for p in after] == ["http://paused", "http://live"]  # it answered: final 50


def test_a_peer_flooding_votes_for_unknown_blocks_cannot_push_out_the_early_votes_of_others(service):
    """Votes that arrive before their block wait for it, a bounded number per peer: a peer sending
    votes for blocks that never come fills only its own share (in constant time per vote), and an
    honest early vote is still counted when its block arrives."""
    g = service.genesis
    producer = NodeService(service.config, kv=MemoryKV())
    producer.produce(g.slot_at(g.genesis_time_ms + 60_000))
    node = producer.chain.tip()
    follower = NodeService(dataclasses.replace(service.config, key_file=""), kv=MemoryKV())  # votes not
    follower.on_vote(node.votes["alice"], source="bob")  # relayed by bob ahead of the block
    for i in range(MAX_ORPHAN_VOTES + 100):  # more than all the buffer holds
        follower.on_vote(Vote.create(ALICE, CHAIN_ID, Hash(i.to_bytes(32, "big")), 5, 7, "alice"),
                         source="mallory")
    assert len(follower.orphan_votes) == 1 + MAX_ORPHAN_VOTES_PER_SOURCE
    assert follower.on_block(node.block, node.slot, source="bob")
    assert list(follower.chain.nodes[node.id].votes) == ["alice"]  # the early vote, counted
    assert follower.orphan_votes.take(node.id) == []  # handed over when the block came
    assert len(follower.orphan_votes) == follower.orphan_votes.waiting_from("mallory") == MAX_ORPHAN_VOTES_PER_SOURCE
