"""Per-client limits of the wallet API (node.http.ClientLimits): a client over its request or tx
budget gets 429 `rate_limited` and changes nothing; loopback clients and peers are not limited
by it; and the open-connection cap of a real node process answers 503 beyond it."""
import asyncio
import dataclasses
import json
import os
import socket
import subprocess
import sys
import time

import httpx
import msgpack
import pytest

from node.api import create_app
from node.http import ClientLimits
from node.service import NodeService
from p2p.envelope import RateLimited
from state.kv import MemoryKV
from tests.conftest import make_genesis
from tests.test_p2p import fresh_tx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WALLET_IP = "203.0.113.7"  # a documentation address: not loopback


def requests(app, calls, client_ip=WALLET_IP):
    """[(method, path, body)] sent in order on one connection from client_ip; their responses."""
    async def go():
        transport = httpx.ASGITransport(app, client=(client_ip, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as c:
            return [await c.request(method, path, content=body,
                                    headers={"content-type": "application/msgpack"})
                    for method, path, body in calls]
    return asyncio.run(go())


def limited_app(service, **limits):
    fresh = NodeService(dataclasses.replace(service.config, **limits), kv=MemoryKV())
    return fresh, create_app(fresh)


def code(response):
    return response.json()["error"]["code"] if response.status_code >= 400 else None


def test_a_client_over_its_request_rate_gets_429_while_loopback_and_peers_are_not_limited(service):
    _, app = limited_app(service, api_requests_per_s=1)  # a burst of 2, then 1 a second
    first = requests(app, [("GET", "/v1/status", b"")] * 3)
    assert [r.status_code for r in first] == [200, 200, 429] and code(first[2]) == "rate_limited"
    # the peer endpoints have their own per-peer limits, not these
    assert requests(app, [("GET", "/p2p/blocks?from=1&count=1", b"")])[0].status_code == 200
    assert all(r.status_code == 200 for r in requests(app, [("GET", "/v1/status", b"")] * 20, "127.0.0.1"))
    # another address has its own budget
    assert requests(app, [("GET", "/v1/status", b"")], "198.51.100.9")[0].status_code == 200


def test_submitted_txs_count_against_the_tx_rate_and_a_refused_batch_admits_nothing(service):
    fresh, app = limited_app(service, api_requests_per_s=0)
    app.limits.txs_per_s = 1  # a burst of 2 txs (the config allows no less than 1000 a second)
    signed = [fresh_tx("bob", "transfer", {"to": "carol", "amount": 1 + i}) for i in range(6)]
    txs = [t.raw for t in signed]
    batch = "/v1/transactions/batch"
    over, fits, single = requests(app, [("POST", batch, msgpack.packb(txs[:3])),
                                        ("POST", batch, msgpack.packb(txs[3:5])),
                                        ("POST", "/v1/transactions", txs[5])])
    assert code(over) == "rate_limited" and over.status_code == 429
    assert fits.status_code == 200 and fits.json()["accepted"] == 2
    assert code(single) == "rate_limited"
    assert len(fresh.mempool) == 2 and signed[3].id in fresh.mempool and signed[4].id in fresh.mempool


def test_the_budgets_count_txs_and_zero_is_no_limit():
    limits = ClientLimits(requests_per_s=0, txs_per_s=1)  # a burst of 2
    limits.admit_txs(WALLET_IP, 1)
    limits.admit_txs(WALLET_IP, 1)
    with pytest.raises(RateLimited) as e:
        limits.admit_txs(WALLET_IP, 1)
    assert e.value.code == "rate_limited" and e.value.status == 429
    limits.admit_txs("::1", 10_000)  # loopback: no limit
    ClientLimits(0, 0).admit_txs(WALLET_IP, 10_000)  # 0: no limit


def test_the_clients_tracked_are_bounded(monkeypatch):
    monkeypatch.setattr(ClientLimits, "MAX_CLIENTS", 8)
    limits = ClientLimits(requests_per_s=10, txs_per_s=1000)
    for i in range(100):
        limits.admit_request(f"198.51.100.{i}")
    assert len(limits.buckets) == 8 and "198.51.100.99" in limits.buckets


def test_a_real_node_answers_503_beyond_its_open_connection_cap(tmp_path):
    """`max_connections` caps the open connections of wallets (node.intake): with that many open
    (all from 127.0.0.1, the newcomer's own address, so none is evicted to make room), a request
    gets 503 `overloaded` instead of a slot on the event loop; once they close, it is served again."""
    (tmp_path / "genesis.json").write_text(json.dumps(make_genesis().to_json()))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "node.toml").write_text(
        f'[node]\ndata_dir = "{tmp_path / "data"}"\nport = {port}\ngenesis = "{tmp_path / "genesis.json"}"\n'
        f'key_file = ""\nmax_connections = 3\n')
    log = open(tmp_path / "node.log", "wb")
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "cli.py"), "node", "run", "--config",
                             str(tmp_path / "node.toml")], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1/status"
    try:
        deadline = time.time() + 30
        while True:
            assert proc.poll() is None and time.time() < deadline, (tmp_path / "node.log").read_text()
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        # accepted in order: by the time this request is read, the server holds all three
        assert httpx.get(url, timeout=5).status_code == 503
        for s in idle:
            s.close()
        deadline = time.time() + 10  # until the server has seen them close
        while httpx.get(url, timeout=5).status_code == 503 and time.time() < deadline:
            time.sleep(0.1)
        assert httpx.get(url, timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
