"""A halt is visible. On a real node process whose chain's only producer has no node (it runs
without her key file): `/v1/status` names her as the current slot's producer and says `stalled`,
`slots_since_block` grows, her empty slots are counted at once (`/v1/status`, `/metrics`),
`chain_producing` is 0, a warning is logged, and a `tx` waiting for its status exits 4. In process:
the status shows the current slot's epoch schedule, not the tip's; a stall is logged once, and its
end once; the slots judged are those that ended."""
import json
import logging
import os
import subprocess
import sys
import time

import httpx
import pytest
from click.testing import CliRunner

from cli import cli
from core import codec
from core.crypto import Keypair
from core.genesis import ChainParams, Genesis, Member, Producer
from core.wallet import Client
from node.config import NodeConfig
from node.keystore import write_key_file
from node.health import STALL_MARGIN_SLOTS
from node.service import NodeService
from state import schema
from state.kv import MemoryKV
from tests.conftest import make_genesis, node_keypair
from tests.test_e2e_single import ROOT, free_port, scrape

CHAIN = "halt-chain"
KEYS = {n: Keypair(bytes([i + 11]) * 32) for i, n in enumerate(["alice", "bob"])}
SLOT_MS = 100


@pytest.fixture(scope="module")
def orphaned(tmp_path_factory):
    """A node of a chain whose only producer, alice, has no node: it runs without a key file."""
    tmp = tmp_path_factory.mktemp("halt")
    genesis = Genesis(chain_id=CHAIN, genesis_time_ms=time.time_ns() // 1_000_000 - 1_000,
                      params=ChainParams(block_interval_ms=SLOT_MS),
                      members=tuple(Member(n, k.public_key, 10**6, 10**5) for n, k in KEYS.items()),
                      producers=(Producer("alice", KEYS["alice"].public_key, ""),))
    (tmp / "genesis.json").write_text(json.dumps(genesis.to_json()))
    write_key_file(tmp / "bob.json", "bob", KEYS["bob"])
    url = f"http://127.0.0.1:{free_port()}"
    log_path = tmp / "node.log"
    command = [sys.executable, os.path.join(ROOT, "cli.py"), "node", "run", "--data-dir",
               str(tmp / "data"), "--port", url.rsplit(":", 1)[1], "--genesis",
               str(tmp / "genesis.json"), "--peer", "http://127.0.0.1:9"]  # alice's, down; no --key-file
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 30
        while True:
            assert proc.poll() is None and time.time() < deadline, log_path.read_text()
            try:
                if httpx.get(url + "/v1/status", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url, tmp, log_path
    finally:
        proc.terminate()
        proc.wait(10)


def wait_stalled(url: str) -> dict:
    deadline = time.time() + 15
    while True:
        status = Client(url).status()
        if status["stalled"] or time.time() > deadline:
            return status
        time.sleep(0.1)


def test_a_chain_whose_producer_is_absent_shows_stalled_and_counts_her_empty_slots(orphaned):
    url, _, log_path = orphaned
    status = wait_stalled(url)
    assert status["stalled"] is True, status
    assert status["producer"] is None  # this node's: it has no key
    assert (status["slot_producer"], status["schedule"]) == ("alice", ["alice"])
    assert status["head"]["height"] == status["final"]["height"] == 0
    assert status["slots_since_block"] == status["slots_since_final"] == status["slot"]
    seen = status["empty_slots_seen"]["alice"]
    assert seen >= 3  # the slots that ended since the node started (node.health)
    time.sleep(5 * SLOT_MS / 1000)
    later = Client(url).status()
    assert later["slots_since_block"] >= status["slots_since_block"] + 3
    assert later["empty_slots_seen"]["alice"] >= seen + 3
    metrics = scrape(url)
    assert metrics[("chain_producing", ())] == 0 and metrics[("chain_stalled", ())] == 1
    assert metrics[("chain_slot_producer_info", (("producer", "alice"),))] == 1
    assert metrics[("chain_scheduled", ())] == 0
    assert metrics[("chain_slots_since_block", ())] >= later["slots_since_block"]
    empty = metrics[("chain_empty_slots_total", (("producer", "alice"),))]
    assert empty >= later["empty_slots_seen"]["alice"]
    # the chain's own count waits for a later final block, which never comes
    assert metrics.get(("chain_missed_slots_total", (("producer", "alice"),)), 0) == 0
    stalls = [line for line in log_path.read_text().splitlines() if "chain stalled" in line]
    assert len(stalls) == 1 and "WARNING" in stalls[0] and "producer is alice" in stalls[0], stalls


@pytest.mark.parametrize("wait", ["final", "included"])
def test_a_tx_that_does_not_reach_its_status_in_time_exits_4(orphaned, wait):
    url, tmp, _ = orphaned
    r = CliRunner().invoke(cli, ["tx", "transfer", "--key-file", str(tmp / "bob.json"), "--to", "alice",
                                 "--amount", "1", "--chain-id", CHAIN, "--node", url, "--wait", wait,
                                 "--timeout", "0.5"])
    assert r.exit_code == 4, r.output
    assert f"not {wait} after 0.5s (still pending)" in r.output and "query status" in r.output
    assert json.loads(r.output[:r.output.index("}") + 1])["status"] == "pending"
    if wait == "final":  # following it later with `query tx --wait` says the same
        tx_id = json.loads(r.output[:r.output.index("}") + 1])["id"]
        q = CliRunner().invoke(cli, ["query", "tx", tx_id, "--wait", "0.5", "--node", url])
        assert q.exit_code == 4 and "not final after 0.5s (still pending)" in q.output, q.output


# ------------------------------------------------------------------------------ in process
def alice_node(tmp_path, kv=None, params=None) -> NodeService:
    (tmp_path / "genesis.json").write_text(json.dumps(make_genesis(params).to_json()))
    write_key_file(tmp_path / "key.json", "alice", node_keypair("alice"))
    config = NodeConfig(genesis=str(tmp_path / "genesis.json"), key_file=str(tmp_path / "key.json"))
    return NodeService(config, kv=kv or MemoryKV())


def test_status_shows_the_schedule_of_the_current_slot_not_of_the_tip(tmp_path):
    """An election recorded for epoch 1 (as a commit records it) elected bob; the tip is still
    the genesis block of epoch 0, whose schedule was alice's: the current slot is bob's."""
    kv = MemoryKV()
    kv.write({schema.schedule_key(1): codec.pack_flat(["bob"])})
    service = alice_node(tmp_path, kv)
    assert service.chain.schedule() == ["alice"]  # the tip's
    status = service.status()
    assert (status["producer"], status["slot_producer"], status["schedule"]) == ("alice", "bob", ["bob"])
    assert status["stalled"] is False  # not for the first slots this node watches


def test_a_stall_is_logged_once_and_its_end_once_and_ended_slots_are_judged(tmp_path, caplog):
    service = alice_node(tmp_path)
    health, s0 = service.health, service.health.started_slot
    threshold = len(service.chain.schedule(s0)) + STALL_MARGIN_SLOTS
    caplog.set_level(logging.INFO, logger="node")
    for slot in range(s0 + 1, s0 + threshold + 3):
        health.on_slot(slot)
    assert health.empty_slots == {"alice": threshold}  # s0+1 .. slot-2: each ended a slot ago
    assert health.liveness(s0 + threshold + 2).stalled and not health.liveness(s0 + threshold).stalled
    for slot in range(s0 + threshold + 3, s0 + threshold + 6):  # alice's node is back
        service.produce(slot)
        health.on_slot(slot + 1)
    assert service.chain.final.slot == s0 + threshold + 4
    assert health.empty_slots == {"alice": threshold + 2}  # the two slots before her first block
    assert not health.liveness(s0 + threshold + 6).stalled
    said = [(r.levelname, r.getMessage()) for r in caplog.records if "stalled" in r.getMessage()]
    assert [level for level, _ in said] == ["WARNING", "INFO"], said
    assert "chain no longer stalled" in said[1][1]
    assert service.status()["empty_slots_seen"] == {"alice": threshold + 2}


def test_slots_slept_through_or_synced_are_not_judged(tmp_path, monkeypatch):
    service = alice_node(tmp_path)
    health, s0 = service.health, service.health.started_slot
    health.on_slot(s0 + 100)  # the loop did not run for 100 slots: only the last few are judged
    assert health.empty_slots == {"alice": 4}
    monkeypatch.setattr(service.net, "sync_target", 10**6)  # catching up: the tree is behind
    health.on_slot(s0 + 110)
    assert health.empty_slots == {"alice": 4}
    assert not health.liveness(s0 + 200).stalled  # nor is a node that is catching up stalled
