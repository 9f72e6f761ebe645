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
            full_nodes: int = 0) -> Path:
    """Write genesis, keys and node configs under `directory` unless a genesis is already there.
    Nodes 0..n_nodes-1 are validators; the `full_nodes` after them follow without a key."""
    d = Path(directory)
    if (d / "genesis.json").exists():
        return d
    d.mkdir(parents=True, exist_ok=True)
    genesis, dev_keys = make_devnet(n_nodes + EXTRA_MEMBERS, n_nodes, CHAIN_ID, block_interval_ms,
                                    time.time_ns() // 1_000_000, base_port=base_port)
    (d / "genesis.json").write_text(json.dumps(genesis, indent=2) + "\n")
    fd = os.open(d / "dev-keys.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(dev_keys, f, indent=2)
    urls = [f"http://127.0.0.1:{base_port + i}" for i in range(n_nodes + full_nodes)]
    for i in range(n_nodes + full_nodes):
        conf = {"data_dir": str(d / f"node-{i}" / "data"), "host": "127.0.0.1",
                "port": base_port + i, "genesis": str(d / "genesis.json"),
                # validators push to each other; a full node pulls from the validators
                "peers": [u for j, u in enumerate(urls[:n_nodes]) if j != i]}
        if i < n_nodes:
            m = dev_keys["members"][i]
            key_file = d / f"node-{i}" / "key.json"
            write_key_file(key_file, m["name"], Keypair(bytes.fromhex(m["seed"])))
            conf["key_file"] = str(key_file)
        (d / f"node-{i}").mkdir(exist_ok=True)
        (d / f"node-{i}" / "config.toml").write_text(
            "[node]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in conf.items()))
    (d / "testnet.json").write_text(json.dumps({"validators": n_nodes, "full_nodes": full_nodes,
                                                "base_port": base_port}) + "\n")
    return d


class Testnet:
    """The node processes of a prepared folder; start, kill -9, stop and query them by index."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        meta = json.loads((self.dir / "testnet.json").read_text())
        self.count = meta["validators"] + meta["full_nodes"]
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
        indices = range(self.count) if indices is None else indices
        for i in indices:
            self.start(i, wait=False)
        for i in indices:
            self.wait_ready(i)

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
            sync = " syncing" if st["syncing"] else ""
            parts.append(f"#{i} h={st['head']['height']} f={st['final']['height']} "
                         f"peers={up}/{len(st['peers'])}{sync}")
        return " | ".join(parts)


def run_testnet(n_nodes: int, directory: str, base_port: int) -> None:
    """Start (or restart) an n-validator testnet in `directory`; print its status until Ctrl-C."""
    prepare(directory, n_nodes, base_port)
    net = Testnet(directory)
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
    """A base port with n free consecutive loopback ports from it on."""
    import random
    import socket
    for _ in range(200):
        base = random.randrange(20000, 60000 - n)
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


def bench_testnet(n_txs: int = 40_000, batch_size: int = 500, n_nodes: int = 4,
                  block_interval_ms: int = 500) -> dict:
    """Sustained finalized tx/s of an n-validator testnet on this machine: pre-signed transfers
    pushed through POST /v1/transactions/batch (round robin over the nodes, one thread per node),
    finality followed on node 0. The ceiling it is compared with: every node verifies every tx
    once, so n nodes on this machine's cores cannot beat cores x raw verify/s / n."""
    import tempfile
    import threading

    import msgpack

    from core.types import Tx
    from node.bench import cpu_seconds, measure_raw_verify

    raw_verify = measure_raw_verify()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        prepare(tmp, n_nodes, free_port_range(n_nodes), block_interval_ms=block_interval_ms)
        net = Testnet(tmp)
        members = [(m["name"], Keypair(bytes.fromhex(m["seed"])))
                   for m in json.loads((net.dir / "dev-keys.json").read_text())["members"]]
        expires = time.time_ns() // 1_000_000 + 3_000_000
        raws = [Tx.create(k, CHAIN_ID, "transfer", name, expires,
                          {"to": members[(i + 1) % len(members)][0], "amount": 1}, salt=i).raw
                for i, (name, k) in ((i, members[i % len(members)]) for i in range(n_txs))]
        batches = [raws[i:i + batch_size] for i in range(0, n_txs, batch_size)]
        submitted: dict[int, float] = {}  # batch index -> time accepted
        rejected = [0]
        try:
            net.start_all()
            while min(net.status(i)["final"]["height"] for i in range(n_nodes)) < 2:
                time.sleep(0.2)
            start_height = net.status(0)["final"]["height"]
            cpu0 = [cpu_seconds(p.pid) for p in net.procs]

            def push(node: int) -> None:
                with httpx.Client(timeout=60) as c:
                    for b in range(node, len(batches), n_nodes):
                        r = c.post(net.urls[node] + "/v1/transactions/batch",
                                   content=msgpack.packb(batches[b]),
                                   headers={"content-type": "application/msgpack"})
                        submitted[b] = time.perf_counter()
                        rejected[0] += len(batches[b]) - r.json()["accepted"]

            t0 = time.perf_counter()
            pushers = [threading.Thread(target=push, args=(i,)) for i in range(n_nodes)]
            for t in pushers:
                t.start()
            batch_of = {Tx.decode(r).id.hex(): i // batch_size for i, r in enumerate(raws)}
            final_at: dict[str, float] = {}
            stamps, height = [], start_height
            deadline = time.time() + 120
            while len(final_at) < n_txs - rejected[0] and time.time() < deadline:
                top = net.status(0)["final"]["height"]
                while height < top:
                    height += 1
                    blk = net.client.get(f"{net.urls[0]}/v1/blocks/{height}", timeout=30).json()
                    now = time.perf_counter()
                    stamps.append(blk["header"]["timestamp_ms"])
                    for tx in blk["txs"]:
                        if tx["id"] in batch_of:
                            final_at[tx["id"]] = now
                time.sleep(0.05)
            elapsed = max(final_at.values(), default=time.perf_counter()) - t0
            cpu = [(cpu_seconds(p.pid) - c0) / elapsed for p, c0 in zip(net.procs, cpu0)]
            for t in pushers:
                t.join()
        finally:
            net.stop_all()
    lat = sorted(final_at[i] - submitted[batch_of[i]] for i in final_at if batch_of[i] in submitted)
    tps = len(final_at) / elapsed
    ceiling = cores * raw_verify / n_nodes
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    return {"validators": n_nodes, "txs_submitted": n_txs, "txs_rejected": rejected[0],
            "txs_final": len(final_at), "seconds": round(elapsed, 2),
            "finalized_tx_per_s": round(tps),
            "submit_to_final_p50_s": round(lat[len(lat) // 2], 3) if lat else None,
            "submit_to_final_p99_s": round(lat[int(len(lat) * 0.99)], 3) if lat else None,
            "block_interval_ms_mean": round(sum(gaps) / len(gaps)) if gaps else None,
            "cpu_cores_per_node": [round(c, 2) for c in cpu], "machine_cores": cores,
            "raw_verify_per_s_1core": round(raw_verify),
            "ceiling_tx_per_s": round(ceiling), "ratio_to_ceiling": round(tps / ceiling, 3)}
