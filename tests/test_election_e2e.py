"""DPoS election with real processes: a member registers as producer, members approve it with
their stake, and from the epoch the election takes effect its own node (started beforehand with
its key, peered with the validators) produces blocks that become final on every node."""
import json

from core.crypto import Keypair
from core.wallet import Client, Wallet
from node import testnet
from node.testnet import CHAIN_ID, free_port_range, prepare
from tests.test_multinode import assert_same_final_chain, block, evidence, finals, wait_until

VALIDATORS = 3
CANDIDATE = VALIDATORS  # index of the standby node, and of its member in dev-keys.json


def test_an_approved_candidate_is_elected_and_its_blocks_become_final(tmp_path):
    prepare(tmp_path, VALIDATORS, free_port_range(VALIDATORS + 1), block_interval_ms=300,
            standby=1, epoch_slots=8)
    net = testnet.Testnet(tmp_path)
    members = json.loads((tmp_path / "dev-keys.json").read_text())["members"]
    wallets = [Wallet(m["name"], Keypair(bytes.fromhex(m["seed"])), CHAIN_ID) for m in members]
    candidate = wallets[CANDIDATE]
    everyone = range(VALIDATORS + 1)
    try:
        net.start_all()
        with Client(net.urls[0]) as c:
            r = c.submit(candidate.register_producer(candidate.public_key, net.urls[CANDIDATE]), wait="final")
            assert r["status"] == "final", r
            assert candidate.name not in c.status()["schedule"]
            # every member approves the genesis producers and the candidate: all four elected
            ballot = [w.approve_producer(p.name) for w in wallets for p in wallets[:VALIDATORS + 1]]
            assert c.submit_batch(ballot)["accepted"] == len(ballot)
            assert c.wait_final(ballot[-1].id, timeout_s=20)["status"] == "final"
        wait_until(lambda: candidate.name in net.status(0)["schedule"], 30, "the candidate in the schedule")

        def candidate_block_final():
            top = min(finals(net, everyone))
            return any(block(net, 0, h)["header"]["producer"] == candidate.name
                       for h in range(max(1, top - 8), top + 1))
        wait_until(candidate_block_final, 30, "a final block produced by the elected candidate")
        assert_same_final_chain(net, everyone, min(finals(net, everyone)))
        assert evidence(net, everyone) == []
    finally:
        net.stop_all()
