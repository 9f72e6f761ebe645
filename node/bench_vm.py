"""What the rules contract adds to applying a tx (`python cli.py bench vm`), next to the cost of
the Ed25519 verify that every tx pays anyway, measured in the same run.

For each kind with a rules hook (post, vote, attend, refer) the same pre-signed txs are applied
with `state.transition.apply_tx` on a chain state of a few hundred members, once with the rules
contract as the RulesHook and once without, each on a fresh layer over the same state. apply_tx
is given a verifier that accepts: a node verifies a tx's signature once, when it enters the
mempool, and applies it later (`consensus.chain.VerifiedCache`). So the full cost of a tx is
apply + one raw verify, and

    vm_share = (with_rules - without_rules) / (with_rules + raw_verify)

is the contract VM's share (hook, host calls, its writes) of everything a node spends on the tx.
"""
import time

from contracts import DIMENSIONS
from contracts.rules import HOOK_FOR_KIND
from core import codec, crypto
from core.genesis import ChainParams, Genesis, Member, Producer
from core.types import Tx, make_ticket
from node.bench import bench_keys
from state import schema
from state import transition as T
from state.kv import MemoryKV
from state.rules import ContractRules
from state.view import Layer

GENESIS_MS = 1_700_000_000_000
_EVENTS = 4     # event posts attended
_TARGETS = 50   # posts voted on


def _accept(tx: Tx, public_key: bytes) -> bool:
    """The signature was verified when the tx entered the mempool."""
    return True


class _Chain:
    """A chain state with `members` members, funded reward pools, _TARGETS posts and _EVENTS
    open events, and `per_kind` signed txs of each hooked kind to apply on top of it."""

    def __init__(self, members: int, per_kind: int):
        self.keys = bench_keys(members)
        self.genesis = Genesis("bench-vm", GENESIS_MS, ChainParams(),
                               tuple(Member(n, k.public_key, 10**9, 10**6) for n, k in self.keys),
                               (Producer(self.keys[0][0], self.keys[0][1].public_key, ""),))
        kv = MemoryKV()
        kv.write(T.genesis_writes(self.genesis))
        self.rules = ContractRules()
        self.ctx = T.make_context(self.genesis, 1, 1, GENESIS_MS + 60_000)
        self.salt = 0
        setup = [self._tx(i, "post", self._post(f"target-{i}")) for i in range(_TARGETS)]
        setup += [self._tx(i, "post", self._post(f"event-{i}", event={
            "starts_at": GENESIS_MS, "ends_at": GENESIS_MS + 2 * 3_600_000, "capacity": 10**6}))
            for i in range(_EVENTS)]
        self.state = Layer(Layer(None, kv))
        for dimension in DIMENSIONS:  # funded pools, so that awards are paid (and written)
            self.state.writes[schema.pool_key(dimension)] = codec.pack_flat(10**15)
        self._apply(self.state, setup, self.rules)
        n = len(self.keys)
        self.txs = {
            "post": [self._tx(i, "post", self._post(f"post-{i}")) for i in range(per_kind)],
            "vote": [self._vote(i) for i in range(per_kind)],
            "attend": [self._attend(i % n, i // n % _EVENTS) for i in range(min(per_kind, n * _EVENTS))],
            "refer": [self._tx(i, "refer", {"new_account": f"newcomer-{i}", "pubkey": bytes(32)})
                      for i in range(per_kind)],
        }

    @staticmethod
    def _post(permlink: str, **extra) -> dict:
        return {"permlink": permlink, "title": permlink, "body": "x" * 200, "tags": ["bench"], **extra}

    def _tx(self, member: int, kind: str, body: dict) -> Tx:
        name, key = self.keys[member % len(self.keys)]
        self.salt += 1
        return Tx.create(key, self.genesis.chain_id, kind, name, self.ctx.timestamp_ms + 60_000,
                         body, salt=self.salt)

    def _vote(self, i: int) -> Tx:
        """Vote i: member i, on a post it has not voted on yet unless i passes the number of
        (member, post) pairs; one in seven is a downvote."""
        n = len(self.keys)
        target = (i // n + i) % _TARGETS
        return self._tx(i, "vote", {"post": f"{self.keys[target][0]}/target-{target}",
                                    "weight": 10_000 if i % 7 else -5_000})

    def _attend(self, member: int, event: int) -> Tx:
        ref = f"{self.keys[event][0]}/event-{event}"
        ticket = make_ticket(self.keys[event][1], self.genesis.chain_id, ref, self.keys[member][0])
        return self._tx(member, "attend", {"event": ref, "ticket": ticket})

    def _apply(self, layer: Layer, txs: list[Tx], rules) -> float:
        start = time.process_time()
        for i, tx in enumerate(txs):
            T.apply_tx(layer, tx, self.ctx, i, _accept, rules)
        return time.process_time() - start

    def per_tx_us(self, kind: str, rules) -> float:
        """CPU µs per tx of applying all txs of kind on a fresh layer over the same state, after
        that layer's (untimed) begin_block, as in a block."""
        layer = Layer(self.state)
        T.begin_block(layer, self.ctx, rules)
        return self._apply(layer, self.txs[kind], rules) / len(self.txs[kind]) * 1e6


def _raw_verify_us(batch: int = 200) -> float:
    """CPU µs of one PyNaCl Ed25519 verify of a tx-sized message (as node.bench measures it)."""
    key = crypto.Keypair.generate()
    msg = bytes(120)
    sig = key.sign_raw(msg)
    start = time.process_time()
    for _ in range(batch):
        crypto.verify_raw(key.public_key, msg, sig)
    return (time.process_time() - start) / batch * 1e6


def bench_vm_share(members: int = 300, per_kind: int = 1000, repeats: int = 5) -> dict:
    """Per hooked kind: apply_tx µs with and without the rules, and the VM's share of the tx's
    cost including one raw verify (see the module docstring); raw verify µs measured here too.
    Every figure is the least CPU time of `repeats` runs, with the runs of the three interleaved,
    so that other load on the machine inflates none of them more than the others."""
    chain = _Chain(members, per_kind)
    for kind in HOOK_FOR_KIND:
        chain.per_tx_us(kind, chain.rules)  # translate the contract and warm caches first
    runs: dict = {}
    for _ in range(repeats):
        runs.setdefault("raw_verify", []).append(_raw_verify_us())
        for kind in HOOK_FOR_KIND:
            runs.setdefault((kind, True), []).append(chain.per_tx_us(kind, chain.rules))
            runs.setdefault((kind, False), []).append(chain.per_tx_us(kind, None))
    raw_verify = min(runs["raw_verify"])
    kinds = {}
    for kind in HOOK_FOR_KIND:
        with_rules, without = min(runs[kind, True]), min(runs[kind, False])
        kinds[kind] = {"txs": len(chain.txs[kind]), "with_rules_us": round(with_rules, 1),
                       "without_rules_us": round(without, 1),
                       "vm_us": round(with_rules - without, 1),
                       "vm_share": round((with_rules - without) / (with_rules + raw_verify), 3)}
    return {"members": members, "raw_verify_us": round(raw_verify, 1), "kinds": kinds}
