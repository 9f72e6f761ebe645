"""A 4-validator testnet (plus one full node started late) as real processes on loopback: every
node agrees on every final block and state root, txs gossip to finality everywhere, finality
survives one `kill -9` and stops without a 2/3+1 quorum, restarted nodes catch up by sync and
vote again without ever double-voting, and a rules upgrade by governance changes awards from its
effective height on, on every node."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from contracts import code_hash, compile_source
from contracts.rules import default_rules_source
from core.crypto import Keypair
from core.wallet import Client, Wallet
from node import testnet
from node.testnet import CHAIN_ID, free_port_range, prepare
from p2p.gossip import SYNC_LAG
from tests.conftest import wait_until
from tests.test_e2e_single import scrape

VALIDATORS = 4
FULL = VALIDATORS  # index of the full node


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    d = tmp_path_factory.mktemp("testnet")
    prepare(d, VALIDATORS, free_port_range(VALIDATORS + 1), block_interval_ms=400, full_nodes=1)
    tn = testnet.Testnet(d)
    tn.start_all(range(VALIDATORS))
    yield tn
    tn.stop_all()


def final_height(net, i) -> int:
    st = net.status(i)
    return -1 if st is None else st["final"]["height"]


def finals(net, indices) -> list[int]:
    return [final_height(net, i) for i in indices]


def wait_all_in_office(net, names, epoch_slots: int, slot_ms: int) -> None:
    """Wait until the schedule that judged epoch 1 (elected for epoch 4) is in force with every
    one of `names` and nobody jailed. Only epoch 0 goes unjudged, so on short test epochs a
    validator whose process came up late on a busy machine is jailed at start; it sends `unjail`
    and is seated again. Tests that need all producers in office start from here."""
    def all_in_office():
        st = net.status(0)
        return (st["slot"] // epoch_slots >= 4 and sorted(st["schedule"]) == sorted(names)
                and not net.client.get(f"{net.urls[0]}/v1/producers").json()["jailed"])
    wait_until(all_in_office, 20 * epoch_slots * slot_ms / 1000, "all producers in office")


def block(net, i, height) -> dict:
    return net.client.get(f"{net.urls[i]}/v1/blocks/{height}").json()


def assert_same_final_chain(net, indices, upto: int) -> None:
    for h in range(1, upto + 1):
        blocks = [block(net, i, h) for i in indices]
        assert all(b["final"] for b in blocks), h
        assert len({b["id"] for b in blocks}) == 1, f"final blocks differ at height {h}"
        assert len({b["header"]["state_root"] for b in blocks}) == 1, f"state roots differ at {h}"


def evidence(net, indices) -> list:
    out = []
    for i in indices:
        out += net.client.get(f"{net.urls[i]}/v1/producers").json()["evidence"]
    return out


def member_wallet(net, n: int) -> Wallet:
    keys = json.loads((net.dir / "dev-keys.json").read_text())["members"]
    m = keys[n]
    return Wallet(m["name"], Keypair(bytes.fromhex(m["seed"])), CHAIN_ID)


def test_validators_agree_on_every_final_block_and_state_root(net):
    wait_until(lambda: min(finals(net, range(VALIDATORS))) >= 8, 30, "final height 8 on all")
    assert_same_final_chain(net, range(VALIDATORS), 8)
    st = net.status(0)
    assert len(st["peers"]) == VALIDATORS - 1 and all(p["up"] for p in st["peers"])


def test_tx_submitted_to_one_node_is_final_on_all(net):
    alice, bob = member_wallet(net, VALIDATORS), member_wallet(net, VALIDATORS + 1)
    txs = [alice.transfer(bob.name, 1000 + i) for i in range(20)]
    with Client(net.urls[1]) as c:
        c.submit_batch(txs)
    for i in range(VALIDATORS):
        with Client(net.urls[i]) as c:
            for tx in txs:
                assert c.wait_final(tx.id, timeout_s=20)["status"] == "final"
    balances = {net.client.get(f"{u}/v1/accounts/{bob.name}").json()["balance"]
                for u in net.urls[:VALIDATORS]}
    assert len(balances) == 1


def test_a_burst_larger_than_blocks_hold_drains_to_final_on_all(net):
    """More txs at once than the producers put in a block: finality keeps its pace (blocks stay
    small enough to be imported and voted within their slot) and every tx becomes final."""
    senders = [member_wallet(net, VALIDATORS + k) for k in range(3)]
    txs = [[w.transfer(senders[(k + 1) % 3].name, 1 + i) for i in range(2000)] for k, w in enumerate(senders)]
    before = min(finals(net, range(VALIDATORS)))
    for k, batch in enumerate(txs):
        with Client(net.urls[k]) as c:
            assert c.submit_batch(batch)["accepted"] == len(batch)
    wait_until(lambda: all(net.status(i)["mempool"] == 0 for i in range(VALIDATORS)), 90,
               "every mempool drained")
    with Client(net.urls[3]) as c:
        for batch in txs:
            for tx in batch[::250] + batch[-1:]:
                assert c.wait_final(tx.id, timeout_s=20)["status"] == "final"
    # finality keeps its pace through and after the burst (which may drain within 4 blocks)
    wait_until(lambda: min(finals(net, range(VALIDATORS))) > before + 4, 10, "finality going on")
    assert_same_final_chain(net, range(VALIDATORS), min(finals(net, range(VALIDATORS))))


def test_kill9_one_validator_finality_continues_and_it_catches_up_and_votes(net):
    net.kill9(3)
    start = max(finals(net, range(3)))
    wait_until(lambda: min(finals(net, range(3))) >= start + 6, 30, "finality with 3 of 4")
    net.start(3)
    wait_until(lambda: final_height(net, 3) >= min(finals(net, range(3))), 30, "restarted node caught up")
    name = net.status(3)["producer"]
    target = final_height(net, 0) + 4

    def voted_again():
        h = final_height(net, 0)
        return h >= target and any(v["voter"] == name for v in block(net, 0, h)["votes"])
    wait_until(voted_again, 30, "the restarted validator's votes in final blocks")
    assert_same_final_chain(net, range(VALIDATORS), min(finals(net, range(VALIDATORS))))
    assert evidence(net, range(VALIDATORS)) == []


def test_two_of_four_down_stops_finality_then_it_resumes(net):
    net.stop(2)
    net.stop(3)
    time.sleep(1.0)  # what was notarized before the stop may still finalize
    stalled = max(finals(net, range(2)))
    time.sleep(3.0)
    assert max(finals(net, range(2))) == stalled, "finality without a 2/3+1 quorum"
    net.start_all([2, 3])
    wait_until(lambda: min(finals(net, range(VALIDATORS))) >= stalled + 4, 40, "finality resumed")
    assert_same_final_chain(net, range(VALIDATORS), stalled + 4)
    assert evidence(net, range(VALIDATORS)) == []


def test_full_node_started_late_syncs_from_genesis(net):
    target = final_height(net, 0)
    net.start(FULL)
    wait_until(lambda: final_height(net, FULL) >= target, 30, "full node synced")
    assert_same_final_chain(net, [0, FULL], target)
    status = net.status(FULL)
    assert status["producer"] is None and status["sync_target"] is None
    log = (net.dir / f"node-{FULL}" / "node.log").read_text()
    assert "catching up from final height 0" in log and "synced final height 0 -> " in log, log[-2000:]
    # the finality-time histogram holds only blocks finalized live, not the catch-up's
    live = scrape(net.urls[FULL])[("chain_block_final_seconds_count", ())]
    assert live <= final_height(net, FULL) - target + SYNC_LAG, (live, target)


def test_a_rules_upgrade_changes_awards_from_its_effective_height_on_every_node(net):
    """Three of the four producers approve a rules contract that pays 0.777 content at once for a
    post: a post final before its effective height earned nothing, one after it earns 777, on
    every validator and the full node, which all run the same new code."""
    if net.status(FULL) is None:
        net.start(FULL)
    everyone = range(VALIDATORS + 1)
    producers = [member_wallet(net, i) for i in range(VALIDATORS)]
    early, late = member_wallet(net, VALIDATORS + 2), member_wallet(net, VALIDATORS + 3)
    source = default_rules_source().replace(
        "    member = _member(author, now)\n",
        "    member = _member(author, now)\n    host.award(author, \"content\", 777)\n", 1)
    assert "777" in source
    with Client(net.urls[0]) as c:
        assert c.submit(early.post("before", "before", "text"), wait="final", timeout_s=20)["status"] == "final"
        effective = c.status()["head"]["height"] + 12
        proposal = producers[0].propose_upgrade(compile_source(source), effective)
        assert c.submit(proposal, wait="final", timeout_s=20)["status"] == "final"
        approvals = [p.approve_proposal(proposal.id) for p in producers[1:3]]
        assert c.submit_batch(approvals)["accepted"] == 2
        assert all(c.wait_final(a.id, timeout_s=20)["status"] == "final" for a in approvals)
    wait_until(lambda: min(finals(net, everyone)) >= effective, 30, f"final height {effective} on all")
    with Client(net.urls[1]) as c:
        r = c.submit(late.post("after", "after", "text"), wait="final", timeout_s=20)
        assert r["status"] == "final" and r["height"] >= effective
    wait_until(lambda: min(finals(net, everyone)) >= r["height"], 30, "the late post final on all")
    new_hash = code_hash(compile_source(source)).hex()
    for i in everyone:
        with Client(net.urls[i]) as c:
            assert c.rules()["code_hash"] == new_hash
            assert c.account(early.name)["assets"]["content"] == 0
            assert c.account(late.name)["assets"]["content"] == 777


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM])
def test_the_testnet_command_stops_its_validators_on_ctrl_c_or_kill(tmp_path, how):
    """`python cli.py testnet` started as an operator would; Ctrl-C (SIGINT) or a plain `kill`
    (SIGTERM, as a supervisor sends) stops every validator it started, not only itself."""
    base = free_port_range(2)
    cmd = [sys.executable, str(testnet.ROOT / "cli.py"), "testnet", "--nodes", "2",
           "--dir", str(tmp_path / "tn"), "--base-port", str(base)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=testnet.ROOT)
    urls = [f"http://127.0.0.1:{base + i}/v1/status" for i in range(2)]

    def answering() -> list[bool]:
        out = []
        for url in urls:
            try:
                out.append(httpx.get(url, timeout=1).status_code == 200)
            except httpx.HTTPError:
                out.append(False)
        return out
    try:
        wait_until(lambda: all(answering()), 30, "both validators up")
        proc.send_signal(how)
        assert proc.wait(timeout=20) is not None
        wait_until(lambda: not any(answering()), 10, "both validators stopped")
    finally:
        if proc.poll() is None:
            proc.kill()
        for line in subprocess.run(["pgrep", "-f", str(tmp_path / "tn")], capture_output=True,
                                   text=True).stdout.split():
            os.kill(int(line), signal.SIGKILL)  # whatever a failure left behind


def test_a_node_that_cannot_start_takes_down_the_ones_started_with_it(tmp_path):
    """If one node of `start_all` never answers (here its port is taken), the nodes that call
    started are stopped before it raises: a test fixture or the testnet command that fails while
    starting leaves no validator running with nobody to stop it."""
    base = free_port_range(2)
    prepare(tmp_path, 2, base, block_interval_ms=400)
    tn = testnet.Testnet(tmp_path)
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", base + 1))
            taken.listen()
            with pytest.raises(RuntimeError, match="node 1 exited"):
                tn.start_all()
        assert all(proc.poll() is not None for proc in tn.procs)
    finally:
        tn.stop_all()
