"""Catch-up sync and relay against peers that lie (issue 15, points 5 and 7), in one process: sync
pages are bounded in bytes and a client following them gets every block; sync bytes are metered
per client address (429 past the allowance); the sync target is what f+1 peers claim, not the
highest claim; a peer claiming a far final height and answering empty pages is doubted and the
next peer synced from in the same round; a relayed block reaches a peer its sender claimed a link
to; a peer's links are forgotten when it goes down."""
import asyncio
import dataclasses

import httpx
import msgpack
import pytest

from node.api import create_app
from node.service import SYNC_VOTE_BYTES, NodeService
from p2p import gossip
from p2p.envelope import RateLimited
from p2p import sync_budget
from p2p.gossip import Peer
from p2p.sync_budget import SyncBudget
from state.kv import MemoryKV
from tests.test_p2p import _peers

PAGE_BYTES = 2_000  # a few empty blocks with their votes: many pages for a short chain


def grow(service: NodeService, blocks: int) -> None:
    """`blocks` blocks on `service`'s chain (a one-producer chain: all but the last one final)."""
    g = service.genesis
    first = g.slot_at(g.genesis_time_ms + 60_000)
    for slot in range(first, first + blocks):
        service.produce(slot)


def follower(service: NodeService) -> NodeService:
    """A keyless node of `service`'s chain, with nothing but genesis."""
    return NodeService(dataclasses.replace(service.config, key_file=""), kv=MemoryKV())


def serving(source: NodeService, url: str = "http://honest") -> Peer:
    """A peer whose requests go into `source`'s app, its status read from `source`."""
    peer = Peer(url)
    peer.client = httpx.AsyncClient(base_url=url, transport=httpx.ASGITransport(create_app(source)))
    peer.name, peer.ok = url.removeprefix("http://"), True
    peer.final, peer.head = source.chain.final_height, source.chain.tip().height
    peer.notarized = source.chain.head().height
    return peer


def liar(claimed_final: int, asked: list) -> Peer:
    """A peer claiming `claimed_final` whose sync pages are empty."""
    def answer(request):
        asked.append(request.url.path)
        return httpx.Response(200, content=msgpack.packb([claimed_final, []]))
    peer = Peer("http://liar")
    peer.client = httpx.AsyncClient(base_url="http://liar", transport=httpx.MockTransport(answer))
    peer.name, peer.ok, peer.final, peer.head, peer.notarized = "liar", True, claimed_final, claimed_final + 1, claimed_final + 1
    return peer


def test_sync_pages_are_bounded_in_bytes_and_a_client_following_them_gets_every_block(service, monkeypatch):
    monkeypatch.setattr("p2p.routes.MAX_SYNC_BYTES", PAGE_BYTES)
    grow(service, 40)
    pages = []

    async def go():
        async def record(response):
            await response.aread()
            if response.request.url.path == "/p2p/blocks":
                pages.append(msgpack.unpackb(response.content))
        peer = serving(service)
        peer.client.event_hooks["response"] = [record]
        node = follower(service)
        node.net.peers = [peer]
        assert await node.net._pull(peer)
        return node

    node = asyncio.run(go())
    assert len(pages) > 4  # not one page
    for final, entries in pages:
        sizes = [len(raw) + SYNC_VOTE_BYTES * len(votes) for _, raw, votes in entries]
        assert sum(sizes[:-1]) < PAGE_BYTES  # the last entry may cross the bound, none after it
    assert node.chain.final_height == service.chain.final_height == 39
    assert node.chain.final_block_id(39) == service.chain.final_block_id(39)
    assert node.chain.tip().id == service.chain.tip().id  # the non-final tree came too


def test_sync_bytes_are_metered_per_client_and_answer_429_past_the_allowance(service, monkeypatch):
    grow(service, 10)
    service.net.sync_budget = SyncBudget(bytes_per_s=100, burst=3_000)

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(create_app(service)),
                                     base_url="http://node") as c:
            return [await c.get("/p2p/blocks", params={"from": 1, "count": 256}) for _ in range(3)]

    first, second, third = asyncio.run(go())
    assert first.status_code == 200 and len(first.content) > 3_000  # one page may overdraw...
    assert (second.status_code, second.json()["error"]["code"]) == (429, "sync_rate_limited")  # ...then none
    assert third.status_code == 429


def test_a_sync_budget_refills_and_gives_configured_peers_more():
    now = [0.0]
    budget = SyncBudget(peer_hosts={"10.0.0.2"}, bytes_per_s=1_000, burst=4_000, clock=lambda: now[0])
    budget.admit("10.0.0.9")
    budget.charge("10.0.0.9", 5_000)
    with pytest.raises(Exception) as e:
        budget.admit("10.0.0.9")
    assert e.value.code == "sync_rate_limited" and e.value.status == 429
    budget.charge("10.0.0.2", 4_000 * sync_budget.PEER_SYNC_FACTOR - 1)
    budget.admit("10.0.0.2")  # a configured peer's host: PEER_SYNC_FACTOR times the allowance
    now[0] = 1.5
    budget.admit("10.0.0.9")  # 1.5 s at 1,000 bytes/s paid the debt of 1,000


def test_many_public_addresses_share_one_allowance_and_a_cap_on_pages_in_memory(monkeypatch):
    now = [0.0]
    budget = SyncBudget(peer_hosts={"10.0.0.2"}, bytes_per_s=1_000, burst=4_000, clock=lambda: now[0])
    # each address is within its own allowance, but together they spent the public one
    for i in range(sync_budget.PUBLIC_SYNC_FACTOR):
        budget.admit(f"10.1.0.{i}")
        budget.charge(f"10.1.0.{i}", 4_000)
        budget.sent(f"10.1.0.{i}", 4_000)
    with pytest.raises(RateLimited, match="public clients together"):
        budget.admit("10.1.0.99")
    budget.admit("10.0.0.2")  # a configured peer is not a public client
    # pages built for public clients and not yet sent are capped in bytes
    monkeypatch.setattr(sync_budget, "MAX_PUBLIC_SYNC_IN_FLIGHT", 10_000)
    now[0] = 100.0  # every allowance full again
    budget.admit("10.2.0.1")
    budget.charge("10.2.0.1", 10_000)
    with pytest.raises(RateLimited, match="cap in memory"):
        budget.admit("10.2.0.2")
    budget.sent("10.2.0.1", 10_000)
    budget.admit("10.2.0.2")


def test_the_sync_target_is_what_f_plus_one_peers_claim(service, monkeypatch):
    monkeypatch.setattr(type(service.chain), "schedule", lambda self, slot=None: ["a", "b", "c", "d"])
    net = service.net
    claims = {"liar": 1082, "b": 80, "c": 79}
    net.peers = []
    for name, final in claims.items():
        p = Peer(f"http://{name}")
        p.name, p.ok, p.final = name, True, final
        net.peers.append(p)
    assert net.agreed_final() == 80  # f = 1 of 4: the second highest claim
    net._track()
    assert net.sync_target == 80
    net.peers[1].ok = net.peers[2].ok = False
    assert net.agreed_final() == 1082  # alone, the liar is believed... until its pages say otherwise
    net.peers[0].doubted_until = float("inf")
    assert net.agreed_final() == -1


def test_a_peer_claiming_a_far_final_height_with_empty_pages_is_doubted_and_the_next_synced_from(service, caplog):
    grow(service, 20)
    asked = []

    async def go():
        node = follower(service)
        honest, lying = serving(service), liar(service.chain.final_height + 1000, asked)
        node.net.peers = [lying, honest]
        node.net._sync_now = asyncio.Event()
        await node.net._catch_up()  # the liar is tried first (the highest claim), then honest
        first = (node.chain.final_height, len(asked), lying.strikes)
        for _ in range(3):  # later rounds leave the liar alone
            await node.net._catch_up()
        return node, first

    with caplog.at_level("WARNING", logger="p2p"):
        node, first = asyncio.run(go())
    assert first == (service.chain.final_height, 1, 1)
    assert asked == ["/p2p/blocks"]
    assert not node.net.syncing and node.net.sync_target is None
    assert node.net.agreed_final() == service.chain.final_height  # the liar's claim no longer counts
    assert any("is no sync source" in r.message and "page from 1 was empty" in r.message for r in caplog.records)


def test_a_peer_whose_blocks_lack_the_votes_that_make_them_final_is_doubted(service):
    grow(service, 20)

    def without_votes(request):
        final, entries = service.sync_entries(int(request.url.params["from"]), 256, 1 << 20)
        return httpx.Response(200, content=msgpack.packb([final, [[i, raw, []] for i, raw, _ in entries]]))

    async def go():
        node = follower(service)
        peer = serving(service, "http://voteless")
        peer.client = httpx.AsyncClient(base_url="http://voteless", transport=httpx.MockTransport(without_votes))
        node.net.peers = [peer]
        return node, peer, await node.net._pull(peer)

    node, peer, pulled = asyncio.run(go())
    assert not pulled and peer.strikes == 1 and peer.doubted_until > 0
    assert node.chain.final_height == 0 and node.chain.tip().height == service.chain.tip().height


def test_a_relayed_block_reaches_a_peer_its_sender_claimed_a_link_to(service, monkeypatch):
    monkeypatch.setattr(gossip, "RELAY_GRACE_FRACTION", 0.02)  # 10 ms of a 500 ms slot
    grow(service, 1)
    block = service.chain.tip()
    raw = block.block.encode()

    async def go():
        peers = _peers(service, {"bob": {"carol", "dave"}, "carol": set(), "dave": set(), "erin": set()})
        service.chain.nodes[block.id].votes["dave"] = None  # dave voted for it: he holds it
        service.net.broadcast_block(raw, "bob")
        at_once = {n: len(p.blocks) for n, p in peers.items()}
        await asyncio.sleep(0.1)
        return at_once, {n: len(p.blocks) for n, p in peers.items()}

    at_once, later = asyncio.run(go())
    assert at_once == {"bob": 0, "carol": 0, "dave": 0, "erin": 1}  # erin: not claimed by bob
    assert later == {"bob": 0, "carol": 1, "dave": 0, "erin": 1}  # carol: claimed but never voted


def test_votes_are_relayed_to_every_up_peer_but_their_sender_and_links_go_with_a_peer(service):
    peers = _peers(service, {"bob": {"carol", "dave"}, "carol": {"bob"}, "dave": set()})
    service.net.broadcast_vote(b"vote", "bob")  # whatever bob claims of his links
    assert [len(peers[n].votes) for n in ("bob", "carol", "dave")] == [0, 1, 1]
    service.net._mark_down(peers["bob"])
    assert peers["bob"].links == frozenset()
    service.net.queue_tx(b"tx", "bob")  # (txs still skip claimed links: bob's are forgotten)
    assert peers["carol"].txs == [b"tx"] and peers["dave"].txs == [b"tx"]


def test_a_peer_whose_pages_bring_nothing_new_is_passed_over_for_the_next(service):
    """A peer claiming a higher head (a stale claim, or a lie about non-final blocks) whose pages
    hold nothing we lack does not end the round (nor is it doubted: non-final claims race)."""
    grow(service, 20)

    async def go():
        node = follower(service)
        asked = []
        stale = liar(-1, asked)  # final -1, head claimed far ahead, pages empty
        stale.head = stale.notarized = 5000
        node.net.peers = [stale]
        pulled = await node.net._pull(stale)
        node.net.peers = [stale, serving(service)]
        node.net._forced = True
        await node.net._catch_up()
        return node, stale, asked, pulled

    node, stale, asked, pulled = asyncio.run(go())
    assert not pulled and asked == ["/p2p/blocks"] and stale.strikes == 0
    assert node.chain.final_height == service.chain.final_height


def test_a_node_catching_up_still_votes_and_produces(service):
    """`syncing` changes what the node reports (and that a slow finality is not a stall), never
    whether it imports, votes or produces."""
    service.net.sync_target = 10_000
    assert service.net.syncing
    grow(service, 3)
    assert service.metrics.votes_cast == 3 and service.metrics.produced == 3
    assert service.chain.final_height == 2
