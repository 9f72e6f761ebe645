"""The HTTP edge (node.intake) against a real node process on loopback: idle and slow sockets,
body bytes in flight, per-address and per-pool caps; and the smaller intake checks (deep JSON,
IPv6 /64 grouping, key-file permissions, the dev chain on a public address).

Loopback clients are exempt from the per-address caps in production (local tools, the testnet);
these nodes run with `limit_loopback = true`, and the attacker's sockets are bound to other
loopback addresses (127.0.0.2 and up: Linux routes all of 127/8 to `lo`) than the wallet's
127.0.0.1, so each test exercises the same code path as a remote client on its own address."""
import asyncio
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from core.crypto import Keypair
from core.errors import ProtocolError
from node.api import create_app
from node.keystore import read_key_file, write_key_file
from node.http import ClientLimits, client_key
from node.intake import BodyBudget, Intake, IntakeLimits
from p2p.envelope import RateLimited
from tests.conftest import make_genesis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MiB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    """A node process with the given [node] settings; `rss()` its resident memory in bytes."""

    def __init__(self, tmp, **settings):
        (tmp / "genesis.json").write_text(json.dumps(make_genesis().to_json()))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        lines = [f'data_dir = "{tmp / "data"}"', f"port = {self.port}",
                 f'genesis = "{tmp / "genesis.json"}"', 'key_file = ""']
        lines += [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
        (tmp / "node.toml").write_text("[node]\n" + "\n".join(lines) + "\n")
        self.log_path = tmp / "node.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "cli.py"), "node", "run",
                                      "--config", str(tmp / "node.toml")],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while True:
            assert self.proc.poll() is None and time.time() < deadline, self.log_path.read_text()
            try:
                if httpx.get(self.url + "/v1/status", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)

    def rss(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


def wallet_status_s(url: str) -> float:
    """Seconds a fresh wallet connection from 127.0.0.1 takes to get 200 from /v1/status."""
    started = time.perf_counter()
    response = httpx.get(url + "/v1/status", timeout=5)
    assert response.status_code == 200, response.text
    return time.perf_counter() - started


def connect_from(source: str, port: int) -> socket.socket:
    s = socket.socket()
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def is_closed_by_server(s: socket.socket, wait_s: float) -> bool:
    s.settimeout(wait_s)
    try:
        while s.recv(65536):  # an answer (503) before the close is fine
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


@pytest.fixture
def node(tmp_path):
    nodes = []

    def start(**settings):
        nodes.append(Node(tmp_path / str(len(nodes)), **settings))
        return nodes[-1]
    (tmp_path / "0").mkdir()
    (tmp_path / "1").mkdir()
    yield start
    for n in nodes:
        n.stop()


def test_idle_sockets_take_only_their_address_share_and_are_closed_at_the_header_deadline(node):
    n = node(limit_loopback=True, client_connections=20, header_timeout_s=1.5)
    idle = [connect_from("127.0.0.2", n.port) for _ in range(300)]
    time.sleep(0.3)  # accepted (or closed at once) by now
    assert wallet_status_s(n.url) < 1.0
    closed = set(select.select(idle, [], [], 0)[0])
    open_now = [s for s in idle if s not in closed]
    assert len(open_now) == 20  # the other 280 were closed at once
    time.sleep(1.5)
    assert all(is_closed_by_server(s, 1.0) for s in open_now)  # the header deadline
    # a request whose headers trickle in is cut at the same deadline
    slow = connect_from("127.0.0.2", n.port)
    slow.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")
    assert not is_closed_by_server(slow, 0.5) and is_closed_by_server(slow, 2.0)
    for s in idle + [slow]:
        s.close()
    assert wallet_status_s(n.url) < 1.0
    cut = {m.labels["why"]: m.value for family in text_string_to_metric_families(
        httpx.get(n.url + "/metrics").text) for m in family.samples if m.name == "chain_http_connections_cut_total"}
    assert cut["over_client_cap"] == 280 and cut["deadline"] >= 21  # what /metrics tells an operator


def raw_status(source: str, port: int) -> bytes:
    """GET /v1/status from `source` on a fresh connection; the whole answer, until the close."""
    with socket.socket() as s:
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        s.settimeout(2)
        answer = b""
        while part := s.recv(65536):
            answer += part
    return answer


def test_a_full_wallet_pool_makes_room_from_the_busiest_address_and_never_takes_the_peers(node):
    # 127.0.0.1 is a configured peer's address (nothing listens on port 9: gossip to it just fails)
    n = node(limit_loopback=True, client_connections=20, max_connections=100, header_timeout_s=3,
             peers=["http://127.0.0.1:9"])
    crowd = [connect_from(f"127.0.0.{10 + i // 20}", n.port) for i in range(100)]  # 5 addresses
    time.sleep(0.3)
    assert wallet_status_s(n.url) < 1.0  # the peer address has its own pool
    # a wallet on another address gets in: the oldest silent socket of a full address makes room
    assert raw_status("127.0.0.3", n.port).startswith(b"HTTP/1.1 200")
    time.sleep(0.1)
    assert len(select.select(crowd, [], [], 0)[0]) == 1  # readable: its end of file
    for s in crowd:
        s.close()
    time.sleep(0.3)
    # 100 addresses of one socket each: no one to take room from, so a newcomer is told 503
    crowd = [connect_from(f"127.0.1.{1 + i}", n.port) for i in range(100)]
    time.sleep(0.3)
    answer = raw_status("127.0.0.3", n.port)
    assert answer.startswith(b"HTTP/1.1 503") and b'"overloaded"' in answer
    assert wallet_status_s(n.url) < 1.0
    for s in crowd:
        s.close()


def send_slow_body(source: str, port: int, size: int, answers: list):
    """POST a batch declaring `size` bytes; unless answered at once, send all but its last byte
    and hold the connection. Appends what it saw: "refused" (a status line before
    any body byte was sent), "held" (sent, then closed by the node) or "open"."""
    s = connect_from(source, port)
    try:
        s.sendall(b"POST /v1/transactions/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/msgpack\r\n"
                  b"Content-Length: %d\r\n\r\n" % size)
        s.settimeout(0.5)
        try:
            if s.recv(64).startswith(b"HTTP/1.1 "):
                answers.append("refused")
                return
        except TimeoutError:
            pass
        chunk = b"\x00" * (256 * 1024)
        sent = 0
        while sent < size - 1:
            part = chunk[:min(len(chunk), size - 1 - sent)]
            s.sendall(part)
            sent += len(part)
        answers.append("held" if is_closed_by_server(s, 30) else "open")
    except OSError:
        answers.append("held")
    finally:
        s.close()


def test_slow_bodies_are_held_to_the_budget_and_released(node):
    """40 clients on 40 addresses each send 8 MiB of a batch and never its last byte: without a
    budget the node held all 320 MiB (and kept it); here at most the node-wide 64 MiB of bodies in
    flight plus the connections' buffers, a wallet is answered meanwhile, and after the body
    deadline the node is back near its baseline."""
    n = node(limit_loopback=True, body_timeout_s=4, header_timeout_s=2)
    for _ in range(3):
        wallet_status_s(n.url)
    baseline = n.rss()
    answers = []
    senders = [threading.Thread(target=send_slow_body, args=(f"127.0.1.{i + 1}", n.port, 8 * MiB, answers))
               for i in range(40)]
    for t in senders:
        t.start()
    peak, latencies = 0, []
    for _ in range(12):
        time.sleep(0.25)
        peak = max(peak, n.rss())
        latencies.append(wallet_status_s(n.url))
    refused = answers.count("refused")
    print(f"\nslow bodies: baseline {baseline / MiB:.0f} MiB, peak {peak / MiB:.0f} MiB, "
          f"wallet max {max(latencies) * 1000:.0f} ms, refused at once {refused}")
    assert refused == 32  # 64 MiB in flight takes 8 of them; the rest are told at once
    assert peak - baseline < 100 * MiB
    assert max(latencies) < 1.0
    for t in senders:  # the body deadline (4 s) closes the held ones
        t.join(10)
    assert answers.count("held") == 8
    time.sleep(0.5)
    after = n.rss()
    print(f"after: {after / MiB:.0f} MiB")
    assert after - baseline < 40 * MiB
    assert wallet_status_s(n.url) < 1.0


# ------------------------------------------------------------------------------ no process
def asgi_post(app, path: str, body: bytes, content_type: str, client_ip: str = "203.0.113.7"):
    async def go():
        transport = httpx.ASGITransport(app, client=(client_ip, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as c:
            return await c.post(path, content=body, headers={"content-type": content_type})
    return asyncio.run(go())


def test_a_deeply_nested_json_body_is_a_400_not_a_500(service):
    app = create_app(service)
    response = asgi_post(app, "/v1/transactions", b"[" * 30_000, "application/json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "malformed"


def test_the_body_budget_answers_429_per_client_and_503_node_wide_and_releases():
    intake = Intake(IntakeLimits(client_body_bytes=16 * MiB, body_bytes_in_flight=20 * MiB))

    async def echo(scope, receive, send):  # answers the body's length, or the error's code
        body, status = b"", 200
        try:
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
        except ProtocolError as e:
            body, status = e.code.encode(), e.status
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": body if status != 200 else str(len(body)).encode()})
    app = BodyBudget(echo, intake)
    assert asgi_post(app, "/", b"x" * 10 * MiB, "a").text == str(10 * MiB)
    assert intake.body_bytes == {"peer": 0, "wallet": 0} and intake.client_bytes == {}
    held = intake.charge("203.0.113.7", 10 * MiB)  # a body of that client still in flight
    too_much = asgi_post(app, "/", b"x" * 7 * MiB, "a")  # refused on its declared length
    assert (too_much.status_code, too_much.text) == (429, "body_budget")
    assert too_much.headers["connection"] == "close"
    assert intake.client_bytes == {"203.0.113.7": 10 * MiB}
    other = intake.charge("2001:db8:1:2::9", 10 * MiB)  # another address: node-wide budget left 0
    with pytest.raises(Exception) as e:
        intake.charge("198.51.100.1", 1)
    assert e.value.code == "overloaded" and e.value.status == 503
    intake.release(held, 10 * MiB)
    intake.release(other, 10 * MiB)
    assert intake.body_bytes == {"peer": 0, "wallet": 0} and intake.client_bytes == {}


def test_ipv6_clients_are_grouped_per_64():
    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff:0:0:7") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:198.51.100.4") == client_key("198.51.100.4") == "198.51.100.4"
    limits = ClientLimits(requests_per_s=1, txs_per_s=1000)  # a burst of 2
    limits.admit_request("2001:db8:1:2::1")
    limits.admit_request("2001:db8:1:2::2")
    with pytest.raises(RateLimited):
        limits.admit_request("2001:db8:1:2::3")  # a fresh address of the same /64: no fresh burst
    limits.admit_request("2001:db8:1:3::1")
    intake = Intake(IntakeLimits(client_connections=2))
    slots = [intake.open("2001:db8:1:2::1", object()), intake.open("2001:db8:1:2::2", object())]
    assert None not in slots and intake.open("2001:db8:1:2::3", object()) is None
    assert intake.open("2001:db8:9::1", object()) is not None


def test_a_key_file_others_can_read_is_refused(tmp_path):
    path = tmp_path / "k.json"
    write_key_file(path, "alice", Keypair(b"\x01" * 32))
    assert read_key_file(path).name == "alice"
    for mode in (0o644, 0o640, 0o602):
        os.chmod(path, mode)
        with pytest.raises(ValueError, match="chmod 600"):
            read_key_file(path)


def test_the_dev_chain_refuses_a_public_host_without_the_flag(tmp_path, monkeypatch):
    import cli
    import node.main
    started = []
    monkeypatch.setattr(node.main, "run_node", started.append)
    result = CliRunner().invoke(cli.cli, ["node", "run", "--host", "0.0.0.0", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "--allow-public-dev-keys" in result.output and not started
    result = CliRunner().invoke(cli.cli, ["node", "run", "--host", "0.0.0.0", "--data-dir", str(tmp_path),
                                          "--allow-public-dev-keys"])
    assert result.exit_code == 0 and len(started) == 1
    result = CliRunner().invoke(cli.cli, ["node", "run", "--host", "::1", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0 and len(started) == 2


@pytest.mark.parametrize("setting, value", [
    ("client_connections", 0), ("peer_connections", -1), ("header_timeout_s", 0),
    ("body_timeout_s", "30"), ("client_body_bytes", 1024 * 1024), ("body_bytes_in_flight", 2**20),
    ("limit_loopback", 1)])
def test_an_intake_setting_out_of_range_stops_the_node_with_its_name(setting, value):
    from node.config import load_config
    with pytest.raises(ValueError, match=setting):
        load_config(None, **{setting: value})
