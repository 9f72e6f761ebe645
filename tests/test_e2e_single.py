"""End to end on a real node process (uvicorn, LevelDB) on loopback, driven by the project's wallet
client: every tx kind reaches `final`; bad input gets its code and changes nothing; `kill -9` and a
restart lose no final block; `/metrics` counts what the node did."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.crypto import Keypair
from core.genesis import ChainParams, Genesis, Member, Producer
from core.types import Tx
from core.wallet import ApiError, Client, Wallet
from node.keystore import write_key_file
from tests.conftest import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHAIN = "e2e-chain"
NAMES = ["alice", "bob", "carol"]
KEYS = {n: Keypair(bytes([i + 1]) * 32) for i, n in enumerate(NAMES)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NodeProcess:
    def __init__(self, tmp, port):
        self.tmp, self.port, self.proc = tmp, port, None
        self.url = f"http://127.0.0.1:{port}"

    def start(self):
        cmd = [sys.executable, os.path.join(ROOT, "cli.py"), "node", "run", "--data-dir",
               str(self.tmp / "data"), "--port", str(self.port), "--genesis",
               str(self.tmp / "genesis.json"), "--key-file", str(self.tmp / "alice.json")]
        self.log = open(self.tmp / "node.log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            assert self.proc.poll() is None, (self.tmp / "node.log").read_text()
            try:
                if httpx.get(self.url + "/v1/status", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError("node did not start")

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    params = ChainParams(block_interval_ms=300, stake_activation_delay_ms=STAKE_DELAY_MS,
                         unstake_delay_ms=STAKE_DELAY_MS, min_producer_approval=50_000)
    genesis = Genesis(CHAIN, time.time_ns() // 1_000_000 - 10_000, params,
                      tuple(Member(n, k.public_key, 1_000_000, 100_000) for n, k in KEYS.items()),
                      (Producer("alice", KEYS["alice"].public_key, ""),))
    (tmp / "genesis.json").write_text(json.dumps(genesis.to_json()))
    write_key_file(tmp / "alice.json", "alice", KEYS["alice"])
    proc = NodeProcess(tmp, free_port())
    proc.start()
    yield proc
    proc.stop()


STAKE_DELAY_MS = 3000


def wallet(name, key=None):
    return Wallet(name, key or KEYS[name], CHAIN)


def final(client, tx):
    result = client.submit(tx, wait="final")
    assert result["status"] == "final", result
    return result


def test_governance_changes_a_rules_parameter_at_its_effective_height(node):
    """First in the module: no candidate is elected yet, so the genesis producer governs."""
    c = Client(node.url)
    rules = c.rules()
    assert rules["params"]["attend_points"] == 1000
    assert set(rules["pools"]) == {"content", "behaviour", "relationship"}
    effective = c.status()["head"]["height"] + 10
    proposal = final(c, wallet("alice").propose_param("attend_points", 1500, effective))
    with pytest.raises(ApiError) as e:
        c.submit(wallet("bob").approve_proposal(proposal["id"]))
    assert (e.value.status, e.value.code) == (403, "not_producer")
    deadline = time.time() + 30
    while c.status()["final"]["height"] < effective and time.time() < deadline:
        time.sleep(0.2)
    assert c.rules()["params"]["attend_points"] == 1500
    listed = {p["id"]: p for p in c.proposals()["proposals"]}[proposal["id"]]
    assert (listed["status"], listed["approvals"], listed["name"]) == ("enacted", ["alice"], "attend_points")


def test_every_kind_reaches_final(node):
    c = Client(node.url)
    alice, bob = wallet("alice"), wallet("bob")
    newbie_key = Keypair.generate()
    final(c, alice.refer("newbie", newbie_key.public_key))
    newbie = wallet("newbie", newbie_key)
    assert c.account("newbie")["referrer"] == "alice"

    final(c, newbie.post("hello", "Hello", "my first post", tags=["intro"]))
    final(c, bob.vote_post("newbie/hello", 5000))
    final(c, alice.post("re-hello", "", "welcome!", parent="newbie/hello"))
    post = c.post("newbie", "hello")
    assert (post["net_votes"], post["vote_count"], post["children"]) == (5000, 1, 1)

    now = time.time_ns() // 1_000_000
    final(c, alice.post("meetup", "Meetup", "come along", tags=["event"],
                        event={"starts_at": now - 60_000, "ends_at": now + 3_600_000, "capacity": 5}))
    final(c, newbie.attend("alice/meetup", alice.ticket("alice/meetup", "newbie")))
    assert c.post("alice", "meetup")["attendees"] == 1
    with pytest.raises(ApiError) as e:
        c.submit(newbie.attend("alice/meetup", alice.ticket("alice/meetup", "newbie")))
    assert (e.value.status, e.value.code) == (409, "already_attended")

    final(c, bob.transfer("newbie", 1000, memo="welcome"))
    final(c, newbie.stake(400))
    acct = c.account("newbie")
    assert (acct["balance"], acct["stake"], acct["maturing"]) == (600, 400, 400)
    # stake that has not matured cannot leave; once it has, it leaves through unbonding
    with pytest.raises(ApiError) as e:
        c.submit(newbie.unstake(100))
    assert (e.value.status, e.value.code) == (400, "insufficient_stake")
    final(c, newbie.register_producer(Keypair.generate().public_key, "http://127.0.0.1:1"))
    final(c, bob.approve_producer("newbie"))
    final(c, newbie.unjail())
    producers = {p["name"]: p for p in c.producers()["producers"]}
    assert producers["newbie"]["approval"] == c.account("bob")["stake"]
    assert producers["newbie"]["unjailed_height"] > 0
    wait_until(lambda: c.account("newbie")["maturing"] == 0, 10, "the stake to mature")
    final(c, newbie.unstake(100))
    acct = c.account("newbie")
    assert (acct["balance"], acct["stake"], acct["unbonding"]) == (600, 300, 100)
    wait_until(lambda: c.account("newbie")["balance"] == 700, 10, "the unstaked CP to be released")


def test_tx_status_moves_pending_to_final(node):
    c = Client(node.url)
    tx = wallet("carol").transfer("bob", 1)
    assert c.submit(tx)["status"] == "pending"
    seen = set()
    deadline = time.time() + 10
    while time.time() < deadline and "final" not in seen:
        seen.add(c.tx_status(tx.id.hex())["status"])
        time.sleep(0.02)
    assert "final" in seen and seen <= {"pending", "included", "final"}
    block = c.block(str(c.tx_status(tx.id.hex())["height"]))
    assert block["final"] and tx.id.hex() in [t["id"] for t in block["txs"]]


def _raw_post(url, body, ctype="application/msgpack"):
    return httpx.post(url + "/v1/transactions", content=body, headers={"content-type": ctype})


def _break_signature(tx: Tx) -> bytes:
    return tx.raw[:-1] + bytes([tx.raw[-1] ^ 1])


BAD_INPUT = [
    # (name, make raw body, expected status, expected code)
    ("garbage", lambda: b"\xc1\xc1", 400, "malformed"),
    ("top-level map", lambda: b"\x81\xa1a\x01", 400, "malformed"),
    ("oversized", lambda: b"\x00" * 40_000, 413, "too_large"),
    ("bad signature", lambda: _break_signature(wallet("bob").transfer("carol", 1)), 400, "bad_signature"),
    ("wrong key", lambda: Wallet("bob", KEYS["carol"], CHAIN).transfer("carol", 1).raw, 400, "bad_signature"),
    ("wrong chain", lambda: Wallet("bob", KEYS["bob"], "other-chain").transfer("carol", 1).raw, 400, "wrong_chain"),
    ("expired", lambda: Tx.create(KEYS["bob"], CHAIN, "transfer", "bob", 1000, {"to": "carol", "amount": 1}).raw,
     400, "expired"),
    ("too far ahead", lambda: Tx.create(KEYS["bob"], CHAIN, "transfer", "bob", time.time_ns() // 1_000_000
                                        + 7_200_000, {"to": "carol", "amount": 1}).raw, 400, "expiry_too_far"),
    ("non-member", lambda: Wallet("mallory", KEYS["bob"], CHAIN).transfer("carol", 1).raw, 403, "not_member"),
    ("unknown post", lambda: wallet("bob").vote_post("carol/nothing", 100).raw, 404, "unknown_post"),
    ("unknown event", lambda: wallet("bob").attend("carol/nothing", bytes(64)).raw, 404, "unknown_event"),
    ("insufficient balance", lambda: wallet("bob").transfer("carol", 10**12).raw, 400, "insufficient_balance"),
    ("insufficient stake", lambda: wallet("bob").unstake(10**12).raw, 400, "insufficient_stake"),
]


@pytest.mark.parametrize("name,make,status,code", BAD_INPUT, ids=[b[0] for b in BAD_INPUT])
def test_bad_input_is_rejected_with_its_code_and_changes_nothing(node, name, make, status, code):
    c = Client(node.url)
    before = (c.account("bob"), c.account("carol"), c.status()["mempool"])
    r = _raw_post(node.url, make())
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert (c.account("bob"), c.account("carol"), c.status()["mempool"]) == before


def test_duplicate_submission_is_409(node):
    c = Client(node.url)
    tx = wallet("bob").transfer("carol", 2)
    final(c, tx)
    r = _raw_post(node.url, tx.raw)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "duplicate")


def test_json_submission_and_batch_endpoint(node):
    c = Client(node.url)
    tx = wallet("carol").transfer("alice", 3)
    r = httpx.post(node.url + "/v1/transactions?wait=final", json={"tx": tx.raw.hex()})
    assert r.status_code == 200 and r.json()["status"] == "final"
    txs = [wallet("carol").transfer("alice", 1) for _ in range(5)]
    result = c.submit_batch(txs + [txs[0]])
    assert result["accepted"] == 5
    assert result["results"][-1]["error"]["code"] == "duplicate"
    for t in txs:
        assert c.wait_final(t.id.hex(), 15)["status"] == "final"


def test_read_endpoints_give_clear_404s(node):
    for path, code in [("/v1/accounts/nobody", "unknown_account"), ("/v1/posts/alice/none", "unknown_post"),
                       ("/v1/transactions/" + "00" * 32, "unknown_tx"), ("/v1/blocks/999999999", "unknown_block"),
                       ("/v1/nothing", "not_found")]:
        r = httpx.get(node.url + path)
        assert (r.status_code, r.json()["error"]["code"]) == (404, code), path
    r = httpx.get(node.url + "/v1/transactions/zz")
    assert (r.status_code, r.json()["error"]["code"]) == (400, "malformed")


def test_kill_9_and_restart_lose_no_final_block(node):
    c = Client(node.url)
    txs = [wallet("bob").transfer("alice", 1) for _ in range(3)]
    for tx in txs:
        final(c, tx)
    final_before = c.status()["final"]
    blocks_before = {h: c.block(str(h))["id"] for h in range(1, final_before["height"] + 1)}
    accounts_before = c.account("alice")
    node.kill9()
    node.start()
    status = c.status()
    assert status["final"]["height"] >= final_before["height"]
    assert {h: c.block(str(h))["id"] for h in blocks_before} == blocks_before
    for tx in txs:
        assert c.tx_status(tx.id.hex())["status"] == "final"
    assert c.account("alice")["balance"] >= accounts_before["balance"]
    # and the chain goes on finalizing after the restart
    final(c, wallet("bob").transfer("alice", 1))


def test_repeated_kill_9_under_load_keeps_final_history(node):
    """kill -9 at arbitrary moments while txs stream in: every block once seen final keeps its id,
    and the restarted node goes on finalizing."""
    import random
    c = Client(node.url)
    seen_final: dict[int, str] = {}
    rng = random.Random(7)
    for round_ in range(3):
        c.submit_batch([wallet("carol").transfer("bob", 1) for _ in range(200)])
        time.sleep(rng.uniform(0.05, 0.6))
        height = c.status()["final"]["height"]
        for h in range(max(1, height - 20), height + 1):
            seen_final[h] = c.block(str(h))["id"]
        node.kill9()
        node.start()
        for h, block_id in seen_final.items():
            assert c.block(str(h))["id"] == block_id, f"final block {h} changed after kill -9"
    final(c, wallet("carol").transfer("bob", 1))


def scrape(url: str) -> dict:
    """GET /metrics parsed: (sample name, sorted labels) -> value."""
    text = httpx.get(url + "/metrics", timeout=5).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_count_what_the_node_did(node):
    c = Client(node.url)
    before = scrape(node.url)
    for _ in range(3):
        final(c, wallet("bob").transfer("carol", 1))
    forged = _raw_post(node.url, Wallet("bob", KEYS["carol"], CHAIN).transfer("carol", 1).raw)
    assert forged.json()["error"]["code"] == "bad_signature"
    c.submit_batch([wallet("carol").transfer("bob", 1) for _ in range(2)])
    after = scrape(node.url)
    status = c.status()

    def grew(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)
    assert grew("chain_txs_admitted_total", source="wallet") == 5
    assert grew("chain_tx_signature_wait_seconds_count") == 1  # the batch; single txs do not wait
    assert grew("chain_txs_refused_total", code="bad_signature") == 1
    assert grew("chain_txs_final_total") >= 3
    assert grew("chain_blocks_produced_total") >= 1 and grew("chain_votes_cast_total") >= 1
    assert grew("chain_block_final_seconds_count") >= 1
    assert 0 < after[("chain_height", (("block", "final"),))] <= status["final"]["height"]
    assert after[("chain_producing", ())] == 1 and after[("chain_peers", ())] == 0
