"""A local multi-validator testnet: n validator processes on loopback, one command.

`run_testnet` writes (once) a genesis with n producers, their key files and one TOML config per
node under a folder, starts `cli.py node run --config ...` for each, prints a live status line and
stops them on Ctrl-C. Started again on the same folder it reuses the keys, genesis and data, so
the chain continues where it stopped. `Testnet` is the same thing as a class, for tests and bench.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from core.crypto import Keypair
from core.devnet import make_devnet
from node.config import write_key_file

ROOT = Path(__file__).resolve().parent.parent
CHAIN_ID = "testnet"
EXTRA_MEMBERS = 4  # non-producer members, so wallets have someone to transact as


def _toml_value(v) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return str(v)


def prepare(directory: str | Path, n_nodes: int, base_port: int, block_interval_ms: int = 500,
            full_nodes: int = 0, standby: int = 0, epoch_slots: int = 60) -> Path:
    """Write genesis, keys and node configs under `directory` unless a genesis is already there.
    Nodes 0..n_nodes-1 are validators (the genesis producers); the next `standby` nodes run with
    the keys of the first members who are not producers, so they produce once elected; the
    `full_nodes` after them follow without a key. Validators and standby nodes push to each
    other; a full node pulls from them."""
    d = Path(directory)
    if (d / "genesis.json").exists():
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
        self.dir = Path(directory)
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


def run_testnet(n_nodes: int, directory: str, base_port: int) -> None:
    """Start (or restart) an n-validator testnet in `directory`; print its status until Ctrl-C.
    SIGTERM and SIGHUP (a `kill`, a closed terminal, a supervisor) stop it the same way: by default
    they would end this process at once and leave the validators running, orphaned."""
    prepare(directory, n_nodes, base_port)
    net = Testnet(directory)
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
