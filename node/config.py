"""Node settings: one TOML file plus command-line overrides.

These are the operator's settings (ports, data dir, keys, peers); chain parameters come from the
genesis file and protocol constants from code.
"""
import json
import os
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from core.crypto import Keypair
from core.genesis import DEFAULT_GENESIS
from node.http import MAX_BATCH_TXS, MAX_BODY_BYTES


@dataclass(frozen=True)
class NodeConfig:
    data_dir: str = "./data"
    host: str = "127.0.0.1"
    port: int = 8080
    genesis: str = str(DEFAULT_GENESIS)
    key_file: str = ""  # producer key; empty = full node (no producing, no voting)
    peers: tuple = ()  # peer base URLs
    peer_keys: dict = field(default_factory=dict)  # full node name -> node key hex, may push to us
    mempool_max_txs: int = 100_000
    mempool_max_bytes: int = 64 * 1024 * 1024
    # per non-loopback client IP on the wallet API (node.http.ClientLimits); 0: no limit
    api_requests_per_s: int = 100
    api_txs_per_s: int = 2000
    # the HTTP edge (node.intake): connections, deadlines and request-body bytes in flight
    max_connections: int = 1000  # open connections from other than peer addresses; then 503
    peer_connections: int = 256  # open connections from the addresses of `peers`, apart
    client_connections: int = 32  # open connections per client address (IPv6: per /64)
    header_timeout_s: float = 5.0  # a request's headers must arrive within this (fresh connections too)
    body_timeout_s: float = 30.0  # and its body within this after its headers
    body_bytes_in_flight: int = 64 * 1024 * 1024  # request bodies being received, node-wide (peers apart)
    client_body_bytes: int = 16 * 1024 * 1024  # of which one client address (IPv6: /64) at most
    limit_loopback: bool = False  # loopback clients get the per-address caps too (tests, the bench)
    # snapshot files kept in data_dir/snapshots (node.snapshots), newest first; 0: none (the
    # commitment is computed either way: votes need it)
    snapshot_keep: int = 2
    # final blocks kept: older ones are deleted (from the oldest kept snapshot on, all are kept);
    # 0: keep every block (an archive node, which new nodes can sync from genesis)
    retain_blocks: int = 0
    log_level: str = "info"
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        """Refuse a setting of the wrong type or range here, with its name, rather than as an
        obscure failure once the node is running (a port of "abc" used to fail only at bind)."""
        def bad(name: str, what: str):
            raise ValueError(f"invalid config: {name} must be {what} (got {getattr(self, name)!r})")
        for name in ("data_dir", "host", "genesis"):
            if type(getattr(self, name)) is not str or not getattr(self, name):
                bad(name, "a non-empty string")
        if type(self.key_file) is not str:
            bad("key_file", "a path (a string)")
        if type(self.port) is not int or not 1 <= self.port <= 65535:
            bad("port", "an integer 1..65535")
        if (type(self.peers) is not tuple
                or not all(type(u) is str and u.startswith(("http://", "https://")) for u in self.peers)):
            bad("peers", "a list of http:// or https:// URLs")
        if type(self.peer_keys) is not dict or not all(
                type(n) is str and type(k) is str and _NODE_KEY_HEX.fullmatch(k) for n, k in self.peer_keys.items()):
            bad("peer_keys", "a table of node name = 64 hex digits of its public key")
        for name in ("mempool_max_txs", "mempool_max_bytes", "max_connections", "peer_connections",
                     "client_connections"):
            if type(getattr(self, name)) is not int or getattr(self, name) <= 0:
                bad(name, "a positive integer")
        for name in ("header_timeout_s", "body_timeout_s"):
            if type(getattr(self, name)) not in (int, float) or not 0 < getattr(self, name) <= 3600:
                bad(name, "a number of seconds, 0 < s <= 3600")
        # the largest body an endpoint takes (a peer's 12 MiB batch of txs) must fit in each
        for name in ("body_bytes_in_flight", "client_body_bytes"):
            if type(getattr(self, name)) is not int or getattr(self, name) < MAX_BODY_BYTES:
                bad(name, f"an integer >= {MAX_BODY_BYTES} (the largest request body)")
        for name in ("snapshot_keep", "retain_blocks"):
            if type(getattr(self, name)) is not int or getattr(self, name) < 0:
                bad(name, "an integer >= 0")
        if 0 < self.retain_blocks < MIN_RETAIN_BLOCKS:
            bad("retain_blocks", f"0 (keep all) or at least {MIN_RETAIN_BLOCKS}")
        if type(self.limit_loopback) is not bool:
            bad("limit_loopback", "true or false")
        if type(self.api_requests_per_s) is not int or self.api_requests_per_s < 0:
            bad("api_requests_per_s", "an integer >= 0 (0: no limit)")
        # a whole batch must fit in the burst (twice the rate)
        if type(self.api_txs_per_s) is not int or self.api_txs_per_s < 0 or 0 < 2 * self.api_txs_per_s < MAX_BATCH_TXS:
            bad("api_txs_per_s", f"0 (no limit) or an integer >= {MAX_BATCH_TXS // 2}")
        if type(self.log_level) is not str or self.log_level.lower() not in LOG_LEVELS:
            bad("log_level", "one of " + ", ".join(LOG_LEVELS))
        if type(self.extra) is not dict:
            bad("extra", "a table")


MIN_RETAIN_BLOCKS = 100  # a peer a little behind catches up from this node, not an archive
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_NODE_KEY_HEX = re.compile(r"[0-9a-fA-F]{64}")  # (bytes.fromhex would also take spaces)


def load_config(path: str | None = None, **overrides) -> NodeConfig:
    """Read a TOML config (if given) and apply non-None overrides; unknown keys are an error."""
    values = {}
    if path:
        doc = tomllib.loads(Path(path).read_text())
        values.update(doc.get("node", doc))
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(NodeConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown config keys: {', '.join(unknown)}")
    if type(values.get("peers")) is list:
        values["peers"] = tuple(values["peers"])
    return replace(NodeConfig(), **values)


@dataclass(frozen=True)
class KeyFile:
    name: str
    key: Keypair


def write_key_file(path: str | Path, name: str, key: Keypair) -> None:
    """Write a key file readable by its owner only (0600), never world-readable even briefly."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"name": name, "seed": key.seed.hex(), "public_key": key.public_key.hex()}, f, indent=2)
    os.chmod(path, 0o600)


def read_key_file(path: str | Path) -> KeyFile:
    """The key in `path`; refused (ValueError) if the file is readable or writable by group or
    others, as ssh refuses a private key: a secret that others can read is no longer ours alone."""
    mode = os.stat(path).st_mode & 0o777
    if mode & 0o077:
        raise ValueError(f"{path} is accessible by group or others (mode {mode:04o}): "
                         f"run `chmod 600 {path}`")
    doc = json.loads(Path(path).read_text())
    key = Keypair(bytes.fromhex(doc["seed"]))
    if "public_key" in doc and doc["public_key"] != key.public_key.hex():
        raise ValueError(f"{path}: public_key does not match the seed")
    return KeyFile(doc["name"], key)
