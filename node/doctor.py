"""`node doctor`: check a node's setup and say what is wrong, one line per check.

Each check is `ok`, `warn` or `fail`, with what it found and, when not ok, a hint at what to do.
The checks read the config, the genesis and the key file as `node run` would, then ask the node
and each of its peers over HTTP (short timeouts: a peer that is down is a line, never a
traceback). Nothing is written anywhere.
"""
import email.utils
import ipaddress
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from core.genesis import load_genesis
from core.types import PROTOCOL_VERSION
from node.config import NodeConfig, load_config
from node.keystore import read_key_info

HTTP_TIMEOUT_S = 3.0
MAX_CLOCK_OFFSET_S = 1.0  # blocks are 500 ms slots: a clock off by more misplaces them
DISK_WARN_BYTES = 1 << 30
DISK_FAIL_BYTES = 100 << 20
MAX_BLOCKS_BEHIND = 4  # two slots of 500 ms either way is the gossip delay, not a lag
DATE_HEADER_S = 2.0  # Date says whole seconds, and uvicorn refreshes it once a second


@dataclass(frozen=True)
class Check:
    status: str  # ok | warn | fail
    name: str
    message: str
    hint: str = ""

    def line(self) -> str:
        return f"{self.status:<4} {self.name:<9} {self.message}" + (f"  -- {self.hint}" if self.hint else "")


@dataclass
class Answer:
    """One GET: its JSON, or why there was none; and the clock bounds it gave."""
    url: str
    doc: dict | None = None
    error: str | None = None
    sent: float = 0.0
    received: float = 0.0
    date: float | None = None  # the Date header, seconds since the epoch


def get(http: httpx.Client, base: str, path: str) -> Answer:
    answer = Answer(base)
    answer.sent = time.time()
    try:
        r = http.get(base.rstrip("/") + path)
    except httpx.HTTPError as e:
        answer.error = str(e) or type(e).__name__
        return answer
    answer.received = time.time()
    if "date" in r.headers:
        parsed = email.utils.parsedate_to_datetime(r.headers["date"])
        answer.date = parsed.timestamp() if parsed is not None else None
    try:
        doc = r.json()
    except ValueError:
        doc = None
    if r.status_code != 200 or not isinstance(doc, dict):
        answer.error = f"HTTP {r.status_code}"
    else:
        answer.doc = doc
    return answer


def node_url(config: NodeConfig) -> str:
    """The URL of the node a config describes, from this host (a wildcard address: loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(config.host, config.host)
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass
    return f"http://{host}:{config.port}"


def compute_clock_offset(answer: Answer, genesis) -> tuple[float, float] | None:
    """Bounds (low, high) on the peer's clock minus ours, in seconds: the peer read its clock
    between our send and our receipt, and said (Date header) the second and (status `slot`)
    the slot it was in. None if it said neither."""
    bounds = []
    if answer.date is not None:
        bounds.append((answer.date - answer.received, answer.date + DATE_HEADER_S - answer.sent))
    slot = (answer.doc or {}).get("slot")
    if genesis is not None and type(slot) is int:
        start = genesis.slot_start_ms(slot) / 1000
        end = genesis.slot_start_ms(slot + 1) / 1000
        bounds.append((start - answer.received, end - answer.sent))
    if not bounds:
        return None
    low, high = max(b[0] for b in bounds), min(b[1] for b in bounds)
    if low > high:  # (inconsistent: a stale Date header) the slot's bounds alone
        low, high = bounds[-1]
    return low, high


def compatibility(status: dict, genesis, expected: dict | None) -> str | None:
    """Why a node serving `status` is not on our chain, or None. Compared with our genesis if we
    could read it, else with what `expected` (the local node's status) says."""
    want = ({"chain_id": genesis.chain_id, "genesis_hash": genesis.hash.hex()} if genesis is not None
            else {k: (expected or {}).get(k) for k in ("chain_id", "genesis_hash")})
    want["protocol_version"] = PROTOCOL_VERSION
    wrong = [f"{k} {status.get(k)!r} (ours: {v!r})" for k, v in want.items()
             if v is not None and status.get(k) != v]
    return ", ".join(wrong) or None


def find_producer(http: httpx.Client, bases: list[str], name: str) -> tuple[dict | None, dict | None, str | None]:
    """(the producer `name`'s record, the first page of /v1/producers, the URL that answered)
    from the first of `bases` that answers; pages through the records by name."""
    for base in bases:
        page = get(http, base, "/v1/producers?limit=100")
        if page.doc is None:
            continue
        first = page.doc
        while True:
            for record in page.doc.get("producers", []):
                if record.get("name") == name:
                    return record, first, base
            after = page.doc.get("next")
            if not after:
                return None, first, base
            page = get(http, base, f"/v1/producers?limit=100&after={after}")
            if page.doc is None:
                return None, first, base
    return None, None, None


def check_disk(data_dir: str, free_bytes=lambda p: shutil.disk_usage(p).free) -> Check:
    """Free space where data_dir is (or will be: its nearest existing folder)."""
    where = Path(data_dir).absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    free = free_bytes(where)
    message = f"{free / (1 << 30):.1f} GiB free at {where}"
    if free < DISK_FAIL_BYTES:
        return Check("fail", "disk", message, "free space now: a node whose write fails stops itself")
    if free < DISK_WARN_BYTES:
        return Check("warn", "disk", message, "under 1 GiB: free space, or set retain_blocks to prune")
    return Check("ok", "disk", message)


def run_checks(config_file: str | None, url: str | None, http: httpx.Client | None = None,
               free_bytes=None) -> list[Check]:
    """Every check, in order; later checks use what earlier ones found and are left out when
    what they need failed already (its own line said why)."""
    http = http or httpx.Client(timeout=HTTP_TIMEOUT_S)
    checks: list[Check] = []
    config = genesis = key = None
    try:
        config = load_config(config_file)
        checks.append(Check("ok", "config", f"{config_file}: valid" if config_file
                            else "no --config: the defaults"))
    except (OSError, ValueError) as e:
        checks.append(Check("fail", "config", str(e), "fix that setting; `node init` writes every "
                                                      "setting with its default and meaning"))
    if config is not None:
        try:
            genesis = load_genesis(config.genesis)
            checks.append(Check("ok", "genesis", f"{config.genesis}: chain {genesis.chain_id}, "
                                                 f"hash {genesis.hash.hex()}"))
        except (OSError, ValueError) as e:
            checks.append(Check("fail", "genesis", f"{config.genesis}: {e}",
                                "every node of a chain needs the same genesis file"))
        if not config.key_file:
            checks.append(Check("ok", "key", "no key_file: a full node (follows; neither produces nor votes)"))
        else:
            try:
                key = read_key_info(config.key_file)  # no passphrase: doctor never unlocks a key
                sealed = ", encrypted (passphrase not checked)" if key.encrypted else ", NOT encrypted"
                checks.append(Check("ok", "key", f"{config.key_file}: {key.name}, public key "
                                                 f"{key.public_key.hex()}{sealed}"))
            except (OSError, ValueError, KeyError) as e:
                checks.append(Check("fail", "key", f"{config.key_file}: {type(e).__name__}: {e}",
                                    "a producer's key file (python cli.py keys generate), mode 600"))
    url = url or (node_url(config) if config is not None else None)
    node = None
    if url is not None:
        answer = get(http, url, "/v1/status")
        if answer.doc is None:
            checks.append(Check("fail", "node", f"{url}: unreachable ({answer.error})",
                                "is `node run` running with this config? (--node URL to ask another)"))
        else:
            node = answer
            status = answer.doc
            wrong = compatibility(status, genesis, None)
            if wrong:
                checks.append(Check("fail", "node", f"{url} is on another chain: {wrong}",
                                    "the node runs with another genesis than this config names"))
            else:
                checks.append(Check("ok", "node", f"{url}: head {status['head']['height']}, final "
                                                  f"{status['final']['height']}, chain {status['chain_id']}"))
    peers: list[Answer] = []
    for peer in (config.peers if config is not None else ()):
        answer = get(http, peer, "/v1/status")
        if answer.doc is None:
            checks.append(Check("warn", "peer", f"{peer}: unreachable ({answer.error})",
                                "is it up, and its URL right in `peers`? (the node retries it)"))
            continue
        wrong = compatibility(answer.doc, genesis, node.doc if node else None)
        if wrong:
            checks.append(Check("fail", "peer", f"{peer} is incompatible: {wrong}",
                                "not a node of this chain (or of another protocol version): fix `peers`"))
            continue
        peers.append(answer)
        checks.append(Check("ok", "peer", f"{peer}: head {answer.doc['head']['height']}, "
                                          f"final {answer.doc['final']['height']}"))
    if config is not None and not config.peers:
        checks.append(Check("ok", "peer", "no peers configured: a chain of one node"))
    for answer in ([node] if node is not None else []) + peers:
        checks.append(_clock_check(answer, genesis))
    if config is not None:
        checks.append(check_disk(config.data_dir, free_bytes) if free_bytes else check_disk(config.data_dir))
    if node is not None:
        checks.append(_lag_check(node.doc, peers))
    if key is not None:
        checks += _producer_checks(http, key, genesis, node, peers)
    return checks


def _clock_check(answer: Answer, genesis) -> Check:
    bounds = compute_clock_offset(answer, genesis)
    if bounds is None:
        return Check("warn", "clock", f"{answer.url}: no Date header nor slot to compare clocks with")
    low, high = bounds
    message = f"{answer.url}: offset {(low + high) / 2:+.2f} s (±{(high - low) / 2:.2f})"
    if low > MAX_CLOCK_OFFSET_S or high < -MAX_CLOCK_OFFSET_S:
        return Check("warn", "clock", message, "over 1 s off (slots are 500 ms): run NTP (chrony, "
                                               "systemd-timesyncd) on both hosts")
    return Check("ok", "clock", message)


def _lag_check(status: dict, peers: list[Answer]) -> Check:
    head, final = status["head"]["height"], status["final"]["height"]
    if status.get("stalled"):
        return Check("warn", "sync", f"head {head}, final {final}: the chain is stalled (nothing final "
                                     f"for {status.get('slots_since_final')} slots)",
                     f"slot producer now: {status.get('slot_producer')}; are 2/3 of the producers up?")
    if not peers:
        return Check("ok", "sync", f"head {head}, final {final} (no peer answered to compare with)")
    best = max(p.doc["head"]["height"] for p in peers)
    behind = best - head
    if behind > MAX_BLOCKS_BEHIND:
        syncing = " (syncing)" if status.get("syncing") else ""
        return Check("warn", "sync", f"{behind} blocks behind the best peer (head {head}, theirs {best}){syncing}",
                     "catching up after a restart is normal; if it stays behind, check the peers' lines")
    return Check("ok", "sync", f"head {head}, the best peer's {best}: in step")


def _producer_checks(http, key, genesis, node: Answer | None, peers: list[Answer]) -> list[Check]:
    """Is the key the one the chain knows this producer by, and is it in the schedule and producing?"""
    name, public = key.name, key.public_key.hex()
    bases = [a.url for a in ([node] if node else []) + peers]
    record, listing, source = find_producer(http, bases, name)
    checks = []
    if listing is None:
        registered = next((p.node_key.hex() for p in genesis.producers if p.name == name), None) if genesis else None
        if registered is None:
            return [Check("warn", "producer", f"{name}: could not ask any node for the registered producers",
                          "start the node, or give a peer that answers")]
        source = "the genesis"
    else:
        registered = record["node_key"] if record else None
    if registered is None:
        return [Check("warn", "producer", f"{name} is not a registered producer: this node only follows",
                      "register its node key: python cli.py tx register-producer")]
    if registered != public:
        return [Check("fail", "producer", f"{name}'s key file holds public key {public[:16]}…, but {source} "
                                          f"knows {name} by {registered[:16]}…",
                      "use the key file registered for it, or register this key (tx register-producer)")]
    checks.append(Check("ok", "producer", f"{name}: the key file's public key is the registered node key"))
    if node is None:
        return checks
    status, listing = node.doc, listing or {}
    jailed = (listing.get("jailed") or {}).get(name)
    missed = (listing.get("missed_slots") or {}).get(name, 0)
    empty = (status.get("empty_slots_seen") or {}).get(name, 0)
    if status.get("producer") != name:
        checks.append(Check("fail", "producing", f"the node at {node.url} runs as {status.get('producer')!r}, "
                                                 f"not as {name}",
                            "restart it with this config's key_file"))
    elif jailed and not jailed.get("unjailed"):
        checks.append(Check("fail", "producing", f"{name} is jailed for absence since height {jailed['height']}",
                            "keep the node up, then send tx unjail once its term is served"))
    elif name not in status.get("schedule", []):
        checks.append(Check("warn", "producing", f"{name} is not in the current schedule (missed slots: {missed})",
                            "not elected (approval), or out of office this epoch"))
    elif empty:
        checks.append(Check("warn", "producing", f"{name} is in the schedule; {empty} of its slots ended empty "
                                                 f"since the node started (missed slots: {missed})",
                            "see the node's log for slot failures; is its clock right?"))
    else:
        checks.append(Check("ok", "producing", f"{name} is in the schedule of {len(status['schedule'])} and "
                                               f"producing (missed slots: {missed})"))
    return checks
