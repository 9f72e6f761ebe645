"""Development chains: a genesis plus the keys of its founding members, in one call.

Used by `cli.py genesis create`, the testnet launcher and the tests, so that every local chain is
built the same way. Deterministic seeds (sha256(chain_id + name)) make a devnet reproducible from
its chain id alone — which is exactly why such keys are public and never protect anything of value.
"""
import hashlib
import json
import secrets
from pathlib import Path

from core.crypto import Keypair
from core.genesis import DEFAULT_DEV_KEYS, ChainParams, Genesis, Member, Producer

DEFAULT_BALANCE = 1_000_000_000  # milli-units: 1,000,000.000 CP
DEFAULT_STAKE = 100_000_000
# dev chains: stake moves in seconds, and a candidate needs half a founder's default stake behind it
DEV_STAKE_DELAY_MS = 20_000
# dev chains: bandwidth refills in 10 minutes rather than a day, so a developer sees it come back
DEV_BANDWIDTH_WINDOW_MS = 600_000
DEFAULT_BASE_PORT = 8080
DEV_KEYS_WARNING = ("These keys are PUBLIC: anyone can read the seeds in this file. They are for a "
                    "local development chain only; never use them for anything of value.")


def dev_seed(chain_id: str, name: str) -> bytes:
    """The reproducible seed of `name` on a deterministic devnet."""
    return hashlib.sha256((chain_id + name).encode()).digest()


def member_names(n: int) -> list[str]:
    """member-01, member-02, ... (zero-padded so names sort in creation order)."""
    width = max(2, len(str(n)))
    return [f"member-{i:0{width}d}" for i in range(1, n + 1)]


def make_devnet(n_members: int, n_producers: int, chain_id: str, block_interval_ms: int,
                genesis_time_ms: int, *,
                names: list[str] | None = None, deterministic: bool = False,
                balance: int = DEFAULT_BALANCE, stake: int = DEFAULT_STAKE,
                base_port: int = DEFAULT_BASE_PORT, epoch_slots: int = 60) -> tuple[dict, dict]:
    """(genesis.json document, dev-keys.json document) for a fresh chain.

    The first `n_producers` members are the producers; each signs blocks with its member key (the
    producer's `node_key` is its account key), so one key file runs a producer node. Producer i
    gets the url http://127.0.0.1:<base_port + i>. Raises ValueError on impossible counts or names.
    """
    names = list(names) if names is not None else member_names(n_members)
    if len(names) != n_members:
        raise ValueError(f"{n_members} members but {len(names)} names")
    if not 1 <= n_producers <= n_members:
        raise ValueError("producers must be between 1 and the number of members")
    keys = {name: Keypair(dev_seed(chain_id, name) if deterministic else secrets.token_bytes(32))
            for name in names}
    genesis = Genesis(
        chain_id, genesis_time_ms,
        ChainParams(block_interval_ms=block_interval_ms, epoch_slots=epoch_slots,
                    unstake_delay_ms=DEV_STAKE_DELAY_MS, stake_activation_delay_ms=DEV_STAKE_DELAY_MS,
                    min_producer_approval=max(1, stake // 2),
                    bandwidth_window_ms=DEV_BANDWIDTH_WINDOW_MS),
        tuple(Member(n, keys[n].public_key, balance, stake) for n in names),
        tuple(Producer(n, keys[n].public_key, f"http://127.0.0.1:{base_port + i}")
              for i, n in enumerate(names[:n_producers])),
    )
    doc = genesis.to_json()
    Genesis.from_json(doc)  # the same validation a node runs on start-up
    dev_keys = {"warning": DEV_KEYS_WARNING, "chain_id": chain_id,
                "members": [{"name": n, "seed": keys[n].seed.hex(),
                             "public_key": keys[n].public_key.hex()} for n in names]}
    return doc, dev_keys


def load_dev_keys(path: Path | str | None = None) -> dict[str, Keypair]:
    """name -> Keypair from a dev-keys.json (default: the embedded chain's)."""
    doc = json.loads(Path(path or DEFAULT_DEV_KEYS).read_text())
    keys = {}
    for m in doc["members"]:
        key = Keypair(bytes.fromhex(m["seed"]))
        if m.get("public_key", key.public_key.hex()) != key.public_key.hex():
            raise ValueError(f"{path}: public_key of {m['name']} does not match its seed")
        keys[m["name"]] = key
    return keys
