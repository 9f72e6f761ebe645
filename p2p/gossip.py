"""Outbound gossip and catch-up sync.

Three lanes per peer, each its own keep-alive connection (`p2p.link`, far cheaper per request
than httpx, which reads the peers' status and syncs), so that no message waits behind a bigger one:
blocks, sent one at a time in order; votes, all those queued sent together in one request (a vote
that overtakes its block waits for it at the receiver); and transactions in batches of up to
TX_BATCH: at once when the lane is idle or TX_EAGER or more are queued (a wallet's batch goes on
as a batch), else FLUSH_S after the lane's last request, so that single txs trickling in under
load share a request while a tx arriving at a quiet node leaves without waiting. Each queue is
capped, so a slow or dead peer costs bounded memory; a peer that does not answer is skipped until its status answers
again (it catches up by sync).

Relay does not rest on what a peer says about its links (a Byzantine producer that claims links it
does not serve would otherwise keep its block from the peers it skipped): a vote is passed on to
every up peer but its sender (votes are small: (n-1)^2 copies of ~200 bytes in an n-node mesh);
a block goes at once to the up peers its sender does not claim, and RELAY_GRACE_FRACTION of a
slot later to each claimed one that has not shown it holds the block by voting for it (in a full
mesh of honest voters that is none; non-voting peers get the extra copy). Txs still skip the
peers the sender claims: a liar can only withhold the txs that pass through it, which it could drop
anyway, and a tx reaches producers by the other paths it took. A peer's links are forgotten when
it goes down.

Sync: every SYNC_INTERVAL_S the peers' `/v1/status` is read (a peer that has not answered within
that is left out until it does, its request still running). No single peer's claim steers it: the
target is the final height that f+1 peers claim (f: the faulty producers the schedule tolerates),
so one honest peer stands behind it. Peers claiming to be ahead are tried in turn: final blocks
with their votes, then the peer's non-final blocks, are pulled in byte-bounded pages (the client
follows `from` past the last final entry) and handed to the node service, which validates each
block and finalizes only by its own vote count. A peer whose claim does not pan out (a page with
no block where it claimed one, pages ending below its claim, or blocks whose votes do not make
them final here) is no sync source for SYNC_DOUBT_S, doubled per repeat, and the next peer is
tried in the same round. Syncing never stops the node importing, voting or producing. A catch-up
of more than SYNC_LAG blocks shows in `/v1/status` (`syncing`, `sync_target`) and logs its progress.

Failures: a sync round that fails is logged (with its traceback if it was not the peer's fault or
the network's) and the next round goes on; our own broken invariant ends the sync task. Each lane
and the sync loop are watched by the node: one that ends stops the node (node.health).
"""
import asyncio
import logging
import os
import time
from collections import deque
from urllib.parse import urlsplit

import httpx
import msgpack

from core.errors import InvalidBlock, InvalidVote, InvariantBroken, Malformed, ProtocolError
from core.genesis import now_ms
from core.types import PROTOCOL_VERSION, Block, Vote
from p2p.envelope import Forbidden, PeerGuard, is_penalized, seal
from p2p.link import Link, LinkError
from p2p.routes import MAX_SYNC_COUNT, MAX_VOTES_PER_BATCH
from p2p.sync_budget import SyncBudget

log = logging.getLogger("p2p")
logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per gossip request otherwise
FLUSH_S = 0.1
TX_BATCH = 500
TX_EAGER = 100
MAX_QUEUED_TXS = 50_000
MAX_QUEUED_MSGS = 2_000
SYNC_INTERVAL_S = 1.0
SYNC_BATCH = MAX_SYNC_COUNT  # final blocks asked per page; the server bounds a page by bytes too
SYNC_LAG = 2  # more blocks behind than this and the node reports `syncing`
STOP_ROUNDS, STOP_ROUND_S = 3, 1.0  # cancellations of the tasks at shutdown, and the wait after each
SYNC_PROGRESS_S = 5.0  # a long catch-up logs its progress this often
TIMEOUT = httpx.Timeout(5.0, connect=1.0)
SYNC_TIMEOUT = httpx.Timeout(30.0, connect=1.0)
# A sync source whose claim did not pan out is skipped this long, doubled per repeat up to the
# maximum: long enough that a liar costs one request now and then, short enough that an honest
# peer that failed once (a restart that lost its store) is back within a few rounds.
SYNC_DOUBT_S = 10.0
SYNC_DOUBT_MAX_S = 300.0
# A block is relayed to the peers its sender claims to have sent it to, unless they vote for it
# within this fraction of a slot. Half a slot: under load an honest peer may take a few hundred ms
# to import a big block and vote, and an early timer would send it a copy it does not need; a
# withheld block still arrives in time to be voted for (a vote counts up to a slot later, and the
# next producer waits PARENT_WAIT_FRACTION of its slot for its parent's votes).
RELAY_GRACE_FRACTION = 0.5
# Test-only: a node started with this environment variable set to 1 plays the Byzantine producer
# of tests/test_byzantine.py (claims a final height LIAR_LEAD ahead and links to every peer,
# serves empty sync pages, sends its blocks to two peers and its votes to none). Never set it
# on a real node.
LIAR_ENV = "CHAIN_TEST_LIAR"
LIAR_LEAD = 1000


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
        self.doubted_until = 0.0  # monotonic: no sync source before then (its claim did not pan out)
        self.strikes = 0  # claims in a row that did not pan out
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
        self.sync_budget = SyncBudget(urlsplit(u).hostname for u in service.config.peers)
        self.liar = os.environ.get(LIAR_ENV) == "1"  # test-only (LIAR_ENV)
        self.sync_target: int | None = None  # the final height f+1 peers claim, while catching up to it
        self._tasks: list[asyncio.Task] = []
        self._sync_now: asyncio.Event | None = None
        self._forced = False
        self._last_notarized = -1  # our notarized head height at the previous sync round

    # ------------------------------------------------------------------ identity
    def key_of(self, name: str) -> bytes | None:
        """The node key a pushed message from `name` must be signed with: the registered key (from
        final state) of a producer in office, that is in the schedule of the previous, current or
        next epoch (the previous one: its last block and votes may still be on their way), or a
        configured full node's (`peer_keys`). None for a name nobody knows; Forbidden for a
        registered candidate out of office (registering costs nothing, so it earns no pushes)."""
        chain = self.service.chain
        key = chain.producer_key(name)
        if key is not None:
            slot, epoch = self.service.genesis.slot_at(now_ms()), chain.schedules.epoch_slots
            if any(name in chain.schedules.for_slot(max(0, s)) for s in (slot - epoch, slot, slot + epoch)):
                return key
        full_node = self.peer_keys.get(name)
        if full_node is not None:
            return full_node
        if key is not None:
            raise Forbidden("not_in_office", f"{name} is not a producer in office nor a configured peer")
        return None

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
        """Cancel every lane and the sync loop. Python 3.11's `asyncio.wait_for` can swallow a
        cancellation that lands as its inner request completes, and the lane then goes on; so a
        task still running after a moment is cancelled again, and one that never ends is left
        behind (said) rather than holding the node's shutdown (seen: a node ignoring SIGTERM)."""
        pending = set(self._tasks + [p.polling for p in self.peers if p.polling is not None])
        for _ in range(STOP_ROUNDS):
            if not pending:
                break
            for t in pending:
                t.cancel()
            _, pending = await asyncio.wait(pending, timeout=STOP_ROUND_S)
        if pending:
            log.warning("%d gossip tasks did not stop; shutting down without them", len(pending))
        self._tasks = []
        for peer in self.peers:
            await peer.client.aclose()
            for link in peer.lanes.values():
                link.close()

    def status(self) -> list[dict]:
        if self.liar:  # (test-only: claims a link to every peer)
            return [dict(p.to_json(), up=True) for p in self.peers]
        return [p.to_json() for p in self.peers]

    def claim(self, doc: dict) -> dict:
        """Our `/v1/status` as we tell it: as it is, but for the test-only liar (LIAR_ENV)."""
        if self.liar:
            doc["final"] = dict(doc["final"], height=doc["final"]["height"] + LIAR_LEAD)
        return doc

    # ------------------------------------------------------------------ outbound
    def _targets(self, source: str | None) -> list[Peer]:
        """The peers to pass on a message that came from peer `source` (None: from a client or
        from this node): not `source` itself, and not the peers `source` reported linked to it
        in its last status, which it says it has sent the message to itself. Used for txs only
        (see the module's docstring); where a link is missing, the message goes around it."""
        if source is None:
            return [p for p in self.peers if p.ok]
        links = self._claimed_links(source)
        return [p for p in self.peers if p.ok and p.name != source and p.name not in links]

    def _claimed_links(self, source: str) -> frozenset[str]:
        return next((p.links for p in self.peers if p.name == source and p.ok), frozenset())

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
        """Send our block to every up peer; relay one from `source` at once to the up peers it
        does not claim to have sent it to, and later (`_relay_late`) to those it claims."""
        if not self._can_send() or (self.liar and source is not None):
            return
        if source is None:
            now = [p for p in self.peers if p.ok][:2 if self.liar else None]  # (the liar: two)
            later = []
        else:
            header, _, block_id = Block.decode_head(block_bytes)
            links = self._claimed_links(source)
            up = [p for p in self.peers if p.ok and p.name not in (source, header.producer)]
            now = [p for p in up if p.name not in links]
            later = [p for p in up if p.name in links]
        if not now and not later:
            return  # sealing it (a hash of the whole block) would be waste
        envelope = self._seal("block", block_bytes)
        self._queue_block(envelope, now)
        if later:
            delay = self.service.genesis.params.block_interval_ms / 1000 * RELAY_GRACE_FRACTION
            try:
                asyncio.get_running_loop().call_later(delay, self._relay_late, block_id, envelope, later)
            except RuntimeError:  # called outside the node's event loop (a tool): nothing to wait for
                self._relay_late(block_id, envelope, later)

    def _relay_late(self, block_id: bytes, envelope: bytes, peers: list[Peer]) -> None:
        """Send a relayed block to those of `peers` still up that have not voted for it: its
        sender claimed it had sent it to them, and a claim is not a delivery."""
        node = self.service.chain.nodes.get(block_id)
        voted = frozenset() if node is None else node.votes.keys()
        self._queue_block(envelope, [p for p in peers if p.ok and p.name not in voted])

    @staticmethod
    def _queue_block(envelope: bytes, peers: list[Peer]) -> None:
        for peer in peers:
            peer.blocks.append(envelope)
            peer.has_blocks.set()

    def broadcast_vote(self, vote_bytes: bytes, source: str | None = None) -> None:
        """A vote goes to every up peer but `source`, whatever `source` says of its links."""
        if not self._can_send() or self.liar:
            return
        for peer in self.peers:
            if peer.ok and (source is None or peer.name != source):
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
        peer.links = frozenset()  # what it said of its links held while it answered
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

    def _sources(self) -> list[Peer]:
        """Peers whose claims count: up, answered their last status request, not banned for
        invalid data and not doubted for a claim that did not pan out."""
        now = time.monotonic()
        return [p for p in self.peers if p.ok and (p.polling is None or p.polling.done())
                and p.doubted_until <= now and not self.guard.is_banned(p.name or p.url)]

    def agreed_final(self) -> int:
        """The highest final height that f+1 sync sources claim, f being the faulty producers the
        current schedule tolerates: at least one honest peer stands behind it, whatever f liars
        claim. With fewer sources than f+1, the lowest claim (a lone liar is then caught by what
        its pages do not carry)."""
        claims = sorted((p.final for p in self._sources()), reverse=True)
        if not claims:
            return -1
        schedule = self.service.chain.schedule(self.service.genesis.slot_at(now_ms()))
        return claims[min((len(schedule) - 1) // 3, len(claims) - 1)]

    def _ahead(self, margin: int) -> list[Peer]:
        """Sync sources ahead of us by more than `margin` blocks (gossip fills a gap of one by
        itself), or, when our notarized head has not moved since the last round, those whose
        notarized head is higher: we missed votes, and until we learn them we would refuse to vote
        for blocks extending their notarized chain (and they for ours), stalling finality. Most
        credible first: by final height up to the agreed one (a claim beyond it earns nothing),
        then by head."""
        chain = self.service.chain
        final, tip = chain.final_height + margin, chain.tip().height + margin
        notarized = chain.head().height
        stalled = notarized == self._last_notarized
        self._last_notarized = notarized
        agreed = self.agreed_final()
        return sorted((p for p in self._sources()
                       if p.final > final or p.head > tip or (stalled and p.notarized > notarized)),
                      key=lambda p: (-min(p.final, agreed), -p.head))

    async def _catch_up(self) -> None:
        """Pull from the peers ahead of us, one after another until one delivers what it claimed."""
        ahead = self._ahead(0 if self._forced else 1)
        self._forced = False
        self._track()
        if self.syncing:
            log.info("catching up from final height %d to %d (claimed by f+1 peers)",
                     self.service.chain.final_height, self.sync_target)
        for peer in ahead:
            if await self._pull(peer):
                break
        self._track()

    async def _pull(self, peer: Peer) -> bool:
        """Fetch pages from `peer` from our final height on until its pages reach its final height
        (True), or it fails us (False): it refuses (429: its allowance; an error), its pages bring
        nothing new (its head or notarized claim was stale: the next peer is asked, nobody doubted),
        or its final claim does not pan out, and then it is doubted (`_doubt`)."""
        chain = self.service.chain
        claimed, start = peer.final, chain.final_height + 1
        before = (chain.final_height, chain.tip().height, chain.head().height)
        started, t0 = chain.final_height, time.monotonic()
        logged = t0
        while True:
            try:  # (a whole page within the read timeout: a peer trickling bytes holds no round)
                r = await asyncio.wait_for(peer.client.get(
                    "/p2p/blocks", params={"from": start, "count": SYNC_BATCH}, timeout=SYNC_TIMEOUT),
                    SYNC_TIMEOUT.read)
            except (httpx.HTTPError, asyncio.TimeoutError) as e:  # down, or hanging on us: not a source now
                self._doubt(peer, f"its sync request failed ({type(e).__name__}: {e})")
                return False
            if r.status_code != 200:
                log.info("peer %s answered %s to a sync request; trying the next peer", peer.url, r.status_code)
                return False
            try:
                peer_final, entries = self._parse(r.content, peer)
            except Malformed as e:  # (the peer is banned for it)
                log.warning("%s", e)
                return False
            finals = min(len(entries), max(0, peer_final - start + 1))  # consecutive from `start`
            if finals == 0 and max(claimed, peer_final) >= start:
                self._doubt(peer, f"it claimed final height {max(claimed, peer_final)} but its "
                            f"page from {start} was empty")
                return False
            if not await self._apply(entries, peer):
                return False
            start += finals
            if start > peer_final and (finals == 0 or len(entries) > finals):
                break  # that page reached its final height and held its non-final tree
            self._track()
            now = time.monotonic()
            if now - logged >= SYNC_PROGRESS_S:
                logged, rate = now, (chain.final_height - started) / (now - t0)
                log.info("catching up: final height %d of %d, %.0f blocks/s, about %.0f s left",
                         chain.final_height, peer_final, rate,
                         (peer_final - chain.final_height) / max(rate, 1e-9))
            await asyncio.sleep(0)  # let the API and gossip run between pages
        if start - 1 < claimed:
            self._doubt(peer, f"it claimed final height {claimed} but its pages end at {start - 1}")
            return False
        if chain.final_height + SYNC_LAG < start - 1:
            self._doubt(peer, f"its blocks up to height {start - 1} did not carry the votes that make "
                        f"them final (final height here {chain.final_height})")
            return False
        if (chain.final_height, chain.tip().height, chain.head().height) == before:
            return False
        peer.strikes = 0
        if chain.final_height > started + SYNC_LAG:
            log.info("synced final height %d -> %d from %s in %.1fs", started, chain.final_height,
                     peer.url, time.monotonic() - t0)
        return True

    def _doubt(self, peer: Peer, why: str) -> None:
        """`peer` claimed what it did not deliver: no sync source, and its claims not counted, for
        SYNC_DOUBT_S doubled per repeat (a liar costs one request now and then)."""
        peer.strikes += 1
        seconds = min(SYNC_DOUBT_MAX_S, SYNC_DOUBT_S * 2 ** (peer.strikes - 1))
        peer.doubted_until = time.monotonic() + seconds
        log.warning("peer %s is no sync source for %.0f s: %s", peer.url, seconds, why)

    @property
    def syncing(self) -> bool:
        return self.sync_target is not None

    def _track(self) -> None:
        """Catching up while the final height f+1 peers claim is more than SYNC_LAG ahead of ours."""
        agreed = self.agreed_final()
        self.sync_target = agreed if agreed > self.service.chain.final_height + SYNC_LAG else None

    def _parse(self, data: bytes, peer: Peer) -> tuple[int, list]:
        try:
            final, entries = msgpack.unpackb(data, raw=False)
            if type(final) is not int or type(entries) is not list:
                raise ValueError("shape")
            return final, entries
        except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
            self.guard.penalize(peer.name or peer.url)
            raise Malformed("malformed", f"sync answer of {peer.url} is not [final, entries]") from None

    async def _apply(self, entries: list, peer: Peer) -> bool:
        """Hand each fetched block, then its votes, to the service; on invalid data ban the peer
        and return False."""
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
                    return False
                if e.code == "unknown_parent":
                    return True
        return True
