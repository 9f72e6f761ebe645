"""`python cli.py bench attacks`: a real node process under each attack of a table, its figures
next to the same figures without an attack. Printed, never asserted.

Per phase: the node's resident memory (median and peak while measuring, and 2 s after the
attack ended), a wallet's `GET /v1/status` on a fresh connection from 127.0.0.1 every 0.1 s
(p50, p99, and how many did not answer 200 within 2 s), and the blocks finalized per second.

Each attack runs in a process of its own (so that its CPU does not slow the measuring client)
from other loopback addresses than the wallet's (127.0.2.x and up: Linux routes all of 127/8 to
`lo`); the node runs with `limit_loopback = true`, so the attacker meets the per-address caps a
remote client would. To add an attack: an async function `(port, seconds) -> None` and an `Attack`
row in ATTACKS.
"""
import asyncio
import dataclasses
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

import msgpack

from core.genesis import Member
from node.bench import ROOT, _wait_ready, bench_genesis, bench_keys, rss_mb

MiB = 1024 * 1024


@dataclass(frozen=True)
class Attack:
    name: str
    what: str
    run: Callable[[int, float], Awaitable[None]]  # (node port, seconds)


async def _until(seconds: float, coros) -> None:
    tasks = [asyncio.ensure_future(c) for c in coros]
    await asyncio.sleep(seconds)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _hold_silent(port: int, source: str) -> None:
    """One socket that never sends a byte, opened again whenever the node closes it."""
    while True:
        writer = None
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
            await reader.read()  # b"" once the node closes it
        except OSError:
            pass
        finally:
            if writer is not None:
                writer.close()
        await asyncio.sleep(0.05)


async def _send_slow_body(port: int, source: str, path: str, size: int) -> None:
    """A POST declaring `size` bytes that sends all but the last byte and then waits; again
    whenever the node answers or closes it."""
    head = (f"POST {path} HTTP/1.1\r\nHost: node\r\nContent-Type: application/msgpack\r\n"
            f"Content-Length: {size}\r\n\r\n").encode()
    chunk = b"\0" * (256 * 1024)
    while True:
        writer = None
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
            writer.write(head)
            sent = 0
            while sent < size - 1:
                part = chunk[:min(len(chunk), size - 1 - sent)]
                writer.write(part)
                await writer.drain()
                sent += len(part)
            await reader.read()
        except OSError:
            pass
        finally:
            if writer is not None:
                writer.close()
        await asyncio.sleep(0.05)


def _addresses(base: str, count: int) -> list[str]:
    return [f"{base}.{i // 250}.{i % 250 + 1}" for i in range(count)]


async def slowloris_one(port: int, seconds: float) -> None:
    await _until(seconds, [_hold_silent(port, "127.0.2.1") for _ in range(1000)])


async def slowloris_many(port: int, seconds: float) -> None:
    await _until(seconds, [_hold_silent(port, a) for a in _addresses("127.3", 50) for _ in range(20)])


async def slow_bodies_batch(port: int, seconds: float) -> None:
    await _until(seconds, [_send_slow_body(port, a, "/v1/transactions/batch", 8 * MiB)
                           for a in _addresses("127.4", 100)])


async def slow_bodies_p2p(port: int, seconds: float) -> None:
    await _until(seconds, [_send_slow_body(port, a, "/p2p/txs", 12 * MiB) for a in _addresses("127.5", 100)])


DUST_MEMBER = "dust-0001"  # a member with no stake: the bandwidth floor is all it has


def _dust_key():
    from core.crypto import Keypair
    return Keypair(b"dust".ljust(32, b"\0"))


async def _post_batches(port: int, source: str, raws: list[bytes], seconds: float) -> None:
    """Send `raws` in batches of at most 900 (under the 8 MiB batch limit), once, then idle."""
    import httpx
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with httpx.AsyncClient(transport=transport, timeout=30) as client:
        for i in range(0, len(raws), 900):
            try:
                await client.post(f"http://127.0.0.1:{port}/v1/transactions/batch",
                                  content=msgpack.packb(raws[i:i + 900], use_bin_type=True),
                                  headers={"content-type": "application/msgpack"})
            except httpx.HTTPError:
                pass
    await asyncio.sleep(seconds)


def _posts(count: int, body_bytes: int, signers, prefix: str) -> list[bytes]:
    from core.types import Tx
    expires = time.time_ns() // 1_000_000 + 600_000
    raws = []
    for i in range(count):
        name, key = signers[i % len(signers)]
        raws.append(Tx.create(key, "bench", "post", name, expires, {
            "body": "x" * body_bytes, "permlink": f"{prefix}-{i}", "tags": [], "title": ""}).raw)
    return raws


async def big_posts(port: int, seconds: float) -> None:
    # 1,100 valid posts of 8 KiB: 9.5 MB, more than a block may hold (types.MAX_BLOCK_BYTES)
    raws = _posts(1100, 8 * 1024, bench_keys(20), "big")
    await _post_batches(port, "127.0.6.1", raws, seconds)


async def dust_spam(port: int, seconds: float) -> None:
    # a member with no stake posts 2,000 small posts: its bandwidth floor pays for a few dozen
    raws = _posts(2000, 200, [(DUST_MEMBER, _dust_key())], "spam")
    await _post_batches(port, "127.0.7.1", raws, seconds)


async def _request_forever(port: int, source: str, method: str, path: str,
                           body: bytes | None = None) -> None:
    """The same request again and again from `source`, as fast as the node answers."""
    import httpx
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with httpx.AsyncClient(transport=transport, timeout=5) as client:
        while True:
            try:
                await client.request(method, f"http://127.0.0.1:{port}{path}", content=body,
                                     headers={"content-type": "application/msgpack"})
            except httpx.HTTPError:
                await asyncio.sleep(0.05)


async def sync_amplification(port: int, seconds: float) -> None:
    await _until(seconds, [_request_forever(port, a, "GET", "/p2p/blocks?from=1&count=256")
                           for a in _addresses("127.8", 20) for _ in range(2)])


async def outsider_pushes(port: int, seconds: float) -> None:
    from core.crypto import Keypair
    from p2p.envelope import seal
    body = seal(Keypair(b"outsider".ljust(32, b"\0")), "bench", "block", "outsider", b"\0" * MiB)
    await _until(seconds, [_request_forever(port, a, "POST", "/p2p/block", body)
                           for a in _addresses("127.9", 20)])


ATTACKS = [
    Attack("slowloris-1-address", "1,000 silent sockets from one address, reopened when closed",
           slowloris_one),
    Attack("slowloris-50-addresses", "1,000 silent sockets from 50 addresses (20 each)", slowloris_many),
    Attack("slow-bodies-batch", "100 addresses each send 8 MiB of a batch, never the last byte",
           slow_bodies_batch),
    Attack("slow-bodies-p2p", "100 addresses each send 12 MiB to /p2p/txs, never the last byte",
           slow_bodies_p2p),
    Attack("big-posts", "1,100 valid 8 KiB posts at once (9.5 MB: more than one block holds)", big_posts),
    Attack("dust-spam", "a member with no stake submits 2,000 posts", dust_spam),
    Attack("sync-amplification", "40 clients on 20 addresses GET /p2p/blocks?count=256 in a loop",
           sync_amplification),
    Attack("outsider-pushes", "20 addresses push 1 MiB blocks signed by an unknown key, in a loop",
           outsider_pushes),
]


def _run_attack(name: str, port: int, seconds: float) -> None:
    attack = next(a for a in ATTACKS if a.name == name)
    asyncio.run(attack.run(port, seconds))


def _measure(url: str, pid: int, seconds: float) -> dict:
    import httpx
    latencies, failures, rss, finals = [], 0, [], []
    end = time.monotonic() + seconds
    next_rss = 0.0
    while time.monotonic() < end:
        started = time.perf_counter()
        try:
            response = httpx.get(url + "/v1/status", timeout=2)
            if response.status_code == 200:
                latencies.append(time.perf_counter() - started)
                finals.append((time.monotonic(), response.json()["final"]["height"]))
            else:
                failures += 1
        except httpx.HTTPError:
            failures += 1
        if time.monotonic() >= next_rss:
            rss.append(rss_mb(pid))
            next_rss = time.monotonic() + 0.5
        time.sleep(max(0.0, 0.1 - (time.perf_counter() - started)))
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else None
    ms = (lambda q: round(quantiles[q] * 1000, 1)) if quantiles else (lambda q: "-")
    # "-": no status answered twice, so no rate could be read
    rate = (round((finals[-1][1] - finals[0][1]) / (finals[-1][0] - finals[0][0]), 2)
            if len(finals) >= 2 and finals[-1][0] > finals[0][0] else "-")
    return {"rss_mb": round(statistics.median(rss)), "rss_peak_mb": round(max(rss)),
            "wallet_p50_ms": ms(49), "wallet_p99_ms": ms(98),
            "wallet_failed": f"{failures}/{failures + len(latencies)}", "final_blocks_per_s": rate}


def bench_attacks(seconds: float = 10.0, port: int = 18556, only: tuple = ()) -> dict:
    """{phase: figures}: "baseline", then each attack of ATTACKS (or of `only`)."""
    from node.keystore import write_key_file

    members = bench_keys(20)
    genesis = bench_genesis(members, time.time_ns() // 1_000_000 - 10_000)
    genesis = dataclasses.replace(genesis, members=genesis.members + (
        Member(DUST_MEMBER, _dust_key().public_key, 1_000_000, 0),))
    url = f"http://127.0.0.1:{port}"
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "genesis.json"), "w") as f:
            json.dump(genesis.to_json(), f)
        write_key_file(os.path.join(tmp, "key.json"), members[0][0], members[0][1])
        with open(os.path.join(tmp, "node.toml"), "w") as f:
            f.write(f'[node]\ndata_dir = "{os.path.join(tmp, "data")}"\nport = {port}\n'
                    f'genesis = "{os.path.join(tmp, "genesis.json")}"\n'
                    f'key_file = "{os.path.join(tmp, "key.json")}"\n'
                    'limit_loopback = true\nlog_level = "warning"\n')
        proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "cli.py"), "node", "run", "--config",
                                 os.path.join(tmp, "node.toml")], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            _wait_ready(port, proc)
            time.sleep(2)
            results["baseline"] = _measure(url, proc.pid, seconds)
            spawn = multiprocessing.get_context("spawn")
            for attack in ATTACKS:
                if only and attack.name not in only:
                    continue
                attacker = spawn.Process(target=_run_attack, args=(attack.name, port, seconds + 1.5))
                attacker.start()
                time.sleep(1.0)  # its sockets open
                figures = _measure(url, proc.pid, seconds)
                attacker.join(seconds + 10)
                if attacker.is_alive():
                    attacker.terminate()
                    attacker.join(5)
                time.sleep(2.0)
                figures["rss_after_mb"] = round(rss_mb(proc.pid))
                results[attack.name] = figures
        finally:
            proc.terminate()
            proc.wait(10)
    return results


def print_table(results: dict, echo) -> None:
    columns = ["rss_mb", "rss_peak_mb", "rss_after_mb", "wallet_p50_ms", "wallet_p99_ms", "wallet_failed",
               "final_blocks_per_s"]
    echo(f"{'phase':24s}" + "".join(f"{c:>20s}" for c in columns))
    for phase, figures in results.items():
        echo(f"{phase:24s}" + "".join(f"{str(figures.get(c, '-')):>20s}" for c in columns))
    for attack in ATTACKS:
        if attack.name in results:
            echo(f"  {attack.name}: {attack.what}")
