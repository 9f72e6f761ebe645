"""Benchmarks (`python cli.py bench apply|ingest`): figures, each next to the machine's own limit
measured in the same run, never asserted in tests.

- raw: PyNaCl Ed25519 verifications per second on one core, for messages the size of our txs;
- apply: pre-signed txs through decode -> verify -> apply -> block -> finality -> LevelDB commit,
  one core, no HTTP; as tx/s and as a ratio to raw verify/s;
- ingest: a real node process (uvicorn), loaded from this process by a minimal keep-alive HTTP/1.1
  client (`p2p.link`: httpx costs 0.7-1.3 ms of CPU per request and would measure itself), once
  with one tx per request and once through the batched msgpack endpoint.
"""
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import msgpack

from core import crypto
from core.genesis import ChainParams, Genesis, Member, Producer
from core.types import Tx, Vote
from p2p.link import Link

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and of its live child processes (a node's verify workers)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                children = f.read().split()
        except OSError:
            continue
        for child in children:
            try:
                total += cpu_seconds(int(child))
            except OSError:  # it exited meanwhile
                pass
    return total


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB."""
    with open(f"/proc/{pid}/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return kb / 1024


def busy_cores(seconds: float = 1.0) -> float:
    """Cores the whole machine kept busy over `seconds` (from /proc/stat): taken while the bench
    itself is idle, it is the load of other jobs, which would skew the figures and the ceiling."""
    def busy_and_total() -> tuple[int, int]:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
        idle = ticks[3] + ticks[4]  # idle + iowait
        return sum(ticks) - idle, sum(ticks)

    busy0, total0 = busy_and_total()
    time.sleep(seconds)
    busy1, total1 = busy_and_total()
    return (busy1 - busy0) / max(1, total1 - total0) * (os.cpu_count() or 1)


def bench_keys(n: int) -> list[tuple[str, crypto.Keypair]]:
    return [(f"member-{i:04d}", crypto.Keypair(crypto.sign_bytes("tx", f"bench-{i}")[:32].ljust(32, b"\0")))
            for i in range(n)]


def bench_genesis(members, genesis_time_ms: int, max_block_txs: int = 5000) -> Genesis:
    producer = members[0]
    return Genesis("bench", genesis_time_ms, ChainParams(max_block_txs=max_block_txs),
                   tuple(Member(n, k.public_key, 10**12, 10**9) for n, k in members),
                   (Producer(producer[0], producer[1].public_key, ""),))


def presign_transfers(members, chain_id: str, count: int, expires_at: int) -> list[bytes]:
    out = []
    for i in range(count):
        name, key = members[i % len(members)]
        to = members[(i + 1) % len(members)][0]
        out.append(Tx.create(key, chain_id, "transfer", name, expires_at,
                             {"to": to, "amount": 1 + i % 7}, salt=i).raw)
    return out


def measure_raw_verify(seconds: float = 2.0, threads: int = 1) -> float:
    """Ed25519 verifications/s of tx-sized messages on `threads` threads (the physical limit of
    apply; PyNaCl releases the GIL while it verifies, so threads use as many cores)."""
    key = crypto.Keypair.generate()
    msgs = [os.urandom(120) for _ in range(256)]
    sigs = [key.sign_raw(m) for m in msgs]
    counts = [0] * threads
    start = time.perf_counter()

    def work(i: int) -> None:
        while time.perf_counter() - start < seconds:
            for m, s in zip(msgs, sigs):
                crypto.verify_raw(key.public_key, m, s)
            counts[i] += len(msgs)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - start)


def bench_apply(n_txs: int = 20000, block_txs: int = 1000) -> dict:
    """decode + verify + apply + produce + finalize + LevelDB commit of pre-signed transfers."""
    from consensus.chain import Chain
    from node.store import LevelDBStore

    members = bench_keys(200)
    now = time.time_ns() // 1_000_000
    genesis = bench_genesis(members, now - 60_000)
    raws = presign_transfers(members, genesis.chain_id, n_txs, now + 3_000_000)
    raw_verify = measure_raw_verify()
    producer_name, producer_key = members[0]
    with tempfile.TemporaryDirectory() as tmp:
        kv = LevelDBStore(os.path.join(tmp, "db"))
        chain = Chain(kv, genesis)
        slot = genesis.slot_at(now)
        cpu0, t0 = time.process_time(), time.perf_counter()
        for i in range(0, n_txs + 2 * block_txs, block_txs):  # two empty blocks finalize the last
            txs = [Tx.decode(r) for r in raws[i:i + block_txs]]
            slot += 1
            block, layer, rejected = chain.build_block(producer_key, producer_name, slot, txs)
            if rejected:
                raise RuntimeError(f"bench tx rejected: {rejected[0][1]}")
            node = chain.add_block(block, None, own_layer=layer)
            chain.add_vote(Vote.create(producer_key, genesis.chain_id, node.id, node.height,
                                       node.slot, producer_name))
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        final = chain.final_height
        kv.close()
    tps = n_txs / elapsed
    return {"raw_verify_per_s_1core": round(raw_verify), "apply_tx_per_s": round(tps),
            "apply_ratio_to_raw_verify": round(tps / raw_verify, 3), "txs": n_txs,
            "final_height": final, "cpu_cores_used": round(cpu / elapsed, 2)}


# ---------------------------------------------------------------------------------- ingest
async def _http_worker(host: str, port: int, path: str, bodies: list[bytes], counts: dict) -> None:
    conn = Link(f"http://{host}:{port}", timeout_s=60.0)
    for body in bodies:
        status, payload = await conn.request("POST", path, body)
        counts[status] = counts.get(status, 0) + 1
        if path.endswith("batch") and status == 200:
            counts["accepted"] = counts.get("accepted", 0) + json.loads(payload)["accepted"]
    conn.close()


def _load(port: int, path: str, bodies: list[bytes], connections: int) -> dict:
    counts: dict = {}
    shards = [bodies[i::connections] for i in range(connections)]

    async def main():
        await asyncio.gather(*[_http_worker("127.0.0.1", port, path, s, counts) for s in shards])

    asyncio.run(main())
    return counts


def _wait_ready(port: int, proc, timeout_s: float = 20) -> None:
    import httpx
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("bench node exited during start-up")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/status", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("bench node did not become ready")


def bench_ingest(n_single: int = 8000, n_batched: int = 20000, batch_size: int = 500,
                 port: int = 18555, connections: int = 32) -> dict:
    """HTTP ingestion into a real node process: one tx per request, then batched msgpack."""
    from node.keystore import write_key_file

    members = bench_keys(200)
    now = time.time_ns() // 1_000_000
    genesis = bench_genesis(members, now - 60_000)
    raws = presign_transfers(members, genesis.chain_id, n_single + n_batched, now + 3_000_000)
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "genesis.json"), "w") as f:
            json.dump(genesis.to_json(), f)
        write_key_file(os.path.join(tmp, "key.json"), members[0][0], members[0][1])
        cmd = [sys.executable, os.path.join(ROOT, "cli.py"), "node", "run", "--data-dir",
               os.path.join(tmp, "data"), "--port", str(port), "--genesis",
               os.path.join(tmp, "genesis.json"), "--key-file", os.path.join(tmp, "key.json")]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_ready(port, proc)
            results = {}
            for label, path, bodies, count in (
                ("single", "/v1/transactions", raws[:n_single], n_single),
                ("batched", "/v1/transactions/batch",
                 [msgpack.packb(raws[i:i + batch_size]) for i in range(n_single, len(raws), batch_size)],
                 n_batched),
            ):
                cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
                counts = _load(port, path, bodies, connections if label == "single" else 4)
                elapsed = time.perf_counter() - t0
                server_cpu = (cpu_seconds(proc.pid) - cpu0) / elapsed
                accepted = counts.get("accepted", counts.get(202, 0))
                results[f"ingest_{label}_tx_per_s"] = round(accepted / elapsed)
                results[f"ingest_{label}_accepted"] = f"{accepted}/{count}"
                results[f"ingest_{label}_server_cores"] = round(server_cpu, 2)
                results[f"ingest_{label}_tx_per_server_core_s"] = round(accepted / elapsed / max(server_cpu, 0.01))
        finally:
            proc.terminate()
            proc.wait(10)
    return results
