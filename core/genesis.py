"""Chain parameters and the genesis description (genesis.json) as frozen objects.

Three layers of settings: protocol constants live in code (core.types), chain parameters come from
genesis.json into `ChainParams`, node settings (ports, data dir, peers, keys) are the node's own.
"""
import json
import time
from dataclasses import dataclass, fields
from pathlib import Path

from core import codec
from core.types import CHAIN_ID_RE, MAX_INT, MAX_TX_BYTES, is_name


def now_ms() -> int:
    """Wall-clock Unix time in ms: what slots, tx expiry and ages are reckoned in (never read
    inside the state transition, which takes the block's timestamp)."""
    return time.time_ns() // 1_000_000


ROOT = Path(__file__).resolve().parent.parent
DEFAULT_GENESIS = ROOT / "genesis.json"
DEFAULT_DEV_KEYS = ROOT / "dev-keys.json"


DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class ChainParams:
    """Defaults are sized for a real chain; the embedded dev chain and testnets set short delays
    and a threshold their founders' stake can reach (core.devnet, genesis.json)."""
    block_interval_ms: int = 500
    producer_count: int = 21
    max_block_txs: int = 5000
    max_tx_expiry_ms: int = 3_600_000
    max_producer_approvals: int = 30
    # unstaked CP stays locked this long before it is spendable, so one stake cannot vote in one
    # account, move on and vote again in another within a payout window (7 days)
    unstake_delay_ms: int = 7 * DAY_MS
    # newly staked CP approves producers only after this long (Hive waits 30 days before new
    # stake votes in governance): bought stake cannot elect, and so govern, at once
    stake_activation_delay_ms: int = 7 * DAY_MS
    # a candidate needs this much approving stake (milli-CP) to be elected; the genesis producers
    # hold office until such candidates replace them (Antelope waits for 15 % of the stake)
    min_producer_approval: int = 1_000_000_000
    epoch_slots: int = 60  # slots per producer-schedule epoch (consensus/schedule.py)
    # bandwidth (state/allowance.py): a tx costs tx_base_bandwidth + its bytes; an account holds at
    # most bandwidth_floor + bandwidth_per_cp per CP staked, refilled linearly over the window. A
    # heavy honest day (50 votes, 3 full 8 KiB posts, 10 transfers) costs ~64,000: a newcomer's
    # 10 CP welcome stake gives 250,000; a dust account gets the floor, ~78 small txs or 5 big posts
    bandwidth_window_ms: int = DAY_MS
    tx_base_bandwidth: int = 500
    bandwidth_floor: int = 50_000
    bandwidth_per_cp: int = 20_000
    # the full state is committed (state.snapshot) after every final block at a multiple of this
    # height, and attested on chain by a later block: the heights a node can start from (10 min)
    snapshot_interval: int = 1200


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    public_key: bytes
    balance: int
    stake: int


@dataclass(frozen=True, slots=True)
class Producer:
    name: str
    node_key: bytes
    url: str


@dataclass(frozen=True, slots=True)
class Genesis:
    chain_id: str
    genesis_time_ms: int
    params: ChainParams
    members: tuple[Member, ...]
    producers: tuple[Producer, ...]
    # overrides of the rules parameters' defaults (genesis.json "rules": {"params": {...}}), sorted
    # by name; which names exist is the state transition's to check (state.rules)
    rules_params: tuple[tuple[str, int], ...] = ()

    @property
    def hash(self) -> bytes:
        return codec.sha256(codec.pack(self.to_json()))

    def slot_at(self, now_ms: int) -> int:
        return max(0, (now_ms - self.genesis_time_ms) // self.params.block_interval_ms)

    def slot_start_ms(self, slot: int) -> int:
        return self.genesis_time_ms + slot * self.params.block_interval_ms

    @classmethod
    def from_json(cls, doc: dict) -> "Genesis":
        try:
            known = {f.name for f in fields(ChainParams)}
            unknown = set(doc.get("params", {})) - known
            if unknown:
                raise ValueError(f"unknown parameters {sorted(unknown)}")
            params = ChainParams(**{k: int(v) for k, v in doc.get("params", {}).items()})
            members = tuple(Member(m["name"], bytes.fromhex(m["public_key"]), int(m["balance"]),
                                   int(m.get("stake", 0))) for m in doc["members"])
            producers = tuple(Producer(p["name"], bytes.fromhex(p["node_key"]), p.get("url", ""))
                              for p in doc["producers"])
            rules = doc.get("rules", {})
            if set(rules) - {"params"}:
                raise ValueError(f"unknown rules sections {sorted(set(rules) - {'params'})}")
            rules_params = tuple(sorted((str(k), int(v)) for k, v in rules.get("params", {}).items()))
            if any(not 0 <= v <= MAX_INT for _, v in rules_params):
                raise ValueError("rules parameters are integers in 0..2^63-1")
            g = cls(doc["chain_id"], int(doc["genesis_time_ms"]), params, members, producers,
                    rules_params)
        except KeyError as e:
            raise ValueError(f"invalid genesis: missing field {e.args[0]!r}") from None
        except (AttributeError, TypeError, ValueError) as e:
            raise ValueError(f"invalid genesis: a field of the wrong type or value ({e})") from None
        if type(g.chain_id) is not str or not CHAIN_ID_RE.fullmatch(g.chain_id):
            raise ValueError("invalid genesis: chain_id")
        names = [m.name for m in members]
        if len(set(names)) != len(names) or not all(is_name(n) for n in names):
            raise ValueError("invalid genesis: member names must be unique account names")
        if not producers or any(p.name not in names for p in producers):
            raise ValueError("invalid genesis: producers must be founding members (at least one)")
        if min(g.params.block_interval_ms, g.params.epoch_slots, g.params.producer_count,
               g.params.min_producer_approval, g.params.snapshot_interval) < 1:
            raise ValueError("invalid genesis: block_interval_ms, epoch_slots, producer_count, "
                             "min_producer_approval and snapshot_interval are positive")
        if min(g.params.bandwidth_window_ms, g.params.tx_base_bandwidth, g.params.bandwidth_per_cp) < 0:
            raise ValueError("invalid genesis: the bandwidth parameters are not negative")
        # with a full allowance any member, even with no stake, can send any valid tx
        if g.params.bandwidth_floor < g.params.tx_base_bandwidth + MAX_TX_BYTES:
            raise ValueError("invalid genesis: bandwidth_floor is at least tx_base_bandwidth + "
                             f"{MAX_TX_BYTES} (the largest tx)")
        if min(g.params.unstake_delay_ms, g.params.stake_activation_delay_ms) < 0:
            raise ValueError("invalid genesis: the stake delays are not negative")
        if any(len(m.public_key) != 32 for m in members) or any(len(p.node_key) != 32 for p in producers):
            raise ValueError("invalid genesis: keys are 32 bytes")
        return g

    def to_json(self) -> dict:
        doc = {
            "chain_id": self.chain_id, "genesis_time_ms": self.genesis_time_ms,
            "params": {f.name: getattr(self.params, f.name) for f in fields(ChainParams)},
            "members": [{"name": m.name, "public_key": m.public_key.hex(), "balance": m.balance,
                         "stake": m.stake} for m in self.members],
            "producers": [{"name": p.name, "node_key": p.node_key.hex(), "url": p.url}
                          for p in self.producers],
        }
        if self.rules_params:  # absent when empty, so a genesis without it keeps its hash
            doc["rules"] = {"params": dict(self.rules_params)}
        return doc


def load_genesis(path: Path | str | None = None) -> Genesis:
    path = Path(path) if path else DEFAULT_GENESIS
    try:
        doc = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"invalid genesis: {path} is not JSON ({e})") from None
    if type(doc) is not dict:
        raise ValueError(f"invalid genesis: {path} holds no JSON object")
    return Genesis.from_json(doc)
