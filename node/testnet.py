"""A local multi-validator testnet: n validator processes on loopback, one command.

`run_testnet` writes (once) a genesis with n producers, their key files and one TOML config per
node under a folder, starts `cli.py node run --config ...` for each, prints a live status line and
stops them on Ctrl-C. Started again on the same folder it reuses the keys, genesis and data, so
the chain continues where it stopped; asked for another layout than the folder holds, it refuses
(`TestnetMismatch`) unless told to recreate it. Every path in a config is absolute, so the
folder works from whatever directory the command ran in. `Testnet` is the same thing as a class,
for tests and bench.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx

from core.crypto import Keypair
from core.devnet import make_devnet
from node.keystore import write_key_file

ROOT = Path(__file__).resolve().parent.parent
CHAIN_ID = "testnet"
EXTRA_MEMBERS = 4  # non-producer members, so wallets have someone to transact as
DEFAULT_NODES = 4
DEFAULT_BASE_PORT = 8080
PATH_KEYS = ("data_dir", "genesis", "key_file")  # the config settings naming a file or folder


class TestnetMismatch(ValueError):
    """The folder holds something else than the testnet asked for: another number of nodes or
    ports, or a genesis that no testnet wrote."""
    __test__ = False  # (not a pytest test class, despite its name)


def read_layout(directory: str | Path) -> dict | None:
    """The folder's testnet.json ({"validators", "standby", "full_nodes", "base_port"}), or None
    for a folder that holds no chain yet. A genesis without it is no testnet: TestnetMismatch."""
    d = Path(directory)
    if (d / "testnet.json").exists():
        return json.loads((d / "testnet.json").read_text())
    if (d / "genesis.json").exists():
        raise TestnetMismatch(f"{directory} holds a genesis.json but no testnet.json: it is not a "
                              "testnet folder (genesis create?); pick another --dir")
    return None


def check_layout(directory: str | Path, layout: dict, n_nodes: int, base_port: int,
                 standby: int = 0, full_nodes: int = 0) -> None:
    """Refuse, saying what the folder holds, a request for another layout than `layout`: its
    genesis fixes the producers and their URLs, so it cannot just grow a node."""
    held = (layout["validators"], layout.get("standby", 0), layout["full_nodes"], layout["base_port"])
    if held == (n_nodes, standby, full_nodes, base_port):
        return
    extra = "".join(f", {n} {what}" for n, what in ((held[1], "standby"), (held[2], "full node(s)")) if n)
    raise TestnetMismatch(
        f"{directory} holds a {held[0]}-node testnet{extra} on ports from {held[3]}; pass --fresh to "
        f"delete it and recreate it with {n_nodes} nodes from port {base_port}, or leave out "
        "--nodes and --base-port to restart the one it holds")


def remove_testnet(directory: str | Path) -> None:
    """Delete what `prepare` wrote in the folder (its chain, keys, configs and node data), and
    nothing else; only a folder with a testnet.json."""
    d = Path(directory)
    if not (d / "testnet.json").exists():
        raise TestnetMismatch(f"{directory} holds no testnet to delete")
    for name in ("genesis.json", "dev-keys.json"):
        (d / name).unlink(missing_ok=True)
    for node_dir in d.glob("node-*"):
        if node_dir.is_dir() and re.fullmatch(r"node-\d+", node_dir.name):
            shutil.rmtree(node_dir)
    (d / "testnet.json").unlink()


def absolute_config_paths(directory: str | Path) -> None:
    """Rewrite, in a folder prepared by an older release, the configs whose paths are relative:
    they were written relative to the repository (where the nodes were started), while a node now
    reads a config's relative paths from the config's own folder. A config whose genesis does not
    lead, from the repository, to this folder's genesis is someone's own, and left alone."""
    d = Path(directory).resolve()
    for config in d.glob("node-*/config.toml"):
        text = config.read_text()
        values = {k: v for k, v in tomllib.loads(text).get("node", {}).items()
                  if k in PATH_KEYS and type(v) is str}
        legacy = {k: v for k, v in values.items() if v and not Path(v).is_absolute()}
        if not legacy or (ROOT / values.get("genesis", "")).resolve() != d / "genesis.json":
            continue
        for k, v in legacy.items():
            line = f"{k} = {_toml_value(str((ROOT / v).resolve()))}"
            text = re.sub(rf"(?m)^{k} = .*$", lambda _: line, text)
        config.write_text(text)


def _toml_value(v) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return str(v)


def prepare(directory: str | Path, n_nodes: int, base_port: int, block_interval_ms: int = 500,
            full_nodes: int = 0, standby: int = 0, epoch_slots: int = 60) -> Path:
    """Write genesis, keys and node configs under `directory` unless it holds this testnet already.
    Nodes 0..n_nodes-1 are validators (the genesis producers); the next `standby` nodes run with
    the keys of the first members who are not producers, so they produce once elected; the
    `full_nodes` after them follow without a key. Validators and standby nodes push to each
    other; a full node pulls from them. Every path written into a config is absolute. A folder
    that holds another layout already raises TestnetMismatch."""
    d = Path(directory).resolve()
    layout = read_layout(d)
    if layout is not None:
        check_layout(directory, layout, n_nodes, base_port, standby, full_nodes)
        absolute_config_paths(d)
        return d
    if standby > EXTRA_MEMBERS:
        raise ValueError(f"at most {EXTRA_MEMBERS} standby nodes")
    d.mkdir(parents=True, exist_ok=True)
    genesis, dev_keys = make_devnet(n_nodes + EXTRA_MEMBERS, n_nodes, CHAIN_ID, block_interval_ms,
                                    time.time_ns() // 1_000_000, base_port=base_port,
                                    epoch_slots=epoch_slots)
    (d / "genesis.json").write_text(json.dumps(genesis, indent=2) + "\n")
    fd = os.open(d / "dev-keys.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(dev_keys, f, indent=2)
    keyed = n_nodes + standby
    urls = [f"http://127.0.0.1:{base_port + i}" for i in range(keyed + full_nodes)]
    for i in range(keyed + full_nodes):
        conf = {"data_dir": str(d / f"node-{i}" / "data"), "host": "127.0.0.1",
                "port": base_port + i, "genesis": str(d / "genesis.json"),
                "peers": [u for j, u in enumerate(urls[:keyed]) if j != i]}
        if i < keyed:
            m = dev_keys["members"][i]
            key_file = d / f"node-{i}" / "key.json"
            write_key_file(key_file, m["name"], Keypair(bytes.fromhex(m["seed"])))
            conf["key_file"] = str(key_file)
        (d / f"node-{i}").mkdir(exist_ok=True)
        (d / f"node-{i}" / "config.toml").write_text(
            "[node]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in conf.items()))
    (d / "testnet.json").write_text(json.dumps({"validators": n_nodes, "standby": standby,
                                                "full_nodes": full_nodes, "base_port": base_port}) + "\n")
    return d


class Testnet:
    """The node processes of a prepared folder; start, kill -9, stop and query them by index."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory).resolve()
        meta = json.loads((self.dir / "testnet.json").read_text())
        self.count = meta["validators"] + meta.get("standby", 0) + meta["full_nodes"]
        self.urls = [f"http://127.0.0.1:{meta['base_port'] + i}" for i in range(self.count)]
        self.procs: list[subprocess.Popen | None] = [None] * self.count
        self.client = httpx.Client(timeout=2.0)

    def start(self, i: int, wait: bool = True) -> None:
        log = open(self.dir / f"node-{i}" / "node.log", "ab")
        cmd = [sys.executable, str(ROOT / "cli.py"), "node", "run", "--config",
               str(self.dir / f"node-{i}" / "config.toml")]
        self.procs[i] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        log.close()
        if wait:
            self.wait_ready(i)

    def start_all(self, indices=None) -> None:
        """Start the nodes and wait for each to answer; if one fails to, stop those this call
        started before raising, so that none is left running without a caller to stop it."""
        indices = range(self.count) if indices is None else indices
        for i in indices:
            self.start(i, wait=False)
        try:
            for i in indices:
                self.wait_ready(i)
        except RuntimeError:
            for i in indices:
                self.stop(i)
            raise

    def wait_ready(self, i: int, timeout_s: float = 30) -> None:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.procs[i].poll() is not None:
                raise RuntimeError(f"node {i} exited; see {self.dir}/node-{i}/node.log")
            if self.status(i) is not None:
                return
            time.sleep(0.1)
        raise RuntimeError(f"node {i} did not answer in {timeout_s}s")

    def status(self, i: int) -> dict | None:
        try:
            return self.client.get(self.urls[i] + "/v1/status").json()
        except (httpx.HTTPError, ValueError):
            return None

    def kill9(self, i: int) -> None:
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    def stop(self, i: int) -> None:
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def stop_all(self) -> None:
        for i in range(self.count):
            proc = self.procs[i]
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for i in range(self.count):
            self.stop(i)
        self.client.close()

    def status_line(self) -> str:
        parts = []
        for i in range(self.count):
            st = self.status(i)
            if st is None:
                parts.append(f"#{i} down")
                continue
            up = sum(1 for p in st["peers"] if p["up"])
            sync = f" syncing to {st['sync_target']}" if st["syncing"] else ""
            parts.append(f"#{i} h={st['head']['height']} f={st['final']['height']} "
                         f"peers={up}/{len(st['peers'])}{sync}")
        return " | ".join(parts)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def prepare_for_cli(directory: str, n_nodes: int | None, base_port: int | None,
                    fresh: bool = False) -> Path:
    """`prepare` for the testnet command: a count or port left out (None) is the folder's own, or
    the default for a new one; a layout other than the folder's is refused (TestnetMismatch)
    unless `fresh`, which deletes the folder's testnet first (never a running one) and creates a
    new chain of validators only."""
    layout = read_layout(directory)
    if layout is None:
        return prepare(directory, DEFAULT_NODES if n_nodes is None else n_nodes,
                       DEFAULT_BASE_PORT if base_port is None else base_port)
    n_nodes = layout["validators"] if n_nodes is None else n_nodes
    base_port = layout["base_port"] if base_port is None else base_port
    if not fresh:
        return prepare(directory, n_nodes, base_port, standby=layout.get("standby", 0),
                       full_nodes=layout["full_nodes"])
    running = [url for url in _layout_urls(layout) if _answers(url)]
    if running:
        raise TestnetMismatch(f"the testnet in {directory} is running ({running[0]} answers): "
                              "stop it before recreating it")
    remove_testnet(directory)
    return prepare(directory, n_nodes, base_port)


def _layout_urls(layout: dict) -> list[str]:
    count = layout["validators"] + layout.get("standby", 0) + layout["full_nodes"]
    return [f"http://127.0.0.1:{layout['base_port'] + i}" for i in range(count)]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/v1/status", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def run_testnet(n_nodes: int | None, directory: str, base_port: int | None, fresh: bool = False) -> None:
    """Start (or restart) an n-validator testnet in `directory` (`prepare_for_cli`); print its
    status until Ctrl-C. SIGTERM and SIGHUP (a `kill`, a closed terminal, a supervisor) stop it the
    same way: by default they would end this process at once and leave the validators running,
    orphaned."""
    net = Testnet(prepare_for_cli(directory, n_nodes, base_port, fresh))
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    try:
        net.start_all()
        print(f"testnet of {net.count} validators in {directory} (logs: node-*/node.log)")
        for url in net.urls:
            print(f"  {url}")
        print(f"member keys: {directory}/dev-keys.json   Stop with Ctrl-C.")
        while True:
            print("\r" + net.status_line()[:200].ljust(200), end="", flush=True)
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping...")
    finally:
        net.stop_all()


def free_port_range(n: int) -> int:
    """A base port with n free consecutive loopback ports from it on, below Linux's ephemeral
    range (32768 up): between this check and the nodes' bind, no outgoing connection of a
    running node can take one of them."""
    import random
    import socket
    for _ in range(200):
        base = random.randrange(10000, 32768 - n)
        socks = []
        try:
            for i in range(n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")
