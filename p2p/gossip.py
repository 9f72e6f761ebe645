"""Outbound gossip and catch-up sync.

Three lanes per peer, each its own keep-alive connection (`p2p.link`, far cheaper per request
than httpx, which reads the peers' status and syncs), so that no message waits behind a bigger one:
blocks, sent one at a time in order; votes, all those queued sent together in one request (a vote
that overtakes its block waits for it at the receiver); and transactions in batches of up to
TX_BATCH: at once when the lane is idle or TX_EAGER or more are queued (a wallet's batch goes on
as a batch), else FLUSH_S after the lane's last request, so that single txs trickling in under
load share a request while a tx arriving at a quiet node leaves without waiting. Each queue is
capped, so a slow or dead peer costs bounded memory; a peer that does not answer is skipped until its status answers
again (it catches up by sync). Nothing is passed on to a peer that the sender reported linked to
itself: it sent the message there itself.

Sync: every SYNC_INTERVAL_S the peers' `/v1/status` is read (a peer that has not answered within
that is left out until it does, its request still running); when a peer is ahead, final blocks
with their votes, then the peer's non-final blocks, are pulled in batches and handed to the node
service, which validates each block and finalizes only by its own vote count. A catch-up of more
than SYNC_LAG blocks shows in `/v1/status` (`syncing`, `sync_target`) and logs its progress.

Failures: a sync round that fails is logged (with its traceback if it was not the peer's fault or
the network's) and the next round goes on; our own broken invariant ends the sync task. Each lane
and the sync loop are watched by the node: one that ends stops the node (node.health).
"""
import asyncio
import logging
import time
from collections import deque

import httpx
import msgpack

from core.errors import InvalidBlock, InvalidVote, InvariantBroken, Malformed, ProtocolError
from core.types import PROTOCOL_VERSION, Vote
from p2p.envelope import PeerGuard, is_penalized, seal
from p2p.link import Link, LinkError
from p2p.routes import MAX_VOTES_PER_BATCH

log = logging.getLogger("p2p")
logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per gossip request otherwise
FLUSH_S = 0.1
TX_BATCH = 500
TX_EAGER = 100
MAX_QUEUED_TXS = 50_000
MAX_QUEUED_MSGS = 2_000
SYNC_INTERVAL_S = 1.0
SYNC_BATCH = 64
SYNC_LAG = 2  # more blocks behind than this and the node reports `syncing`
SYNC_PROGRESS_S = 5.0  # a long catch-up logs its progress this often
TIMEOUT = httpx.Timeout(5.0, connect=1.0)
SYNC_TIMEOUT = httpx.Timeout(30.0, connect=1.0)


class Peer:
    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.client = httpx.AsyncClient(base_url=self.url, timeout=TIMEOUT)  # status and sync
        self.lanes: dict[str, Link] = {}  # path -> its connection: txs, blocks and votes
        self.name: str | None = None  # learned from its status; used to avoid echoes
        self.links: frozenset[str] = frozenset()  # names of the peers it reports up
        self.head = self.final = self.notarized = -1
        self.ok = False
        self.txs: list[bytes] = []
        self.has_txs = asyncio.Event()
        self.blocks: deque = deque(maxlen=MAX_QUEUED_MSGS)
        self.has_blocks = asyncio.Event()
        self.votes: deque = deque(maxlen=MAX_QUEUED_MSGS)
        self.has_votes = asyncio.Event()
        self.dropped = 0
        self.polling: asyncio.Task | None = None  # its status request, while unanswered
        self.incompatible: str | None = None  # why we do not talk to it, if it answers

    def to_json(self) -> dict:
        return {"url": self.url, "name": self.name, "up": self.ok, "head": self.head,
                "final": self.final, "incompatible": self.incompatible}


class Network:
    """The node's peers: outbound queues, status polling and catch-up sync."""

    def __init__(self, service):
        self.service = service
        self.chain_id = service.genesis.chain_id
        self.peer_keys = {n: bytes.fromhex(k) for n, k in service.config.peer_keys.items()}
        self.guard = PeerGuard()
        self.ip_guard = PeerGuard(msgs_per_s=4000, bytes_per_s=256e6)
        self.peers: list[Peer] = []
        self.sync_target: int | None = None  # the peer's final height we are catching up to
        self._tasks: list[asyncio.Task] = []
        self._sync_now: asyncio.Event | None = None
        self._forced = False
        self._last_notarized = -1  # our notarized head height at the previous sync round

    # ------------------------------------------------------------------ identity
    def key_of(self, name: str) -> bytes | None:
        """The node key a message from `name` must be signed with: a registered producer's key
        from final state, or a configured full node's."""
        return self.service.chain.producer_key(name) or self.peer_keys.get(name)

    def _can_send(self) -> bool:
        return self.service.producer_key is not None and bool(self.peers)

    def _seal(self, kind: str, body: bytes) -> bytes:
        return seal(self.service.producer_key, self.chain_id, kind, self.service.producer_name, body)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.peers = [Peer(u) for u in self.service.config.peers]
        self._sync_now = asyncio.Event()
        loop = asyncio.get_running_loop()
        watch = self.service.health.watch  # a task that ends stops the node, loudly
        for peer in self.peers:
            for lane, run in (("blocks", self._block_loop), ("votes", self._vote_loop),
                              ("txs", self._tx_loop)):
                self._tasks.append(watch(loop.create_task(run(peer)), f"{lane} to {peer.url}"))
        if self.peers:
            self._tasks.append(watch(loop.create_task(self._sync_loop()), "sync"))

    async def stop(self) -> None:
        tasks = self._tasks + [p.polling for p in self.peers if p.polling is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks = []
        for peer in self.peers:
            await peer.client.aclose()
            for link in peer.lanes.values():
                link.close()

    def status(self) -> list[dict]:
        return [p.to_json() for p in self.peers]

    # ------------------------------------------------------------------ outbound
    def _targets(self, source: str | None) -> list[Peer]:
        """The peers to pass on a message that came from peer `source` (None: from a client or
        from this node): not `source` itself, and not the peers `source` reported linked to it
        in its last status, which it has sent the message to itself. In a full mesh nothing is
        relayed; where a link is missing, the message goes around it."""
        if source is None:
            return [p for p in self.peers if p.ok]
        links = next((p.links for p in self.peers if p.name == source), frozenset())
        return [p for p in self.peers if p.ok and p.name != source and p.name not in links]

    def queue_tx(self, raw: bytes, source: str | None = None) -> None:
        if not self._can_send():
            return
        for peer in self._targets(source):
            if len(peer.txs) < MAX_QUEUED_TXS:
                peer.txs.append(raw)
                peer.has_txs.set()
            else:
                peer.dropped += 1

    def broadcast_block(self, block_bytes: bytes, source: str | None = None) -> None:
        if not self._can_send():
            return
        targets = self._targets(source)
        if not targets:
            return  # a block relayed in a full mesh: sealing it (a hash of the whole block) is waste
        envelope = self._seal("block", block_bytes)
        for peer in targets:
            peer.blocks.append(envelope)
            peer.has_blocks.set()

    def broadcast_vote(self, vote_bytes: bytes, source: str | None = None) -> None:
        if not self._can_send():
            return
        for peer in self._targets(source):
            peer.votes.append(vote_bytes)
            peer.has_votes.set()

    def request_sync(self) -> None:
        """Pull from peers now, even from one only a block ahead (we saw a block we cannot attach)."""
        self._forced = True
        if self._sync_now is not None:
            self._sync_now.set()

    async def _post(self, peer: Peer, path: str, data: bytes) -> None:
        link = peer.lanes.get(path)
        if link is None:
            link = peer.lanes[path] = Link(peer.url, TIMEOUT.read, TIMEOUT.connect)
        try:
            status, answer = await link.request("POST", path, data)
            if status >= 400 and status not in (409, 429):
                log.debug("peer %s answered %s to %s: %s", peer.url, status, path, answer[:200])
        except LinkError as e:
            log.info("peer %s unreachable (%s); skipping it until it answers", peer.url, e)
            self._mark_down(peer)

    def _mark_down(self, peer: Peer) -> None:
        peer.ok = False
        peer.blocks.clear()
        peer.votes.clear()
        peer.txs = []

    async def _block_loop(self, peer: Peer) -> None:
        while True:
            await peer.has_blocks.wait()
            while peer.blocks:
                await self._post(peer, "/p2p/block", peer.blocks.popleft())
            peer.has_blocks.clear()

    async def _vote_loop(self, peer: Peer) -> None:
        while True:
            await peer.has_votes.wait()
            while peer.votes:
                batch = [peer.votes.popleft() for _ in range(min(MAX_VOTES_PER_BATCH, len(peer.votes)))]
                await self._post(peer, "/p2p/votes", self._seal("votes", msgpack.packb(batch)))
            peer.has_votes.clear()

    async def _tx_loop(self, peer: Peer) -> None:
        sent = float("-inf")  # when the lane's last request left
        while True:
            await peer.has_txs.wait()
            while peer.txs:
                wait = FLUSH_S - (time.monotonic() - sent)
                if len(peer.txs) < TX_EAGER and wait > 0:  # a trickle: let it gather
                    await asyncio.sleep(wait)
                    continue  # (the peer may have gone down meanwhile, its queue with it)
                batch, peer.txs = peer.txs[:TX_BATCH], peer.txs[TX_BATCH:]
                sent = time.monotonic()
                await self._post(peer, "/p2p/txs", self._seal("txs", msgpack.packb(batch)))
            peer.has_txs.clear()

    # ------------------------------------------------------------------ status and sync
    async def _poll(self, peer: Peer) -> None:
        try:
            r = await peer.client.get("/v1/status")
            doc = r.json()
            if not self._compatible(peer, doc):
                self._mark_down(peer)
                return
            heights = [doc[part]["height"] for part in ("head", "final", "notarized")]
            name, links = doc["producer"], [p["name"] for p in doc["peers"] if p["up"] and p["name"]]
            if (not all(type(h) is int for h in heights) or not (name is None or type(name) is str)
                    or not all(type(n) is str for n in links)):
                raise ValueError("malformed status")
            peer.head, peer.final, peer.notarized = heights
            peer.name, peer.links = name, frozenset(links)
            peer.ok = True
        except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
            # unreachable, another chain, or an answer that is not a status: treat it as down
            self._mark_down(peer)
        except Exception:  # a bug of ours: said, and the peer left down until the next poll
            log.exception("status poll of peer %s failed", peer.url)
            self._mark_down(peer)

    def _compatible(self, peer: Peer, doc: dict) -> bool:
        """False for a peer that runs another chain or another protocol version: it is left
        down, and the reason is logged once and shown in our status."""
        if doc["genesis_hash"] != self.service.genesis.hash.hex():
            why = f"it runs another chain ({doc.get('chain_id')!r}, genesis {str(doc['genesis_hash'])[:16]})"
        elif doc.get("protocol_version") != PROTOCOL_VERSION:
            why = (f"it runs protocol version {doc.get('protocol_version')}, this node "
                   f"{PROTOCOL_VERSION}: upgrade the older one")
        else:
            why = None
        if why is not None and why != peer.incompatible:
            log.warning("not gossiping with or syncing from peer %s: %s", peer.url, why)
        peer.incompatible = why
        return why is None

    async def _poll_round(self) -> None:
        """Ask every peer for its status and wait up to SYNC_INTERVAL_S for the answers. A peer
        still silent then (paused, overloaded) keeps its request running in the background and
        is not asked again until it answers; until then it is not a catch-up source, so one hung
        peer does not hold every sync round for a whole request timeout."""
        asked = []
        for peer in self.peers:
            if peer.polling is None or peer.polling.done():
                peer.polling = asyncio.create_task(self._poll(peer))
                asked.append(peer.polling)
        if asked:  # (a request left running from an earlier round is not waited for again)
            await asyncio.wait(asked, timeout=SYNC_INTERVAL_S)

    async def _sync_loop(self) -> None:
        while True:
            await self._poll_round()
            try:
                await self._catch_up()
            except (httpx.HTTPError, ProtocolError) as e:
                log.info("sync round failed: %s", e)
            except InvariantBroken:
                raise  # our own state is wrong: the task ends, and the node stops (node.health)
            except Exception:  # e.g. our import failed on a peer's block: said; the next round goes on
                log.exception("sync round failed")
            self._sync_now.clear()
            try:
                await asyncio.wait_for(self._sync_now.wait(), SYNC_INTERVAL_S)
            except asyncio.TimeoutError:
                pass

    def _ahead(self, margin: int) -> list[Peer]:
        """Peers ahead of us by more than `margin` blocks (gossip fills a gap of one by itself),
        or, when our notarized head has not moved since the last round, peers whose notarized
        head is higher: we missed votes, and until we learn them we would refuse to vote for
        blocks extending their notarized chain (and they for ours), stalling finality. Only peers
        that answered their last status request count."""
        chain = self.service.chain
        final, tip = chain.final_height + margin, chain.tip().height + margin
        notarized = chain.head().height
        stalled = notarized == self._last_notarized
        self._last_notarized = notarized
        answered = [p for p in self.peers if p.ok and (p.polling is None or p.polling.done())]
        return sorted((p for p in answered if not self.guard.is_banned(p.name or p.url)
                       and (p.final > final or p.head > tip or (stalled and p.notarized > notarized))),
                      key=lambda p: -p.final)

    async def _catch_up(self) -> None:
        ahead = self._ahead(0 if self._forced else 1)
        self._forced = False
        chain = self.service.chain
        self._track(ahead[0] if ahead else None)
        if not ahead:
            return
        peer = ahead[0]
        started, t0 = chain.final_height, time.monotonic()
        if self.syncing:
            log.info("catching up from final height %d to %s's %d", started, peer.url, peer.final)
        logged = t0
        while True:
            before = (chain.final_height, chain.tip().height)
            r = await peer.client.get("/p2p/blocks", params={"from": chain.final_height + 1,
                                                              "count": SYNC_BATCH}, timeout=SYNC_TIMEOUT)
            if r.status_code != 200:
                return
            peer_final, entries = self._parse(r.content, peer)
            peer.final = max(peer.final, peer_final)
            await self._apply(entries, peer)
            if (chain.final_height, chain.tip().height) == before or chain.final_height >= peer.final:
                break
            self._track(peer)
            now = time.monotonic()
            if now - logged >= SYNC_PROGRESS_S:
                logged, rate = now, (chain.final_height - started) / (now - t0)
                log.info("catching up: final height %d of %d, %.0f blocks/s, about %.0f s left",
                         chain.final_height, peer.final, rate, (peer.final - chain.final_height) / max(rate, 1e-9))
            await asyncio.sleep(0)  # let the API and gossip run between batches
        if chain.final_height > started + SYNC_LAG:
            log.info("synced final height %d -> %d from %s in %.1fs", started, chain.final_height,
                     peer.url, time.monotonic() - t0)
        self._track(peer)

    @property
    def syncing(self) -> bool:
        return self.sync_target is not None

    def _track(self, peer: Peer | None) -> None:
        """Catching up to `peer`, if it is more than SYNC_LAG final blocks ahead of us."""
        ahead = peer is not None and peer.final > self.service.chain.final_height + SYNC_LAG
        self.sync_target = peer.final if ahead else None

    def _parse(self, data: bytes, peer: Peer) -> tuple[int, list]:
        try:
            final, entries = msgpack.unpackb(data, raw=False)
            if type(final) is not int or type(entries) is not list:
                raise ValueError("shape")
            return final, entries
        except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
            self.guard.penalize(peer.name or peer.url)
            raise Malformed("malformed", f"sync answer of {peer.url} is not [final, entries]") from None

    async def _apply(self, entries: list, peer: Peer) -> None:
        """Hand each fetched block, then its votes, to the service; ban the peer on invalid data."""
        who = peer.name or peer.url
        for entry in entries:
            try:
                if (type(entry) is not list or len(entry) != 3 or type(entry[0]) is not bytes
                        or type(entry[1]) is not bytes or type(entry[2]) is not list):
                    raise Malformed("malformed", "a sync entry is [block_id, block, votes]")
                if entry[0] not in self.service.chain.nodes:  # known blocks are not decoded again
                    await self.service.import_block_bytes(entry[1], source=None, relay=False)
                for v in entry[2]:
                    try:
                        self.service.on_vote(Vote.from_list(v), source=None, relay=False)
                    except InvalidVote as e:
                        if is_penalized(e):
                            raise
            except (InvalidBlock, InvalidVote, Malformed) as e:
                if is_penalized(e):
                    log.warning("peer %s sent invalid sync data (%s); ignoring it for a while", peer.url, e)
                    self.guard.penalize(who)
                    return
                if e.code == "unknown_parent":
                    return
