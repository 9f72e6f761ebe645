"""The block tree over the committed state, with Streamlet finality.

Final blocks live in the KV store; non-final blocks live in memory as `BlockNode`s, each with the
state layer it produced, and are also persisted under `pending/` so a restart can rebuild the tree.
When a block becomes final, it and its non-final ancestors are written with their state diffs, tx
index, votes and the new head in ONE atomic batch; branches that do not extend it are dropped.
"""
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

import msgpack

from core import codec, types
from core.errors import InvalidBlock, InvalidVote, InvariantBroken
from core.evidence import Equivocation
from core.genesis import Genesis
from core.quorum import notarization_quorum
from core.types import MAX_BLOCK_BYTES, Block, BlockHeader, Hash, Tx, Vote
from consensus.schedule import ScheduleTable
from state import schema, snapshot, transition
from state.kv import KVStore
from state.view import Layer


@dataclass(eq=False)
class BlockNode:
    header: BlockHeader
    id: Hash
    block: Block | None  # None for the committed final head (its txs are in the store)
    layer: Layer
    parent: "BlockNode | None"
    votes: dict = field(default_factory=dict)  # voter -> Vote
    notarized: bool = False
    final: bool = False
    children: list = field(default_factory=list)

    @property
    def height(self) -> int:
        return self.header.height

    @property
    def slot(self) -> int:
        return self.header.slot


class VerifiedCache:
    """Ids of (tx, public key) pairs whose signature was already verified on this node, so that
    block production and import never verify again what the mempool verified. Bounded, FIFO."""

    def __init__(self, capacity: int = 1_000_000):
        self._seen: dict[bytes, None] = {}
        self._capacity = capacity

    def add(self, tx: Tx, public_key: bytes) -> None:
        self._seen[tx.id + public_key] = None
        if len(self._seen) > self._capacity:
            for k in list(self._seen)[: self._capacity // 10]:
                del self._seen[k]

    def has(self, tx: Tx, public_key: bytes) -> bool:
        return tx.id + public_key in self._seen

    def verify(self, tx: Tx, public_key: bytes) -> bool:
        if tx.id + public_key in self._seen:
            return True
        if tx.verify(public_key):
            self.add(tx, public_key)
            return True
        return False


# A producer's blocks for one slot applied as they arrive: the first, and a second (the evidence
# of its equivocation). Any further one is held unapplied, in a bounded buffer, until producers
# vote for it (see `Chain.hold_if_excess`).
EAGER_BLOCKS_PER_SLOT = 2
MAX_HELD_BLOCKS = 8


class Chain:
    """Block tree + finality. All methods are synchronous and do no network I/O; time comes in as
    arguments."""

    def __init__(self, kv: KVStore, genesis: Genesis, rules=None):
        self.kv = kv
        self.genesis = genesis
        self.rules = rules
        self.verified = VerifiedCache()
        self.nodes: dict[Hash, BlockNode] = {}
        # tx id -> (the non-final block holding it, its position there)
        self.tx_blocks: dict[Hash, tuple[BlockNode, int]] = {}
        # (producer, kind) -> the first conflicting pair seen of that kind (one proves it)
        self.evidence: dict[tuple[str, str], Equivocation] = {}
        self.on_evidence: Callable[[Equivocation], None] | None = None  # told of each new pair
        # told of each snapshot height once the store holds the state after it (and nothing later)
        self.on_snapshot_height: Callable[[int], None] | None = None
        # block id -> (a producer's excess block for a slot: its bytes and header, who verifiably
        # voted for it so far)
        self.held: OrderedDict[Hash, tuple[bytes, BlockHeader, set[str]]] = OrderedDict()
        self.blocks_held = 0  # how many blocks were ever held (a metric)
        for key, raw in self.kv.scan(schema.EVIDENCE):  # before recovery replays blocks and votes
            name, kind = key[len(schema.EVIDENCE):].decode().split("/")
            self.evidence[name, kind] = Equivocation.parse(kind, *msgpack.unpackb(raw))
        self._open_store()

    # ------------------------------------------------------------------ start-up and recovery
    def _open_store(self) -> None:
        stored = self.kv.get(schema.GENESIS_HASH)
        if stored is None:
            self._write_genesis()
        elif stored != self.genesis.hash:
            raise InvariantBroken("the data directory holds a different chain (genesis hash differs);"
                                  " use another --data-dir or the matching genesis file")
        head = msgpack.unpackb(self.kv.get(schema.FINAL_HEAD))
        header = BlockHeader.from_list(head[0]) if head[0][2] > 0 else transition.genesis_header(self.genesis)
        if header.id != head[1]:
            raise InvariantBroken("store check failed: final head record does not match its header")
        if header.height > 0 and self.kv.get(schema.block_key(header.id)) is None:
            raise InvariantBroken(f"store check failed: final block {header.height} is missing")
        self.final = BlockNode(header, header.id, None, Layer(None, self.kv), None,
                               notarized=True, final=True)
        self.schedules = ScheduleTable(self.kv, self.genesis)
        self.nodes = {self.final.id: self.final}
        self._reload_pending()

    def _write_genesis(self) -> None:
        header = transition.genesis_header(self.genesis)
        puts = dict(transition.genesis_writes(self.genesis))
        puts[schema.GENESIS_HASH] = self.genesis.hash
        puts[schema.FINAL_HEAD] = codec.pack_flat([header.to_list(), header.id])
        puts[schema.final_at_height_key(0)] = header.id
        self.kv.write(puts)

    def _reload_pending(self) -> None:
        """Re-import the non-final blocks persisted before a restart (in height order)."""
        stale = set()
        for key, raw in list(self.kv.scan(schema.PENDING_BLOCK)):
            try:
                block = Block.decode(raw)
                self.add_block(block, now_slot=None, persist=False)
            except InvalidBlock:
                stale.add(key)
        for node in list(self.nodes.values()):
            raw = self.kv.get(schema.votes_key(node.id))
            if raw is not None and not node.final:
                for v in msgpack.unpackb(raw):
                    try:
                        self.add_vote(Vote.from_list(v), persist=False)
                    except InvalidVote:
                        pass
        if stale:
            self.kv.write({}, stale)

    # ------------------------------------------------------------------ reads
    @property
    def final_height(self) -> int:
        return self.final.height

    def head(self) -> BlockNode:
        """Fork choice: the tip of the longest notarized chain (ties: lower slot, then lower id)."""
        best = self.final
        for node in self.nodes.values():
            if node.notarized and (node.height, -node.slot, node.id) > (best.height, -best.slot, best.id):
                best = node
        return best

    def tip(self) -> BlockNode:
        """The newest block on the head's branch, notarized or not (what the API shows as head)."""
        node = self.head()
        while True:
            kids = [c for c in node.children]
            if not kids:
                return node
            node = min(kids, key=lambda c: (c.slot, c.id))

    def schedule(self, slot: int | None = None) -> list[str]:
        """The producers of `slot`'s epoch (default: the tip's), from the recorded elections."""
        return list(self.schedules.for_slot(self.tip().slot if slot is None else slot))

    def producer_for_slot(self, slot: int) -> str:
        return self.schedules.producer_for_slot(slot)

    @property
    def missed_slots(self) -> dict[str, int]:
        return dict(self.schedules.missed)

    def producer_key(self, name: str) -> bytes | None:
        rec = transition.get_producer(self.final.layer, name)
        return None if rec is None else rec.node_key

    def tx_status(self, tx_id: Hash) -> tuple[str, int | None, int | None]:
        held = self.tx_blocks.get(tx_id)
        if held is not None:
            return "included", held[0].height, held[1]
        raw = self.kv.get(schema.tx_location_key(tx_id))
        if raw is not None:
            height, index = msgpack.unpackb(raw)
            return "final", height, index
        return "unknown", None, None

    def final_block_id(self, height: int) -> bytes | None:
        return self.kv.get(schema.final_at_height_key(height))

    def final_block_bytes(self, height: int) -> bytes | None:
        block_id = self.kv.get(schema.final_at_height_key(height))
        return None if block_id is None else self.kv.get(schema.block_key(block_id))

    def final_block_votes(self, block_id: bytes) -> list:
        raw = self.kv.get(schema.votes_key(block_id))
        return [] if raw is None else msgpack.unpackb(raw)

    # ------------------------------------------------------------------ blocks
    def check_header(self, header: BlockHeader, now_slot: int | None) -> BlockNode:
        """Consensus checks of a header against its parent and the schedule; returns the parent."""
        g = self.genesis
        if header.chain_id != g.chain_id:
            raise InvalidBlock("wrong_chain", f"block is for chain {header.chain_id!r}")
        parent = self.nodes.get(header.prev_id)
        if parent is None:
            if header.height <= self.final_height:
                raise InvalidBlock("stale_block", f"height {header.height} is at or below the final height")
            raise InvalidBlock("unknown_parent", "parent block is unknown (sync needed)", status=409)
        if header.height != parent.height + 1 or header.slot <= parent.slot:
            raise InvalidBlock("bad_height_or_slot", "height must be parent+1 and slot must increase")
        if now_slot is not None and header.slot > now_slot + 1:
            raise InvalidBlock("future_block", f"slot {header.slot} is ahead of now ({now_slot})")
        if header.timestamp_ms != g.slot_start_ms(header.slot):
            raise InvalidBlock("bad_timestamp", "timestamp must be the start of the block's slot")
        if header.producer != self.producer_for_slot(header.slot):
            raise InvalidBlock("wrong_producer", f"{header.producer} is not scheduled for slot {header.slot}")
        if header.final_height < parent.header.final_height or header.final_height >= header.height:
            raise InvalidBlock("bad_final_height", "final_height must not decrease")
        return parent

    def add_block(self, block: Block, now_slot: int | None, persist: bool = True,
                  own_layer: Layer | None = None) -> BlockNode:
        """Validate and attach a block; idempotent for a block already known. `own_layer` is the
        layer `build_block` made for this very block (then its txs are not applied again)."""
        known = self.nodes.get(block.id)
        if known is not None:
            return known
        header = block.header
        size = block.encoded_size()
        if size > MAX_BLOCK_BYTES:  # no peer would take it, nor sync past it
            raise InvalidBlock("too_large", f"block of {size} bytes", status=413)
        parent = self.check_header(header, now_slot)
        key = self.producer_key(header.producer)
        if key is None or not block.verify_signature(key):
            raise InvalidBlock("bad_signature", "block is not signed by its producer's key")
        for sibling in parent.children + self._same_slot(header):
            if (sibling.header.producer == header.producer and sibling.slot == header.slot
                    and sibling.block is not None):
                self._record_evidence(Equivocation.of_blocks(sibling.block, block))
        if own_layer is not None and own_layer.parent is parent.layer:
            layer = own_layer
        else:
            layer = transition.apply_block(parent.layer, parent.header.state_root, self.genesis,
                                           block, self.verified.verify, self.rules,
                                           self.schedules.for_slot(header.slot))
        node = BlockNode(header, block.id, block, layer, parent)
        if persist:
            self.kv.write({schema.pending_block_key(header.height, block.id): block.encode()},
                          durable=False)
        parent.children.append(node)
        self.nodes[block.id] = node
        for i, tx in enumerate(block.txs):
            self.tx_blocks[tx.id] = (node, i)
        return node

    def hold_if_excess(self, data: bytes, header: BlockHeader, signature: bytes, block_id: Hash,
                       now_slot: int | None) -> bool:
        """Hold block bytes, their txs not even decoded (header, signature and id: from
        `Block.decode_head`), if the block is its producer's third or later for its slot (its
        header and signature checked first: InvalidBlock as `add_block` would raise); True if held. Each block of an equivocating producer would otherwise be
        decoded, verified and applied in full, so one producer could make every node do that as
        fast as it signs blocks. Refusing them outright is not safe either: honest nodes that saw
        one first vote for it, and it may be notarized; so a held block is released when `vouch`
        counts enough votes for it."""
        if block_id in self.held:
            return True
        if block_id in self.nodes or sum(1 for n in self._same_slot(header)
                                         if n.header.producer == header.producer) < EAGER_BLOCKS_PER_SLOT:
            return False
        self.check_header(header, now_slot)
        key = self.producer_key(header.producer)
        if key is None or not header.verify(key, signature):
            raise InvalidBlock("bad_signature", "block is not signed by its producer's key")
        self.held[block_id] = (data, header, set())
        self.blocks_held += 1
        while len(self.held) > MAX_HELD_BLOCKS:
            self.held.popitem(last=False)
        return True

    def vouch(self, vote: Vote) -> bytes | None:
        """Count a vote for a held block (InvalidVote if it is forged: its sender is punished like
        any sender of a bad vote). Returns the block's bytes, no longer held, once n/3+1 of its
        slot's producers voted for it: at least one of them is honest, so it may be notarized and
        this node must be able to follow it. Its producer's own vote alone never releases it."""
        entry = self.held.get(vote.block_id)
        if entry is None:
            return None
        data, header, voters = entry
        schedule = self.schedules.for_slot(header.slot)
        if vote.voter in voters or vote.voter not in schedule or (vote.height, vote.slot) != (header.height, header.slot):
            return None
        key = self.producer_key(vote.voter)
        if key is None or not vote.verify(key):
            raise InvalidVote("bad_signature", "vote is not signed by the producer's key")
        voters.add(vote.voter)
        if len(voters) < len(schedule) // 3 + 1:
            return None
        del self.held[vote.block_id]
        return data

    def _same_slot(self, header: BlockHeader) -> list[BlockNode]:
        return [n for n in self.nodes.values() if n.slot == header.slot and not n.final]

    def _record_evidence(self, evidence: Equivocation) -> None:
        """Keep the first pair of each kind per producer (one proves the equivocation; more would
        only cost memory), in the chain store too, and tell `on_evidence` about it."""
        key = (evidence.producer, evidence.kind)
        if key in self.evidence:
            return
        self.evidence[key] = evidence
        self.kv.write({schema.evidence_key(*key): codec.pack_flat([evidence.first, evidence.second])},
                      durable=False)
        if self.on_evidence is not None:
            self.on_evidence(evidence)

    def pending_tx_ids(self, node: BlockNode) -> set[Hash]:
        """Ids of the txs in the non-final blocks from `node` back to the final block: what a
        block built on `node` must not include again (txs of other branches may be included)."""
        ids = set()
        while node is not None and not node.final:
            ids.update(tx.id for tx in node.block.txs)
            node = node.parent
        return ids

    def build_block(self, key, producer: str, slot: int, candidates: list[Tx],
                    snapshot_roots: dict[int, Hash] | None = None) -> tuple[Block, Layer, list]:
        """Produce a block for `slot` on the head: apply candidates in order, skipping invalid ones;
        attest the newest of `snapshot_roots` (height -> this node's commitment) that the head's
        chain has not attested yet. Returns the block (not yet added), its state layer (for
        `add_block`, so our own block is not applied twice) and the rejected txs with their errors."""
        parent = self.head()
        # a parent from a producer further ahead in finality than us already claims a higher one
        final_height = max(self.final_height, parent.header.final_height)
        snap_height, snap_root = snapshot.compute_attestation(
            snapshot_roots or {}, snapshot.get_last_attested(parent.layer), self.final_height)
        header_ctx = BlockHeader(self.genesis.chain_id, parent.height + 1, parent.id, slot,
                                 self.genesis.slot_start_ms(slot), producer, types.ZERO_HASH,
                                 types.ZERO_HASH, final_height, snap_height, snap_root)
        ctx = transition.block_context(self.genesis, header_ctx, self.schedules.for_slot(slot))
        layer = Layer(parent.layer)
        snapshot.process_attestation(layer, snap_height, self.genesis.params.snapshot_interval)
        transition.begin_block(layer, ctx, self.rules)
        included, rejected = [], []
        # bytes counted as the block is built (tx raw lengths are known), so no peer refuses it as
        # too large; the first tx that does not fit ends the block and waits in the mempool with
        # the rest (a later, smaller one is not taken instead: it may depend on the one left out)
        size = Block.overhead(header_ctx)
        for tx in candidates:
            if len(included) >= self.genesis.params.max_block_txs or size + len(tx.raw) > MAX_BLOCK_BYTES:
                break
            try:
                transition.apply_tx(layer, tx, ctx, len(included), self.verified.verify, self.rules)
                included.append(tx)
                size += len(tx.raw)
            except types.InvalidTx as e:
                rejected.append((tx, e))
        transition.end_block(layer, ctx, self.rules)
        root = transition.compute_state_root(parent.header.state_root, layer.writes)
        header = BlockHeader(header_ctx.chain_id, header_ctx.height, parent.id, slot,
                             header_ctx.timestamp_ms, producer,
                             types.merkle_root([t.id for t in included]), types.Hash(root),
                             final_height, snap_height, snap_root)
        return Block.create(key, header, tuple(included)), layer, rejected

    # ------------------------------------------------------------------ votes and finality
    def should_vote(self, node: BlockNode, last_vote_slot: int) -> bool:
        """Streamlet: vote for the first valid block of a slot that extends a longest notarized chain."""
        if node.slot <= last_vote_slot or node.block is None:
            return False
        return node.parent.notarized and node.parent.height >= self.head().height

    def add_vote(self, vote: Vote, persist: bool = True) -> list[BlockNode]:
        """Record a vote; returns the blocks that became final because of it (oldest first)."""
        if vote.chain_id != self.genesis.chain_id:
            raise InvalidVote("wrong_chain", "vote is for another chain")
        known = self.nodes.get(vote.block_id)
        if known is not None and known.votes.get(vote.voter) == vote:
            return []  # a copy of a vote already counted (relayed by several peers): no check again
        if vote.voter not in self.schedules.for_slot(vote.slot):
            raise InvalidVote("not_producer", f"{vote.voter} is not a scheduled producer")
        key = self.producer_key(vote.voter)
        if key is None or not vote.verify(key):
            raise InvalidVote("bad_signature", "vote is not signed by the producer's key")
        node = self.nodes.get(vote.block_id)
        if node is None:
            if vote.height <= self.final_height:
                return []
            raise InvalidVote("unknown_block", "vote for an unknown block", status=409)
        if node.header.height != vote.height or node.slot != vote.slot:
            raise InvalidVote("malformed", "vote height/slot do not match the block")
        for other in self._same_slot(node.header):
            prior = other.votes.get(vote.voter)
            if other is not node and prior is not None:
                self._record_evidence(Equivocation.of_votes(prior, vote))
        if vote.voter in node.votes:
            return []
        node.votes[vote.voter] = vote
        if persist:
            self.kv.write({schema.votes_key(node.id): codec.pack_flat(
                [v.to_list() for v in node.votes.values()])}, durable=False)
        if not node.notarized and len(node.votes) >= notarization_quorum(len(self.schedules.for_slot(node.slot))):
            node.notarized = True
            return self._finalize_from(node)
        return []

    def _finalize_from(self, node: BlockNode) -> list[BlockNode]:
        """Streamlet finality: a notarized chain b0 <- b1 <- b2 with consecutive slots finalizes b1.
        The newly notarized `node` can be b0, b1 or b2 of such a triple."""
        best = None
        for b2 in [node] + self._notarized_descendants(node, 2):
            b1 = b2.parent
            b0 = b1.parent if b1 is not None else None
            if (b0 is not None and b1.notarized and b0.notarized and b2.notarized
                    and b1.slot == b0.slot + 1 and b2.slot == b1.slot + 1 and not b1.final):
                if best is None or b1.height > best.height:
                    best = b1
        return [] if best is None else self._commit(best)

    def _notarized_descendants(self, node: BlockNode, depth: int) -> list[BlockNode]:
        out, frontier = [], [node]
        for _ in range(depth):
            frontier = [c for n in frontier for c in n.children if c.notarized]
            out.extend(frontier)
        return out

    def _commit(self, target: BlockNode) -> list[BlockNode]:
        """Write target and its non-final ancestors to the store in one atomic batch; a batch
        ends at each snapshot height, so the store holds the state after it for a moment
        (`on_snapshot_height` is told then, to read it)."""
        path = []
        n = target
        while not n.final:
            path.append(n)
            n = n.parent
        if n is not self.final:
            raise InvariantBroken("a block to finalize does not extend the final block")
        path.reverse()
        interval = self.genesis.params.snapshot_interval
        for b in path[:-1]:
            if snapshot.is_snapshot_height(b.height, interval):
                return self._commit(b) + self._commit(target)
        puts: dict[bytes, bytes] = {}
        deletes: set[bytes] = set()
        for b in path:
            for k, v in b.layer.writes.items():
                if v is None:
                    deletes.add(k)
                    puts.pop(k, None)
                else:
                    puts[k] = v
                    deletes.discard(k)
            puts[schema.block_key(b.id)] = b.block.encode()
            puts[schema.final_at_height_key(b.height)] = b.id
            puts[schema.votes_key(b.id)] = codec.pack_flat([v.to_list() for v in b.votes.values()])
            # where each tx is, for its status: the state prunes its replay key once it expired
            for i, tx in enumerate(b.block.txs):
                puts[schema.tx_location_key(tx.id)] = codec.pack_flat([b.height, i])
            if b.header.snapshot_height:  # what proves that snapshot (node.snapshots)
                puts[schema.snapshot_attested_by_key(b.header.snapshot_height)] = codec.pack_flat(b.height)
        puts[schema.FINAL_HEAD] = codec.pack_flat([target.header.to_list(), target.id])
        schedule_puts, schedule_deletes, apply_schedule = self.schedules.on_commit(path, n)
        puts.update(schedule_puts)
        deletes.update(schedule_deletes)
        keep = self._descendants(target)
        for node in self.nodes.values():
            if node is not self.final and (node in path or node not in keep):
                deletes.add(schema.pending_block_key(node.height, node.id))
            if node not in keep and node not in path and node is not self.final:
                deletes.add(schema.votes_key(node.id))
        self.kv.write(puts, deletes)
        apply_schedule()
        # the store now holds target's state: make target's layer the base and drop the rest
        for b in path:
            b.final = True
            for tx in b.block.txs:
                self.tx_blocks.pop(tx.id, None)
        for node in list(self.nodes.values()):
            if node not in keep and node is not target:
                if node.block is not None:
                    for tx in node.block.txs:
                        if self.tx_blocks.get(tx.id, (None,))[0] is node:
                            del self.tx_blocks[tx.id]
                del self.nodes[node.id]
                # out of the tree: with no link down to the kept blocks, no cycle remains, and
                # refcounting frees it (and its txs) once the caller is done with `path`
                node.children = []
        target.layer.writes = {}
        target.layer.parent = None
        target.parent = None
        self.final = target
        if self.on_snapshot_height is not None and snapshot.is_snapshot_height(target.height, interval):
            self.on_snapshot_height(target.height)
        return path

    def _descendants(self, node: BlockNode) -> set:
        out, frontier = set(), [node]
        while frontier:
            frontier = [c for n in frontier for c in n.children]
            out.update(frontier)
        return out
