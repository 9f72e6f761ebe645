"""Node settings: one TOML file plus command-line overrides.

These are the operator's settings (ports, data dir, keys, peers); chain parameters come from the
genesis file and protocol constants from code.
"""
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

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
    log_format: str = "text"  # "json": one object per line (node.logs)
    log_file: str = ""  # empty: stderr; SIGHUP reopens it (logrotate)
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        """Refuse a setting of the wrong type or range here, with its name, rather than as an
        obscure failure once the node is running (a port of "abc" used to fail only at bind)."""
        def bad(name: str, what: str):
            raise ConfigError(name, f"{name} must be {what} (got {getattr(self, name)!r})")
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
        if type(self.log_format) is not str or self.log_format not in LOG_FORMATS:
            bad("log_format", "one of " + ", ".join(LOG_FORMATS))
        if type(self.log_file) is not str:
            bad("log_file", "a path (a string; empty: stderr)")
        if type(self.extra) is not dict:
            bad("extra", "a table")


MIN_RETAIN_BLOCKS = 100  # a peer a little behind catches up from this node, not an archive
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")
# settings naming a file or folder: relative in a config file, they are read from the file's
# folder (wherever the node is started from); given as flags, from the working directory
PATH_SETTINGS = ("data_dir", "genesis", "key_file", "log_file")

# What each setting means, in one line: `node init` writes it above the setting, and a test
# checks that every field of NodeConfig has one.
SETTING_HELP = {
    "data_dir": "LevelDB state, blocks and snapshots",
    "host": "address the API listens on (wallet API, /metrics and the /p2p/ endpoints)",
    "port": "port of that API",
    "genesis": "the chain to follow: its genesis file (default: the embedded development chain)",
    "key_file": "this producer's key file (python cli.py keys generate); empty: a full node",
    "peers": "base URLs of the validators (and full nodes) to gossip with and sync from",
    "peer_keys": "full nodes allowed to push to this node: name = 64 hex digits of its node key",
    "mempool_max_txs": "txs the mempool holds at most",
    "mempool_max_bytes": "bytes of txs the mempool holds at most",
    "api_requests_per_s": "wallet API requests per client IP and second (not loopback); 0: no limit; then 429",
    "api_txs_per_s": "txs submitted per client IP and second (a batch counts each); 0: no limit",
    "max_connections": "open connections, all but the peers' addresses; then 503",
    "peer_connections": "open connections from the addresses of `peers`, apart",
    "client_connections": "open connections per client address (IPv6: per /64)",
    "header_timeout_s": "seconds a request's headers (a fresh connection's too) may take to arrive",
    "body_timeout_s": "and its body after them; else the socket is closed",
    "body_bytes_in_flight": "request-body bytes being received, node-wide (peers apart); then 503",
    "client_body_bytes": "of which one client address (IPv6: /64) at most; then 429",
    "limit_loopback": "true: loopback clients get the per-address caps too (tests, the bench)",
    "snapshot_keep": "snapshot files kept in data_dir/snapshots, newest first; 0: none",
    "retain_blocks": f"final blocks kept (0 or >= {MIN_RETAIN_BLOCKS}); 0: all (an archive node)",
    "log_level": "one of " + ", ".join(LOG_LEVELS) + " (per-block lines are debug)",
    "log_format": "text, or json: one object per line (ts, level, logger, msg and fields)",
    "log_file": "file to log to, reopened on SIGHUP (logrotate); empty: stderr",
    "extra": "a table of settings for experiments; the node ignores it",
}


class ConfigError(ValueError):
    """A setting the node cannot run with: `setting` names it, and `where` (set by load_config)
    the file it was read from, if it was."""

    def __init__(self, setting: str | None, reason: str, where: str | None = None):
        super().__init__(f"{where}: {reason}" if where else f"invalid config: {reason}")
        self.setting, self.reason, self.where = setting, reason, where
_NODE_KEY_HEX = re.compile(r"[0-9a-fA-F]{64}")  # (bytes.fromhex would also take spaces)


def load_config(path: str | None = None, **overrides) -> NodeConfig:
    """Read a TOML config (if given) and apply non-None overrides; unknown keys are an error.
    Relative paths in the file (PATH_SETTINGS) are taken from the file's folder; overrides (the
    command line's flags) are left as given, relative to the working directory. A setting the
    file got wrong raises ConfigError naming the file and the setting (a syntax error: its line)."""
    values = {}
    if path:
        try:
            doc = tomllib.loads(Path(path).read_text())
        except tomllib.TOMLDecodeError as e:  # (its message ends "(at line 3, column 7)")
            raise ConfigError(None, f"not valid TOML: {e}", str(path)) from None
        from_file = doc.get("node", doc)
        if type(from_file) is not dict:
            raise ConfigError("node", "[node] must be a table", str(path))
        folder = Path(path).parent
        for name in PATH_SETTINGS:
            value = from_file.get(name)
            if type(value) is str and value:
                from_file[name] = str(folder / Path(value).expanduser())
        values.update(from_file)
    from_flags = {k: v for k, v in overrides.items() if v is not None}
    values.update(from_flags)
    known = {f.name for f in fields(NodeConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(unknown[0], f"unknown config keys: {', '.join(unknown)}",
                          str(path) if path and not set(unknown) & set(from_flags) else None)
    if type(values.get("peers")) is list:
        values["peers"] = tuple(values["peers"])
    try:
        return replace(NodeConfig(), **values)
    except ConfigError as e:
        if path and e.setting not in from_flags:
            raise ConfigError(e.setting, e.reason, str(path)) from None
        raise
