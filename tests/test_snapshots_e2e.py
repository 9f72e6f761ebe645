"""Snapshots and pruning on a real 4-validator testnet (separate processes on loopback), with a
snapshot every 20 blocks: every validator computes the same full-state commitment and a final block
attests it; a new node started from a snapshot file (checked against that block and the chain's
peers) follows the chain without replaying it; a forged or unanchored file is refused and writes
nothing; a pruning node keeps its recent blocks only and answers 410 `pruned` for older ones."""
import json
import os
import subprocess
import sys

import pytest

from node import testnet
from node.testnet import free_port_range, prepare
from tests.conftest import wait_until
from tests.test_e2e_single import ROOT
from tests.test_multinode import finals

VALIDATORS = 4
NEW = VALIDATORS  # the full node started from a snapshot
PRUNING = 3  # a validator with retain_blocks
INTERVAL = 20
RETAIN = 100


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    d = tmp_path_factory.mktemp("snapnet")
    prepare(d, VALIDATORS, free_port_range(VALIDATORS + 1), block_interval_ms=200, full_nodes=1)
    genesis = json.loads((d / "genesis.json").read_text())
    genesis["params"]["snapshot_interval"] = INTERVAL
    (d / "genesis.json").write_text(json.dumps(genesis, indent=2))
    with open(d / f"node-{PRUNING}" / "config.toml", "a") as f:
        f.write(f"retain_blocks = {RETAIN}\n")
    tn = testnet.Testnet(d)
    tn.start_all(range(VALIDATORS))
    yield tn
    tn.stop_all()


def cli(*args, check=True) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, os.path.join(ROOT, "cli.py"), *args], capture_output=True, text=True,
                       timeout=120)
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def snapshots(net, i) -> list[dict]:
    return net.client.get(f"{net.urls[i]}/v1/snapshots").json()["snapshots"]


def attested(net, i) -> list[dict]:
    return [s for s in snapshots(net, i) if s["attested_by"] is not None]


def test_every_validator_commits_to_the_same_state_and_a_final_block_attests_it(net):
    wait_until(lambda: attested(net, 0), 60, "an attested snapshot on node 0")
    snap = attested(net, 0)[0]
    assert snap["height"] % INTERVAL == 0 and snap["attested_by"] > snap["height"]
    block = net.client.get(f"{net.urls[0]}/v1/blocks/{snap['attested_by']}").json()
    assert block["final"] and block["header"]["snapshot_height"] == snap["height"]
    assert block["header"]["snapshot_root"] == snap["root"]
    for i in range(1, VALIDATORS):  # each computed it on its own: the same commitment
        wait_until(lambda: any(s["height"] == snap["height"] for s in snapshots(net, i)), 30,
                   f"snapshot {snap['height']} on node {i}")
        theirs = next(s for s in snapshots(net, i) if s["height"] == snap["height"])
        assert theirs["root"] == snap["root"]


def test_a_new_node_starts_from_a_snapshot_and_follows_the_chain(net, tmp_path):
    wait_until(lambda: attested(net, 0), 60, "an attested snapshot")
    out = tmp_path / "snap.bin"
    created = json.loads(cli("node", "snapshot", "create", "--node", net.urls[0], "--out", str(out)).stdout)
    data_dir = net.dir / f"node-{NEW}" / "data"
    restored = json.loads(cli("node", "snapshot", "restore", str(out), "--config",
                              str(net.dir / f"node-{NEW}" / "config.toml")).stdout)
    assert restored["height"] == created["height"] and restored["data_dir"] == str(data_dir)
    net.start(NEW)
    top = max(finals(net, range(VALIDATORS)))
    wait_until(lambda: finals(net, [NEW])[0] >= top, 40, "the restored node caught up")
    height = finals(net, [NEW])[0]
    ours = net.client.get(f"{net.urls[NEW]}/v1/blocks/{height}").json()
    theirs = net.client.get(f"{net.urls[0]}/v1/blocks/{height}").json()
    assert ours["id"] == theirs["id"] and ours["header"]["state_root"] == theirs["header"]["state_root"]
    for name in ("member-01", "member-05"):  # the state itself, not only the roots
        assert (net.client.get(f"{net.urls[NEW]}/v1/accounts/{name}").json()
                == net.client.get(f"{net.urls[0]}/v1/accounts/{name}").json())
    # it never replayed the blocks before the snapshot: it does not have them
    r = net.client.get(f"{net.urls[NEW]}/v1/blocks/1")
    assert r.status_code == 410 and r.json()["error"]["code"] == "pruned"


def test_a_forged_or_unanchored_snapshot_is_refused_and_writes_nothing(net, tmp_path):
    wait_until(lambda: attested(net, 0), 60, "an attested snapshot")
    good = tmp_path / "good.bin"
    cli("node", "snapshot", "create", "--node", net.urls[0], "--out", str(good))
    genesis = str(net.dir / "genesis.json")
    raw = bytearray(good.read_bytes())
    raw[-10] ^= 1  # inside the last chunk
    forged = tmp_path / "forged.bin"
    forged.write_bytes(bytes(raw))
    target = tmp_path / "data"
    r = cli("node", "snapshot", "restore", str(forged), "--data-dir", str(target), "--genesis", genesis,
            "--peer", net.urls[1], check=False)
    assert r.returncode != 0 and "does not match its hash" in r.stderr, r.stderr
    assert not target.exists()
    r = cli("node", "snapshot", "restore", str(good), "--data-dir", str(target), "--genesis", genesis,
            "--trust-block-id", "00" * 32, check=False)
    assert r.returncode != 0 and "the anchor differs" in r.stderr, r.stderr
    assert not target.exists()
    r = cli("node", "snapshot", "restore", str(good), "--data-dir", str(target), "--genesis", genesis,
            check=False)
    assert r.returncode != 0 and "no anchor" in r.stderr, r.stderr
    assert not target.exists()


def test_a_pruning_node_keeps_recent_blocks_and_says_410_for_older(net):
    wait_until(lambda: finals(net, [PRUNING])[0] > RETAIN + 3 * INTERVAL, 90, "enough blocks to prune")
    wait_until(lambda: net.client.get(f"{net.urls[PRUNING]}/v1/blocks/1").status_code == 410, 20,
               "block 1 pruned")
    final = finals(net, [PRUNING])[0]
    assert net.client.get(f"{net.urls[PRUNING]}/v1/blocks/{final - RETAIN + 5}").json()["final"]
    page = net.client.get(f"{net.urls[PRUNING]}/p2p/blocks", params={"from": 1, "count": 4})
    assert page.status_code == 410 and page.json()["error"]["code"] == "pruned"
    assert net.client.get(f"{net.urls[0]}/v1/blocks/1").json()["final"]  # archive nodes keep all
