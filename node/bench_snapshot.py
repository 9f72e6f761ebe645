"""`bench snapshot`: what snapshots and pruning buy an operator, on a chain of N transfers.

A chain of `txs` transfers among `members` accounts (each tx also leaves a replay key in the state
for its expiry hour, as on a busy real chain) is built in process into a LevelDB data dir, with a
snapshot near its end, attested and final. A node process then serves it (a follower, no key) and
the figures are:
- joining from genesis: a new node process syncing every block from it (verifying every signature
  and applying every tx), until it reaches the served final height;
- joining from the snapshot: `node snapshot create` (download), `node snapshot restore` (check and
  write), then the node process catching up the blocks after the snapshot;
- the snapshot: its file size and the commitment walk's time (chunks written as it goes);
- disk: the live entries of the archive against those of a copy pruned to `retain` blocks, each
  compacted on a fresh copy (`_live_size`), per 1M txs.
The raw Ed25519 verify rate is measured in the same run: a join from genesis is bound by it.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace

from core.types import Tx, Vote
from node.bench import ROOT, _wait_ready, bench_genesis, bench_keys, measure_raw_verify

BLOCK_TXS = 2000
TAIL_BLOCKS = 20  # blocks after the snapshot height: the attestation, finality, a short catch-up


def _du(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def _build(data_dir: str, genesis, members, n_txs: int, expires_at: int, slot: int) -> dict:
    """The chain, built by its single producer with a Snapshots keeper as a node has."""
    from consensus.chain import Chain
    from node.snapshots import Snapshots
    from node.store import LevelDBStore
    from state.rules import ContractRules

    os.makedirs(data_dir)
    kv = LevelDBStore(os.path.join(data_dir, "chain.ldb"))
    chain = Chain(kv, genesis, ContractRules())  # as a node runs it
    snaps = Snapshots(kv, chain, genesis, data_dir, keep=1)
    name, key = members[0]
    t0 = time.perf_counter()
    sent = 0
    walk_s = None
    while sent < n_txs or not any(s["attested_by"] for s in snaps.listing()):
        txs = []
        for i in range(sent, min(n_txs, sent + BLOCK_TXS)):
            sender, skey = members[i % len(members)]
            to = members[(i * 7 + 1) % len(members)][0]
            txs.append(Tx.create(skey, genesis.chain_id, "transfer", sender, expires_at,
                                 {"to": to, "amount": 1 + i % 7}, salt=i))
        sent += len(txs)
        snaps.wait_idle()  # (a node attests once its walk ends; the bench builds faster than slots)
        if snaps.last_seconds is not None:
            walk_s = snaps.last_seconds
        block, layer, rejected = chain.build_block(key, name, slot, txs, snaps.attestable())
        if rejected:
            raise RuntimeError(f"bench tx rejected: {rejected[0][1]}")
        node = chain.add_block(block, None, own_layer=layer)
        chain.add_vote(Vote.create(key, genesis.chain_id, node.id, node.height, node.slot, name))
        slot += 1
    build_s = time.perf_counter() - t0
    final = chain.final_height
    snaps.close()
    kv.close()
    return {"final_height": final, "build_s": build_s, "walk_s": walk_s}


def _node(args: list[str], log) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "cli.py"), "node", "run", *args],
                            stdout=log, stderr=subprocess.STDOUT)


def _final(port: int) -> int:
    import httpx
    try:
        return httpx.get(f"http://127.0.0.1:{port}/v1/status", timeout=2).json()["final"]["height"]
    except httpx.HTTPError:
        return -1


def _join(args: list[str], port: int, target: int, log, timeout_s: float) -> float:
    """Start a node and time it until its final height reaches `target`."""
    t0 = time.perf_counter()
    proc = _node(args, log)
    try:
        while _final(port) < target:
            if proc.poll() is not None or time.perf_counter() - t0 > timeout_s:
                raise RuntimeError(f"joining node did not reach {target} (see its log)")
            time.sleep(0.2)
        return time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(20)


def _prune_copy(src: str, dst: str, genesis, retain: int) -> None:
    """A copy of the archive pruned as a node with `retain_blocks` would be."""
    from consensus.chain import Chain
    from node.pruning import Pruner
    from node.store import LevelDBStore
    from state.rules import ContractRules

    shutil.copytree(src, dst)
    kv = LevelDBStore(os.path.join(dst, "chain.ldb"))
    chain = Chain(kv, genesis, ContractRules())
    pruner = Pruner(kv, chain, retain)
    while pruner.prune(chain.final_height):
        pass
    kv.close()


def _live_size(path: str) -> int:
    """Bytes of a store's live entries, compacted, measured on a fresh copy of them. LevelDB
    reclaims deleted entries as its compactions pass over them, which a manual compaction of a
    store whose data sits in its bottom level does not force (measured at 300k txs: pruned in
    place and compacted, 59.4 MB; its live entries copied and compacted, 41.3 MB)."""
    from node.store import LevelDBStore
    fresh = path + ".live"
    src, dst = LevelDBStore(path), LevelDBStore(fresh)
    batch = {}
    for key, value in src.scan(b""):
        batch[key] = value
        if len(batch) >= 100_000:
            dst.write(batch, durable=False)
            batch = {}
    dst.write(batch)
    dst.compact()
    src.close()
    dst.close()
    size = _du(fresh)
    shutil.rmtree(fresh)
    return size


def bench_snapshot(n_txs: int, members: int = 20_000, retain: int = 100, port: int = 18600) -> dict:
    raw_verify = measure_raw_verify()
    people = bench_keys(members)
    blocks = n_txs // BLOCK_TXS + TAIL_BLOCKS
    now = time.time_ns() // 1_000_000
    base = bench_genesis(people, now - (blocks + 40) * 500, max_block_txs=BLOCK_TXS)
    # the snapshot lands a few blocks before the last tx: the restored node catches up the rest
    genesis = replace(base, params=replace(base.params, snapshot_interval=max(1, n_txs // BLOCK_TXS - 5)))
    figures = {"raw_verify_per_s_1core": round(raw_verify), "txs": n_txs, "members": members}
    with tempfile.TemporaryDirectory() as tmp:
        gfile = os.path.join(tmp, "genesis.json")
        with open(gfile, "w") as f:
            json.dump(genesis.to_json(), f)
        archive = os.path.join(tmp, "archive")
        built = _build(archive, genesis, people, n_txs, now + 3_000_000, genesis.slot_at(now) - blocks - 10)
        figures["build_tx_per_s"] = round(n_txs / built["build_s"])
        figures["final_height"] = built["final_height"]
        figures["snapshot_walk_s"] = round(built["walk_s"], 2)
        figures["archive_disk_mb"] = round(_live_size(os.path.join(archive, "chain.ldb")) / 1e6, 1)
        _prune_copy(archive, os.path.join(tmp, "pruned"), genesis, retain)
        figures["pruned_disk_mb"] = round(_live_size(os.path.join(tmp, "pruned", "chain.ldb")) / 1e6, 1)
        figures["pruned_retain_blocks"] = retain
        per_m = 1_000_000 / n_txs
        figures["archive_disk_mb_per_1m_txs"] = round(figures["archive_disk_mb"] * per_m, 1)
        figures["pruned_disk_mb_per_1m_txs"] = round(figures["pruned_disk_mb"] * per_m, 1)
        server_url, joiner_port = f"http://127.0.0.1:{port}", port + 1
        with open(os.path.join(tmp, "nodes.log"), "ab") as log:
            server = _node(["--data-dir", archive, "--genesis", gfile, "--port", str(port),
                            "--peer", f"http://127.0.0.1:{joiner_port}"], log)
            try:
                _wait_ready(port, server, 60)
                target = built["final_height"]
                joiner = ["--genesis", gfile, "--port", str(joiner_port), "--peer", server_url]
                figures["join_from_genesis_s"] = round(_join(
                    joiner + ["--data-dir", os.path.join(tmp, "from-genesis")], joiner_port, target, log,
                    3600), 2)
                figures["join_from_genesis_tx_per_s"] = round(n_txs / figures["join_from_genesis_s"])
                snap = os.path.join(tmp, "snap.bin")
                t0 = time.perf_counter()
                cli = [sys.executable, os.path.join(ROOT, "cli.py"), "node", "snapshot"]
                subprocess.run(cli + ["create", "--node", server_url, "--out", snap], check=True,
                               stdout=subprocess.DEVNULL)
                figures["snapshot_download_s"] = round(time.perf_counter() - t0, 2)
                figures["snapshot_file_mb"] = round(os.path.getsize(snap) / 1e6, 1)
                restored = os.path.join(tmp, "from-snapshot")
                t1 = time.perf_counter()
                subprocess.run(cli + ["restore", snap, "--data-dir", restored, "--genesis", gfile,
                                      "--peer", server_url], check=True, stdout=subprocess.DEVNULL)
                figures["snapshot_restore_s"] = round(time.perf_counter() - t1, 2)
                figures["snapshot_catch_up_s"] = round(
                    _join(joiner + ["--data-dir", restored], joiner_port, target, log, 600), 2)
                figures["join_from_snapshot_s"] = round(time.perf_counter() - t0, 2)  # all three
            finally:
                server.terminate()
                server.wait(20)
    figures["join_speedup"] = round(figures["join_from_genesis_s"] / figures["join_from_snapshot_s"], 1)
    figures["join_from_genesis_ratio_to_raw_verify"] = round(figures["join_from_genesis_tx_per_s"] / raw_verify, 3)
    return figures
