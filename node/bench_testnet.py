"""`bench testnet`: a local n-validator testnet under a rate-controlled load.

The load process is kept light so it does not measure itself: txs are pre-signed before the nodes
start, sent in batches (`POST /v1/transactions/batch`, round robin over the validators, one
keep-alive HTTP/1.1 connection (`p2p.link`) per node, each batch sent when it is due), and
finality is followed on node 0 through `GET /p2p/blocks`, which serves stored block bytes (the
JSON block API would cost node 0 more than the bench is measuring). A tx's latency is from the
moment its batch was sent to the moment node 0 reported its block final.

Batches are due at a steady rate, each at a random point of its own period (seeded: every run
sends at the same offsets), so that their arrival times are spread evenly over the slots. Exactly
every period, 10 batches a second against 2 slots a second would put every batch at one of five
fixed points of a slot, set by where the load happened to start, and the latency percentiles would
depend on that accident by about ±0.1 s.

Sustained figures cover the load window after a warm-up (the first WARMUP_S seconds). The ceiling
they are compared with: every validator verifies every tx once, so n nodes sharing this machine
cannot beat its raw verify rate on all cores / n. That rate is measured with one verifying thread
per core, before and after the load (the machine's speed drifts), and the two are averaged: on
cores that share a physical core it is well below cores x the one-core rate.
"""
import asyncio
import gc
import json
import os
import random
import tempfile
import time

import msgpack
from prometheus_client.parser import text_string_to_metric_families

from core import codec
from core.crypto import Keypair
from core.types import Tx
from node.bench import busy_cores, cpu_seconds, measure_raw_verify, rss_mb
from node.service import PREBUILD_FRACTION
from node.testnet import CHAIN_ID, Testnet, free_port_range, prepare
from p2p.link import Link

WARMUP_S = 5
POLL_S = 0.02  # finality is seen on node 0 at most this late (plus one request)
DRAIN_S = 20  # after the load, how long to wait for the last txs to become final
ARRIVAL_SEED = 1  # of where in its period each batch is sent


def _presign(dev_keys: dict, count: int) -> tuple[list[bytes], list[bytes]]:
    members = [(m["name"], Keypair(bytes.fromhex(m["seed"]))) for m in dev_keys["members"]]
    expires = time.time_ns() // 1_000_000 + 3_000_000
    raws, ids = [], []
    for i in range(count):
        name, key = members[i % len(members)]
        tx = Tx.create(key, CHAIN_ID, "transfer", name, expires,
                       {"to": members[(i + 1) % len(members)][0], "amount": 1}, salt=i)
        raws.append(tx.raw)
        ids.append(tx.id)
    return raws, ids


class _Follower:
    """Follows node 0's final blocks; records when each tx id was first seen final."""

    def __init__(self, port: int, start_height: int):
        self.conn = Link(f"http://127.0.0.1:{port}", timeout_s=60.0)
        self.height = start_height
        self.final_at: dict[bytes, float] = {}
        self.blocks: list[tuple[int, int, float]] = []  # (slot, txs, seen final at)
        self.slot_of: dict[bytes, int] = {}  # tx id -> slot of its block

    async def poll(self) -> None:
        status, body = await self.conn.request("GET", "/v1/status")
        final = json.loads(body)["final"]["height"]
        while self.height < final:
            count = min(64, final - self.height)
            status, body = await self.conn.request("GET", f"/p2p/blocks?from={self.height + 1}&count={count}")
            now = time.perf_counter()
            _, entries = msgpack.unpackb(body)
            for _, raw, _ in entries[:count]:
                header, _, txs = msgpack.unpackb(raw)
                for tx in txs:
                    tx_id = codec.sha256(codec.pack(tx))
                    self.final_at.setdefault(tx_id, now)
                    self.slot_of.setdefault(tx_id, header[4])
                self.blocks.append((header[4], len(txs), now))
                self.height += 1


async def _drive(net: Testnet, raws: list[bytes], rate: int, batch_size: int, start_height: int) -> dict:
    ports = [int(u.rsplit(":", 1)[1]) for u in net.urls]
    conns = [Link(f"http://127.0.0.1:{p}", timeout_s=60.0) for p in ports]
    follower = _Follower(ports[0], start_height)
    batches = [raws[i:i + batch_size] for i in range(0, len(raws), batch_size)]
    sent_at: list[float] = [0.0] * len(batches)
    sent_wall: list[float] = [0.0] * len(batches)
    rejected = [0]
    t0 = time.perf_counter() + 0.2
    jitter = random.Random(ARRIVAL_SEED)
    period = batch_size / rate
    due = [(b + jitter.random()) * period for b in range(len(batches))]

    async def push(node: int) -> None:
        for b in range(node, len(batches), len(conns)):
            delay = t0 + due[b] - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent_at[b], sent_wall[b] = time.perf_counter(), time.time()
            status, body = await conns[node].request("POST", "/v1/transactions/batch",
                                                     msgpack.packb(batches[b]))
            rejected[0] += len(batches[b]) - (json.loads(body)["accepted"] if status == 200 else 0)

    async def follow(until: float) -> None:
        while time.perf_counter() < until and len(follower.final_at) < len(raws) - rejected[0]:
            await follower.poll()
            await asyncio.sleep(POLL_S)

    duration = len(batches) * period
    cpu0 = [cpu_seconds(p.pid) for p in net.procs]
    own0 = time.process_time()
    follow_task = asyncio.create_task(follow(t0 + duration + DRAIN_S))
    await asyncio.gather(*(push(i) for i in range(len(conns))))
    load_end = time.perf_counter()
    cpu = [(cpu_seconds(p.pid) - c) / (load_end - t0) for p, c in zip(net.procs, cpu0)]
    own = (time.process_time() - own0) / (load_end - t0)
    memory = [rss_mb(p.pid) for p in net.procs]
    await follow_task
    for c in conns + [follower.conn]:
        c.close()
    return {"t0": t0, "load_end": load_end, "sent_at": sent_at, "sent_wall": sent_wall,
            "rejected": rejected[0], "final_at": follower.final_at, "slot_of": follower.slot_of,
            "blocks": follower.blocks, "cpu": cpu, "own_cpu": own, "memory": memory}


def _percentile(values: list[float], q: float) -> float | None:
    return round(values[min(len(values) - 1, int(len(values) * q))], 3) if values else None


def _signature_wait_median(net: Testnet, n_nodes: int) -> float | None:
    """The median wait of tx batches for their signature checks on all nodes, from their
    `chain_tx_signature_wait_seconds` histograms (interpolated within a bucket, as Prometheus'
    histogram_quantile does)."""
    buckets: dict[float, float] = {}
    for i in range(n_nodes):
        text = net.client.get(net.urls[i] + "/metrics").text
        for family in text_string_to_metric_families(text):
            if family.name == "chain_tx_signature_wait_seconds":
                for sample in family.samples:
                    if sample.name.endswith("_bucket"):
                        bound = float(sample.labels["le"])
                        buckets[bound] = buckets.get(bound, 0) + sample.value
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] == 0:
        return None
    half, below, lower = buckets[bounds[-1]] / 2, 0.0, 0.0
    for bound in bounds:
        if buckets[bound] >= half:
            if bound == float("inf"):
                return lower
            return round(lower + (bound - lower) * (half - below) / (buckets[bound] - below), 3)
        below, lower = buckets[bound], bound
    return None


def bench_testnet(rate: int = 2000, seconds: int = 60, batch_size: int = 200, n_nodes: int = 4,
                  block_interval_ms: int = 500) -> dict:
    cores = os.cpu_count() or 1
    other_jobs = busy_cores()
    raw_verify = measure_raw_verify()
    all_cores_before = measure_raw_verify(threads=cores)
    with tempfile.TemporaryDirectory() as tmp:
        prepare(tmp, n_nodes, free_port_range(n_nodes), block_interval_ms=block_interval_ms)
        net = Testnet(tmp)
        genesis_ms = json.loads((net.dir / "genesis.json").read_text())["genesis_time_ms"]
        raws, ids = _presign(json.loads((net.dir / "dev-keys.json").read_text()), rate * seconds)
        try:
            net.start_all()
            while min(net.status(i)["final"]["height"] for i in range(n_nodes)) < 2:
                time.sleep(0.2)
            # the load process's own full collections (35-80 ms each, 3-4 a minute, over the 180k
            # presigned txs and the follower's maps) would be counted as the nodes' latency
            gc.disable()
            try:
                run = asyncio.run(_drive(net, raws, rate, batch_size, net.status(0)["final"]["height"]))
            finally:
                gc.enable()
            signature_wait = _signature_wait_median(net, n_nodes)
        finally:
            net.stop_all()
    all_cores_after = measure_raw_verify(threads=cores)
    t0, load_end, final_at = run["t0"], run["load_end"], run["final_at"]
    window = (t0 + WARMUP_S, load_end)
    latencies = sorted(final_at[tx_id] - run["sent_at"][i // batch_size]
                       for i, tx_id in enumerate(ids) if tx_id in final_at
                       and window[0] <= run["sent_at"][i // batch_size] <= window[1])
    # the same txs split at the start of their block's slot: waiting to be included, then to be final
    to_slot = sorted((genesis_ms + run["slot_of"][tx_id] * block_interval_ms) / 1000 - run["sent_wall"][i // batch_size]
                     for i, tx_id in enumerate(ids) if tx_id in final_at
                     and window[0] <= run["sent_at"][i // batch_size] <= window[1])
    # the producer takes a block's txs PREBUILD_FRACTION of a slot before the slot starts: a tx
    # sent before that moment "made the next block" if that block holds it
    lead_s = block_interval_ms * PREBUILD_FRACTION / 1000
    next_block = sum(1 for t in to_slot if t - lead_s < block_interval_ms / 1000)
    in_window = sum(1 for t in final_at.values() if window[0] <= t <= window[1])
    tps = in_window / (window[1] - window[0])
    slots = [slot for slot, _, seen in run["blocks"] if window[0] <= seen <= window[1]]
    ceiling = (all_cores_before + all_cores_after) / 2 / n_nodes
    return {
        "validators": n_nodes, "offered_tx_per_s": rate, "load_seconds": round(load_end - t0, 1),
        "txs_sent": len(raws), "txs_rejected": run["rejected"], "txs_final": len(final_at),
        "sustained_finalized_tx_per_s": round(tps),
        "submit_to_final_p50_s": _percentile(latencies, 0.5),
        "submit_to_final_p99_s": _percentile(latencies, 0.99),
        "submit_to_block_slot_start_p50_s": _percentile(to_slot, 0.5),
        "txs_in_the_next_block_share": round(next_block / len(to_slot), 3) if to_slot else None,
        # per node a tx waits this long (median) for its signature checks: once where it enters,
        # again at the producer, before it can be in a block
        "tx_signature_wait_p50_s": signature_wait,
        "block_interval_ms_mean": (round((slots[-1] - slots[0]) * block_interval_ms / (len(slots) - 1))
                                   if len(slots) > 1 else None),
        "slots_without_final_block": (slots[-1] - slots[0] + 1 - len(slots)) if slots else None,
        "cpu_cores_per_node": [round(c, 2) for c in run["cpu"]],
        # resident memory of each node process at the end of the load (its verify workers not included)
        "memory_mb_per_node": [round(m) for m in run["memory"]],
        "load_process_cores": round(run["own_cpu"], 2), "machine_cores": cores,
        "other_jobs_cores_before": round(other_jobs, 2),
        "raw_verify_per_s_1core": round(raw_verify),
        "raw_verify_per_s_all_cores": [round(all_cores_before), round(all_cores_after)],
        "ceiling_tx_per_s": round(ceiling),
        "ratio_to_ceiling": round(tps / ceiling, 3),
    }
