"""DPoS election with real processes: a member registers as producer, members approve it with
their stake, and from the epoch the election takes effect its own node (started beforehand with
its key, peered with the validators) produces blocks that become final on every node. And the
reverse: a producer caught signing two blocks for one slot is reported by the node that saw them
and left out of the next election."""
import json

from click.testing import CliRunner

from cli import cli
from core.crypto import Keypair
from core.types import ZERO_HASH, Block, BlockHeader, Hash
from core.wallet import Client, Wallet
from node import testnet
from node.testnet import CHAIN_ID, free_port_range, prepare
from p2p.envelope import seal
from tests.test_multinode import assert_same_final_chain, block, evidence, finals, wait_all_in_office, wait_until

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



def forge_sibling(head: dict, key: Keypair) -> bytes:
    """A second block for the head's slot, signed by the head's producer: no txs and a made-up
    state root (a node keeps the pair before it applies the block, and then refuses the block)."""
    h = head["header"]
    header = BlockHeader(h["chain_id"], h["height"], Hash(bytes.fromhex(h["prev_id"])), h["slot"],
                         h["timestamp_ms"], h["producer"], ZERO_HASH, Hash(bytes([9]) * 32), h["final_height"])
    return Block.create(key, header, ()).encode()


def test_a_node_reports_a_double_proposal_and_the_producer_leaves_the_next_schedule(tmp_path):
    """One validator's key signs a second block for a slot it already filled; the node handed
    that block reports it on chain by itself, the report is final and shown on every node, and
    from the next election on the other three produce and finalize alone."""
    validators = 4
    prepare(tmp_path, validators, free_port_range(validators), block_interval_ms=300, epoch_slots=8)
    net = testnet.Testnet(tmp_path)
    members = json.loads((tmp_path / "dev-keys.json").read_text())["members"]
    wallets = [Wallet(m["name"], Keypair(bytes.fromhex(m["seed"])), CHAIN_ID) for m in members]
    cheat, witness = wallets[validators - 1], 0
    everyone = range(validators)
    try:
        net.start_all()
        wait_until(lambda: min(finals(net, everyone)) >= 2, 30, "finality on all")
        wait_all_in_office(net, [w.name for w in wallets[:validators]], 8, 300)

        def cheat_caught() -> bool:
            head = block(net, witness, "head")
            if head["header"]["producer"] == cheat.name:
                net.client.post(f"{net.urls[witness]}/p2p/block", headers={"content-type": "application/msgpack"},
                                content=seal(cheat.key, CHAIN_ID, "block", cheat.name, forge_sibling(head, cheat.key)))
            return evidence(net, [witness]) != []
        wait_until(cheat_caught, 30, "the witness holding the two blocks as evidence")
        [pair] = evidence(net, [witness])
        assert (pair["kind"], pair["producer"]) == ("double_proposal", cheat.name)

        def recorded_everywhere() -> bool:
            return all(p["equivocation"] is not None for i in everyone
                       for p in net.client.get(f"{net.urls[i]}/v1/producers").json()["producers"]
                       if p["name"] == cheat.name)
        wait_until(recorded_everywhere, 30, "the witness's report final on every node")
        record = next(p["equivocation"] for p in net.client.get(f"{net.urls[1]}/v1/producers").json()["producers"]
                      if p["name"] == cheat.name)
        assert (record["reporter"], record["slot"], record["first"], record["second"]) == \
            (wallets[witness].name, pair["slot"], pair["first"], pair["second"])
        # a second report, from the CLI, is checked in full and refused as a repeat
        result = CliRunner().invoke(cli, ["tx", "report-equivocation", cheat.name, "--node", net.urls[witness],
                                          "--dev-keys", str(tmp_path / "dev-keys.json"), "--dev", wallets[validators].name])
        assert result.exit_code == 1 and "already_reported" in result.output, result.output

        wait_until(lambda: cheat.name not in net.status(0)["schedule"], 30, "the producer out of the schedule")
        assert len(net.status(0)["schedule"]) == validators - 1
        top = min(finals(net, everyone))
        wait_until(lambda: min(finals(net, everyone)) >= top + 6, 30, "finality by the other three")
        assert_same_final_chain(net, everyone, top + 6)
        assert all(block(net, 0, h)["header"]["producer"] != cheat.name for h in range(top + 4, top + 7))
    finally:
        net.stop_all()
