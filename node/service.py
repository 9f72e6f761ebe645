"""The node service: wires the store, the chain, the mempool and the block producer, on one asyncio
loop, and keeps what wallets wait for (tx status, `wait=final`).

Crash safety: the producer persists the slot it produced and the slot it voted in (synced writes)
before anything leaves the process, so a restarted producer never signs twice in a slot.

Every block, vote and tx that reaches this node (API, peer or sync) goes through the same methods
here; what is new is relayed to the peers that did not have it from its sender (p2p.gossip).
Signatures of tx batches are verified off the event loop, so blocks and votes are not kept waiting:
in worker processes for txs entering the mempool (node.verify_pool), on threads for the txs of a
block that did not arrive by gossip.
"""
import asyncio
import logging
import os
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import msgpack

from consensus.chain import Chain
from core import codec
from core.errors import InvalidBlock, InvalidTx, ProtocolError
from core.genesis import load_genesis, now_ms
from core.types import PROTOCOL_VERSION, Block, Tx, Vote
from node.config import NodeConfig
from node.keystore import read_key_file
from node.equivocation import EquivocationReporter
from node.health import Health
from node.mempool import Mempool
from node.metrics import NodeMetrics
from node.orphans import OrphanVotes
from node.pruning import Pruner
from node.rejoin import Rejoin
from node.snapshots import Snapshots
from node.store import LevelDBStore
from node.verify_pool import VerifyError, VerifyPool
from p2p.gossip import Network
from state import allowance, schema, transition
from state.rules import ContractRules
from state.view import Layer

log = logging.getLogger("node")
REJECTED_MEMORY = 100_000
VERIFY_WORKERS = 2  # processes verifying txs for the mempool; threads for a block's txs
MIN_OFFLOADED_VERIFY = 32  # fewer signatures than this are verified inline, on the event loop
PARENT_WAIT_FRACTION = 0.4  # of a slot, a producer waits for the previous slot's block to notarize
BUILD_BUDGET_FRACTION = 0.3  # of a slot: the most time our block's txs may take us to apply
PREBUILD_FRACTION = 0.1  # of a slot: how long before its start a producer builds its block
MIN_BLOCK_TXS = 100  # whatever that time allows (and how a slow block's rate is re-measured)
SYNC_VOTE_BYTES = 160  # a vote in a sync page, packed (block id, chain id, voter, signature...)


def _verify_all(pairs: list[tuple[Tx, bytes]]) -> list[bool]:
    return [tx.verify(key) for tx, key in pairs]


class NodeService:
    def __init__(self, config: NodeConfig, kv=None):
        self.config = config
        self.genesis = load_genesis(config.genesis)
        if kv is None:
            os.makedirs(config.data_dir, exist_ok=True)
            kv = LevelDBStore(os.path.join(config.data_dir, "chain.ldb"))
        self.kv = kv
        self.chain = Chain(self.kv, self.genesis, ContractRules())
        self.mempool = Mempool(config.mempool_max_txs, config.mempool_max_bytes)
        self.rejected: OrderedDict[bytes, ProtocolError] = OrderedDict()
        self.waiters: dict[bytes, list[tuple[str, asyncio.Future]]] = {}
        self.producer_name = None
        self.producer_key = None
        if config.key_file:
            kf = read_key_file(config.key_file)
            self.producer_name, self.producer_key = kf.name, kf.key
        self.last_produced_slot = self._read_slot(schema.LAST_PRODUCED)
        self.last_vote_slot = self._read_slot(schema.LAST_VOTE)
        self._task: asyncio.Task | None = None
        self.started_ms = now_ms()
        self.orphan_votes = OrphanVotes()
        self.verify_pool = VerifyPool(VERIFY_WORKERS)  # txs entering the mempool (node.verify_pool)
        # tx id -> (the decoded tx, done when its batch is verified)
        self._verifying: dict[bytes, tuple[Tx, asyncio.Future]] = {}
        # a block's txs not seen by gossip: the event loop waits for them, so no GIL contention
        self._block_verify_pool = ThreadPoolExecutor(VERIFY_WORKERS, thread_name_prefix="verify-block")
        self._build_s_per_tx = 50e-6  # measured on each block we build
        self.net = Network(self)
        self.health = Health(self)  # what a halt looks like, and what a failure does (node.health)
        if isinstance(kv, LevelDBStore):  # a failed write ends the node (a full disk, most often)
            kv.on_failure = self.health.halt
        self.metrics = NodeMetrics(self)
        self.reporter = EquivocationReporter(self, now_ms)
        self.rejoin = Rejoin(self, now_ms)
        self.intake = None  # node.intake.Intake, set by node.main.run_node (its counts go to /metrics)
        self.chain.on_evidence = self.reporter.on_evidence
        self.snapshots = Snapshots(self.kv, self.chain, self.genesis, config.data_dir, config.snapshot_keep)
        self.pruner = Pruner(self.kv, self.chain, config.retain_blocks)

    # ------------------------------------------------------------------ persistence of own signing
    def _read_slot(self, key: bytes) -> int:
        raw = self.kv.get(key)
        return -1 if raw is None else msgpack.unpackb(raw)

    def _persist_slot(self, key: bytes, slot: int) -> None:
        self.kv.write({key: codec.pack_flat(slot)})

    # ------------------------------------------------------------------ admission
    def _admission_context(self) -> tuple:
        """The state and block context txs are admitted against: the tip, as if in the next block."""
        tip = self.chain.tip()
        now = now_ms()
        slot = max(self.genesis.slot_at(now), tip.slot + 1)
        return tip, transition.make_context(self.genesis, tip.height + 1, slot, now,
                                            self.chain.schedules.for_slot(slot))

    def submit(self, tx: Tx, source: str | None = None, admission: tuple | None = None) -> None:
        """Admit a decoded tx to the mempool or raise ProtocolError; changes nothing on error.
        An admitted tx is queued for gossip (`source`: the peer it came from, None for a wallet).
        `admission`: a `_admission_context()` shared by a batch."""
        try:
            if self.holds_tx(tx.id):
                raise InvalidTx("duplicate", "tx is already pending or included", status=409)
            tip, ctx = admission or self._admission_context()
            # a dry run against the tip state (the same checks the block will make, contract hook
            # included, thrown away), for a wallet's tx so that it learns now what would fail, and
            # for a peer's alike: a peer's own dry run is not taken on trust, and a tx that fails
            # here would only take mempool space and relay bandwidth until a block refused it
            transition.apply_tx(Layer(tip.layer), tx, ctx, 0, self.chain.verified.verify, self.chain.rules)
            # its pending txs are charged first: together they must fit the sender's allowance
            allowance.check_pending(transition.get_account(tip.layer, tx.sender),
                                    *self.mempool.pending_of(tx.sender), len(tx.raw), ctx)
            self.mempool.add(tx)
        except ProtocolError as e:
            self.metrics.refuse(e.code)
            raise
        self.metrics.admitted["wallet" if source is None else "peer"] += 1
        self.rejected.pop(tx.id, None)
        self.net.queue_tx(tx.raw, source)

    def holds_tx(self, tx_id: bytes) -> bool:
        """Pending here or in a non-final block: a copy arriving again is a duplicate."""
        return tx_id in self.mempool or tx_id in self.chain.tx_blocks

    async def preverify(self, txs: list[Tx], for_block: bool = False) -> None:
        """Verify, in worker processes (node.verify_pool), the signatures of many txs this node
        has not verified yet, and remember those that pass, so that admission and block import
        find them verified. The event loop stays free for votes and blocks meanwhile. A tx that
        fails is left for the normal path to reject with its error code. `for_block`: txs of a
        block being imported, verified on threads at normal priority (its votes wait for them)."""
        tip, verified = self.chain.tip().layer, self.chain.verified
        keys: dict[str, bytes | None] = {}  # sender -> public key, read once per batch
        todo, elsewhere = [], set()
        for tx in txs:
            if tx.sender not in keys:
                sender = transition.get_account(tip, tx.sender)
                keys[tx.sender] = None if sender is None else sender.public_key
            key = keys[tx.sender]
            if key is not None and not verified.has(tx, key):
                # a tx a concurrent call is verifying (a block holding a tx still on its way into
                # the mempool, or a tx that two peers sent at once) is waited for, not verified twice
                other = self._verifying.get(tx.id)
                if other is not None:
                    elsewhere.add(other[1])
                else:
                    todo.append((tx, key))
        if len(todo) < MIN_OFFLOADED_VERIFY:
            if elsewhere:
                await asyncio.wait(elsewhere)
            return
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        for tx, _ in todo:
            self._verifying[tx.id] = (tx, done)
        try:
            chunks = [todo[i::VERIFY_WORKERS] for i in range(VERIFY_WORKERS)]
            if for_block:
                results = await asyncio.gather(*(loop.run_in_executor(self._block_verify_pool, _verify_all, c)
                                                 for c in chunks))
            else:
                try:
                    results = await self.verify_pool.verify(
                        [[(key, tx.signing_message(), tx.signature) for tx, key in c] for c in chunks])
                except VerifyError as e:  # admission verifies them one by one instead
                    log.warning("%s", e)
                    results = []
            for chunk, oks in zip(chunks, results):
                for (tx, key), ok in zip(chunk, oks):
                    if ok:
                        verified.add(tx, key)
        finally:
            for tx, _ in todo:
                if self._verifying.get(tx.id, (None, None))[1] is done:
                    del self._verifying[tx.id]
            done.set_result(None)
        if elsewhere:
            await asyncio.wait(elsewhere)

    async def submit_many(self, txs: list[Tx], source: str | None = None) -> list[ProtocolError | None]:
        """`submit` each tx, signatures verified off the event loop first; per tx, its error or None."""
        started = time.perf_counter()
        await self.preverify(txs)
        verified = time.perf_counter()
        if txs:
            self.metrics.signature_wait.observe(verified - started)
        admission = self._admission_context()
        errors = []
        for tx in txs:
            try:
                self.submit(tx, source, admission)
                errors.append(None)
            except ProtocolError as e:
                errors.append(e)
        log.debug("%d of %d txs from %s admitted: signatures checked in %.0f ms, the rest in %.0f ms",
                  errors.count(None), len(txs), source or "a wallet", (verified - started) * 1000,
                  (time.perf_counter() - verified) * 1000)
        return errors

    def tx_status(self, tx_id: bytes) -> dict:
        status, height, index = self.chain.tx_status(tx_id)
        if status == "unknown":
            if tx_id in self.mempool:
                status = "pending"
            elif tx_id in self.rejected:
                err = self.rejected[tx_id]
                return {"id": tx_id.hex(), "status": "rejected",
                        "error": {"code": err.code, "message": err.message}}
        out = {"id": tx_id.hex(), "status": status}
        if height is not None:
            out.update(height=height, index=index)
        return out

    async def wait_for(self, tx_id: bytes, until: str, timeout_s: float) -> dict:
        """Wait until the tx is `until` (included|final) or rejected, or the timeout passes."""
        reached = {"included": {"included", "final", "rejected"}, "final": {"final", "rejected"}}[until]
        current = self.tx_status(tx_id)
        if current["status"] in reached:
            return current
        fut = asyncio.get_running_loop().create_future()
        self.waiters.setdefault(tx_id, []).append((until, fut))
        try:
            await asyncio.wait_for(fut, timeout_s)
        except asyncio.TimeoutError:
            pass
        finally:
            lst = self.waiters.get(tx_id, [])
            if (until, fut) in lst:
                lst.remove((until, fut))
            if not lst:
                self.waiters.pop(tx_id, None)
        return self.tx_status(tx_id)

    def _wake(self, tx_id: bytes, event: str) -> None:
        for until, fut in self.waiters.get(tx_id, []):
            if not fut.done() and (event != "included" or until == "included"):
                fut.set_result(event)

    def _reject(self, tx: Tx, err: ProtocolError) -> None:
        self.mempool.remove([tx.id])
        self.rejected[tx.id] = err
        if len(self.rejected) > REJECTED_MEMORY:
            self.rejected.popitem(last=False)
        self._wake(tx.id, "rejected")

    # ------------------------------------------------------------------ production and finality
    def produce(self, slot: int) -> None:
        """Produce, persist, vote for and apply our block for `slot` if we are its producer."""
        # a node stopping itself (node.health) signs nothing more
        if (self.producer_key is None or self.health.fatal is not None or slot <= self.last_produced_slot
                or self.chain.producer_for_slot(slot) != self.producer_name):
            return
        started = time.perf_counter()
        # Peers must import our block and vote within the slot: a block that takes longer than
        # a fraction of the slot to build would take them longer still, and an overloaded network
        # that produced ever larger late blocks would never notarize one. So the block holds what
        # this node applies in that time, at the rate it measured on its last blocks.
        budget_s = self.genesis.params.block_interval_ms / 1000 * BUILD_BUDGET_FRACTION
        limit = min(self.genesis.params.max_block_txs, max(MIN_BLOCK_TXS, int(budget_s / self._build_s_per_tx)))
        candidates = self.mempool.take(limit, self.chain.pending_tx_ids(self.chain.head()))
        block, layer, rejected = self.chain.build_block(self.producer_key, self.producer_name, slot,
                                                        candidates, self.snapshots.attestable())
        if len(candidates) >= MIN_BLOCK_TXS:  # up at once when building got slower, down gradually
            cost = (time.perf_counter() - started) / len(candidates)
            self._build_s_per_tx = max(cost, 0.7 * self._build_s_per_tx + 0.3 * cost)
        for tx, err in rejected:
            self._reject(tx, err)
        self.last_produced_slot = slot
        self._persist_slot(schema.LAST_PRODUCED, slot)
        built = time.perf_counter()
        self.on_block(block, slot, own_layer=layer)
        self.metrics.produced += 1
        log.debug("produced block %d (slot %d, %d txs, parent slot %d) in %.0f ms, added in %.0f ms",
                 block.header.height, slot, len(block.txs), self.chain.nodes[block.header.prev_id].slot,
                 (built - started) * 1000, (time.perf_counter() - built) * 1000)

    def decode_block(self, data: bytes) -> Block:
        """Block bytes -> Block, reusing the decoded txs this node already holds: in its mempool,
        or on their way into it (their signatures being checked)."""
        def tx_decoder(raw: bytes) -> Tx:
            tx_id = codec.sha256(raw)
            held = self.mempool.get(tx_id)
            if held is None:
                held = self._verifying.get(tx_id, (None,))[0]
            return held or Tx.decode(raw)
        return Block.decode(data, tx_decoder)

    async def import_block_bytes(self, data: bytes, source: str | None, relay: bool = True) -> bool:
        """A block from a peer or from sync; True if it was new. Raises InvalidBlock; on an
        unknown parent it also asks the network to sync. The header is checked (chain, parent,
        slot, producer, its signature) before any tx is decoded: a block that fails costs a header
        and one signature, whatever it carries. Signatures of txs that did not reach us by gossip
        are then verified off the event loop."""
        header, signature, block_id = Block.decode_head(data)
        if block_id in self.chain.nodes:
            return False  # relayed again by another peer: already in the tree, skip decoding its txs
        started = time.perf_counter()
        now_slot = self.genesis.slot_at(now_ms())
        try:
            if self.chain.hold_if_excess(data, header, signature, block_id, now_slot):
                return False  # a producer's third or later block for a slot (see Chain.held)
            self.chain.check_header(header, now_slot)
            key = self.chain.producer_key(header.producer)
            if key is None or not header.verify(key, signature):
                raise InvalidBlock("bad_signature", "block is not signed by its producer's key")
            block = self.decode_block(data)
            await self.preverify([tx for tx in block.txs if tx.id not in self.mempool], for_block=True)
            decoded = time.perf_counter()
            added = self.on_block(block, self.genesis.slot_at(now_ms()), source=source, relay=relay)
        except InvalidBlock as e:
            if e.code == "unknown_parent":
                self.net.request_sync()
            raise
        arrived_ms = self._into_slot_ms(block.header.slot, started)
        if added:
            self.metrics.imported += 1
            self.metrics.block_arrival.observe(arrived_ms / 1000)
        log.debug("block %d (slot %d, %d txs) from %s: arrived %+d ms into its slot, decoded and "
                  "verified in %.0f ms, added in %.0f ms", block.header.height, block.header.slot,
                  len(block.txs), source, arrived_ms, (decoded - started) * 1000,
                  (time.perf_counter() - decoded) * 1000)
        return added

    def _into_slot_ms(self, slot: int, at: float | None = None) -> int:
        """How far into `slot` the moment `at` (perf_counter; default now) is, in ms (for logs)."""
        ago = 0.0 if at is None else time.perf_counter() - at
        return now_ms() - int(ago * 1000) - self.genesis.slot_start_ms(slot)

    def on_block(self, block: Block, now_slot: int, own_layer=None, source: str | None = None,
                 relay: bool = True) -> bool:
        """Attach a valid block, relay it, vote for it if we are scheduled; False if already known."""
        if block.id in self.chain.nodes:
            return False
        node = self.chain.add_block(block, now_slot, own_layer=own_layer)
        if relay:
            self.net.broadcast_block(block.encode(), source)
        for tx in block.txs:
            self._wake(tx.id, "included")
        self._maybe_vote(node, now_slot)
        for vote, vote_source in self.orphan_votes.take(block.id):
            try:
                self.on_vote(vote, vote_source)
            except ProtocolError as e:
                log.debug("buffered vote dropped: %s", e)
        return True

    def _maybe_vote(self, node, now_slot: int) -> None:
        """Streamlet: vote once per slot, only in the current slot (a block of a slot already past
        is history, e.g. during sync), for a block on a longest notarized chain. The vote slot is
        persisted before the vote exists anywhere else."""
        if (self.producer_key is None or self.health.fatal is not None or node.slot < now_slot - 1
                or self.producer_name not in self.chain.schedule(node.slot)
                or not self.chain.should_vote(node, self.last_vote_slot)
                or not self.snapshots.accepts(node.header)):
            return
        self.last_vote_slot = node.slot
        self._persist_slot(schema.LAST_VOTE, node.slot)
        vote = Vote.create(self.producer_key, self.genesis.chain_id, node.id, node.height,
                           node.slot, self.producer_name)
        self.metrics.votes_cast += 1
        self.on_vote(vote)

    def on_vote(self, vote: Vote, source: str | None = None, relay: bool = True) -> None:
        """Record a vote (raises InvalidVote), relay it if new, commit what became final. A vote
        for a block not seen yet waits for it (bounded)."""
        node = self.chain.nodes.get(vote.block_id)
        if node is None and vote.height > self.chain.final_height:
            self.orphan_votes.keep(vote, source)
            released = self.chain.vouch(vote)
            if released is not None:  # a held block enough producers voted for: follow it
                try:
                    self.on_block(self.decode_block(released), self.genesis.slot_at(now_ms()))
                except InvalidBlock as e:  # e.g. its branch was dropped meanwhile: sync decides
                    log.info("held block %s released but not added: %s", vote.block_id.hex()[:16], e)
            return
        is_new = node is not None and vote.voter not in node.votes
        was_notarized = node is not None and node.notarized
        finalized = self.chain.add_vote(vote)
        if is_new and relay:
            self.net.broadcast_vote(vote.encode(), source)
        for final in finalized:
            ids = [tx.id for tx in final.block.txs]
            self.mempool.remove(ids)
            for tx_id in ids:
                self._wake(tx_id, "final")
            self.metrics.final_txs += len(ids)
            if not self.net.syncing:  # a catch-up finalizes old blocks: not how fast finality is
                self.metrics.finality.observe(self._into_slot_ms(final.slot) / 1000)
        if finalized:
            self.rejoin.check()
            self.pruner.prune(self.snapshots.prune_floor())
            log.debug("final height %d (slot %d) %+d ms into that slot", finalized[-1].height,
                      finalized[-1].slot, self._into_slot_ms(finalized[-1].slot))
        if node is not None and node.notarized and not was_notarized:
            log.debug("block %d (slot %d) notarized %+d ms into its slot", node.height, node.slot,
                      self._into_slot_ms(node.slot))
            # a block that arrived before its parent was notarized can be voted for now
            now_slot = self.genesis.slot_at(now_ms())
            for child in list(node.children):
                self._maybe_vote(child, now_slot)

    def sync_entries(self, start: int, count: int, max_bytes: int) -> tuple[int, list]:
        """For a peer catching up, one page: final blocks from `start` with their votes, then (if
        the page reaches our final height) every non-final block with its votes, parents first.
        A page stops at `count` final blocks or once it holds `max_bytes` of blocks and votes,
        always holding at least one entry; the caller asks again from after its last final
        entry (final entries are consecutive from `start`, so their count says where that is)."""
        chain = self.chain
        if self.pruner.is_pruned(start):
            raise ProtocolError("pruned", f"this node keeps final blocks from height {self.pruner.below} "
                                "on: sync from a node that keeps more (an archive node)", status=410)
        entries, size = [], 0
        end = min(start + count, chain.final_height + 1)
        for height in range(start, end):
            if entries and size >= max_bytes:
                return chain.final_height, entries
            block_id = chain.final_block_id(height)
            raw = chain.final_block_bytes(height)
            votes = chain.final_block_votes(block_id)
            entries.append([block_id, raw, votes])
            size += len(raw) + SYNC_VOTE_BYTES * len(votes)
        if start + count > chain.final_height:
            pending = sorted((n for n in chain.nodes.values() if not n.final), key=lambda n: n.height)
            for node in pending:
                if entries and size >= max_bytes:
                    break
                raw = node.block.encode()
                entries.append([node.id, raw, [v.to_list() for v in node.votes.values()]])
                size += len(raw) + SYNC_VOTE_BYTES * len(node.votes)
        return chain.final_height, entries

    async def _await_previous_block(self, slot: int) -> None:
        """Streamlet builds on the longest notarized chain. If the previous slot's block extends
        it but its votes are still arriving, wait for them (up to PARENT_WAIT_FRACTION of the
        slot): building beside it instead would fork, and one of the two blocks would be lost."""
        if self.producer_key is None or self.chain.producer_for_slot(slot) != self.producer_name:
            return
        deadline = self.genesis.slot_start_ms(slot) + self.genesis.params.block_interval_ms * PARENT_WAIT_FRACTION
        while now_ms() < deadline:
            tip = self.chain.tip()
            if tip.slot != slot - 1 or tip.notarized:
                return
            await asyncio.sleep(0.005)

    async def run_producer(self) -> None:
        """Once a slot: judge the slots that ended (node.health), produce if it is ours, evict
        expired txs. A failure is logged with its traceback and the next slot goes on, unless
        `health` stops the node (our own invariant broken, or the same failure again and again)."""
        # build a little ahead of the slot start, so the block leaves about when its slot begins
        lead_ms = int(self.genesis.params.block_interval_ms * PREBUILD_FRACTION)
        while self.health.fatal is None:
            slot = self.genesis.slot_at(now_ms() + lead_ms)
            try:
                await self._await_previous_block(slot)
                now = now_ms()
                self.health.on_slot(self.genesis.slot_at(now))
                self.produce(slot)
                for tx in self.mempool.evict_expired(now):
                    self._reject(tx, InvalidTx("expired", "the tx expired before inclusion"))
            except Exception as e:  # (a cancellation is not an Exception: it ends the loop)
                self.health.slot_failed(slot, e)
            else:
                self.health.slot_done(slot)
            next_start = self.genesis.slot_start_ms(slot + 1) - lead_ms
            await asyncio.sleep(max(0.0, (next_start - now_ms()) / 1000) + 0.001)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self.verify_pool.start()
        self._task = self.health.watch(asyncio.get_running_loop().create_task(self.run_producer()),
                                       "producer")
        self.net.start()

    async def stop(self) -> None:
        self.health.stopping = True
        if self._task is not None:  # first: no block is produced while the rest stops
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.net.stop()
        await self.verify_pool.stop()
        self._block_verify_pool.shutdown(wait=True)
        self.snapshots.close()
        self.kv.close()

    def status(self) -> dict:
        head, final = self.chain.tip(), self.chain.final
        slot = self.genesis.slot_at(now_ms())
        return self.net.claim({
            "chain_id": self.genesis.chain_id, "genesis_hash": self.genesis.hash.hex(),
            "protocol_version": PROTOCOL_VERSION,
            "head": {"height": head.height, "id": head.id.hex(), "slot": head.slot},
            "notarized": {"height": self.chain.head().height},
            "final": {"height": final.height, "id": final.id.hex()},
            "slot": slot, "peers": self.net.status(),
            "syncing": self.net.syncing, "sync_target": self.net.sync_target,
            "mempool": len(self.mempool), "producer": self.producer_name,
            **self.health.status(slot),
        })

