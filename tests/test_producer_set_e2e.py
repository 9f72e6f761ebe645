"""No small stake halts or captures the chain, with real processes: on a 4-validator testnet,
members with dust stake register and approve themselves (one running a node, one not), and a
founder elects a candidate that runs no node. Finality never stops for more than a few slots,
the genesis producers stay in office, and the nodeless producer is jailed. A validator that goes
silent is jailed while the other three finalize, and returns by itself once its node is back."""
import json
import time

from core.crypto import Keypair
from core.wallet import Client, Wallet
from node import testnet
from node.testnet import CHAIN_ID, free_port_range, prepare
from tests.test_multinode import assert_same_final_chain, finals, wait_all_in_office, wait_until

VALIDATORS = 4
SLOT_MS = 300
EPOCH = 8
# the longest finality may stand still: the nodeless producer's empty slot, its neighbours'
# votes, and scheduling noise of a 2-core machine running five node processes
MAX_FINALITY_GAP_SLOTS = 12


def wallets(net_dir) -> list[Wallet]:
    members = json.loads((net_dir / "dev-keys.json").read_text())["members"]
    return [Wallet(m["name"], Keypair(bytes.fromhex(m["seed"])), CHAIN_ID) for m in members]


def watch_finality(net, seconds: float) -> tuple[float, set[str]]:
    """Poll node 0 for `seconds`: the longest time (in slots) its final height stood still, and
    every producer it showed in a schedule meanwhile."""
    longest, seen = 0.0, set()
    last_height, since = None, time.time()
    deadline = time.time() + seconds
    while time.time() < deadline:
        st = net.status(0)
        if st is not None:
            seen.update(st["schedule"])
            if st["final"]["height"] != last_height:
                last_height, since = st["final"]["height"], time.time()
            longest = max(longest, (time.time() - since) * 1000 / SLOT_MS)
        time.sleep(0.1)
    return longest, seen


def test_dust_candidates_and_a_nodeless_elected_one_never_stop_finality(tmp_path):
    prepare(tmp_path, VALIDATORS, free_port_range(VALIDATORS + 1), block_interval_ms=SLOT_MS,
            standby=1, epoch_slots=EPOCH)
    net = testnet.Testnet(tmp_path)
    w = wallets(tmp_path)
    founders = [x.name for x in w[:VALIDATORS]]
    with_node, without_node, ghost = w[VALIDATORS], w[VALIDATORS + 1], w[VALIDATORS + 2]
    everyone = range(VALIDATORS + 1)
    try:
        net.start_all()
        with Client(net.urls[0]) as c:
            stake = c.account(with_node.name)["stake"]
            min_approval = c.params()["min_producer_approval"]
            assert stake >= min_approval  # so the dust is their own doing
            registrations = [m.register_producer(m.public_key, url) for m, url in (
                (with_node, net.urls[VALIDATORS]), (without_node, "http://127.0.0.1:9"),
                (ghost, "http://127.0.0.1:9"))]  # ghost: a candidate whose node does not exist
            # the dust members keep 1 milli-CP of stake and approve themselves; a founder elects
            # the ghost (the README walkthrough's frank)
            approvals = [with_node.unstake(stake - 1), without_node.unstake(stake - 1),
                         with_node.approve_producer(with_node.name),
                         without_node.approve_producer(without_node.name), w[0].approve_producer(ghost.name)]
            for batch in (registrations, approvals):
                assert c.submit_batch(batch)["accepted"] == len(batch)
                assert all(c.wait_final(tx.id, timeout_s=20)["status"] == "final" for tx in batch)
            approvals = {p["name"]: p["approval"] for p in c.producers()["producers"]}
            assert approvals[with_node.name] == approvals[without_node.name] == 1
            assert approvals[ghost.name] == stake
        longest, seen = watch_finality(net, 12 * EPOCH * SLOT_MS / 1000)
        print(f"\nunder attack: finality stood still for at most {longest:.1f} slots")
        assert longest <= MAX_FINALITY_GAP_SLOTS, f"finality stood still for {longest:.0f} slots"
        assert with_node.name not in seen and without_node.name not in seen
        assert ghost.name in seen  # elected as a fifth producer beside the four, never instead of them
        wait_until(lambda: ghost.name in net.client.get(f"{net.urls[0]}/v1/producers").json()["jailed"],
                   20, "the nodeless producer jailed")
        wait_until(lambda: sorted(net.status(0)["schedule"]) == sorted(founders), 20,
                   "the schedule back to the genesis producers")
        top = min(finals(net, everyone))
        wait_until(lambda: min(finals(net, everyone)) >= top + 4, 20, "finality on every node")
        assert_same_final_chain(net, everyone, top + 4)
    finally:
        net.stop_all()


def test_a_silent_producer_is_jailed_and_returns_when_its_node_is_back(tmp_path):
    prepare(tmp_path, VALIDATORS, free_port_range(VALIDATORS), block_interval_ms=SLOT_MS, epoch_slots=EPOCH)
    net = testnet.Testnet(tmp_path)
    silent = wallets(tmp_path)[VALIDATORS - 1].name
    others = range(VALIDATORS - 1)
    try:
        net.start_all()
        wait_until(lambda: min(finals(net, range(VALIDATORS))) >= 2, 30, "finality on all")
        wait_all_in_office(net, [w.name for w in wallets(tmp_path)[:VALIDATORS]], EPOCH, SLOT_MS)
        net.kill9(VALIDATORS - 1)
        killed_at, killed_slot = max(finals(net, others)), net.status(0)["slot"]
        # judged on a whole epoch without its blocks, out from the election two epochs later
        wait_until(lambda: silent not in net.status(0)["schedule"], 8 * EPOCH * SLOT_MS / 1000,
                   "the silent producer out of the schedule")
        print(f"\nsilent producer out of the schedule {net.status(0)['slot'] - killed_slot} slots "
              f"({EPOCH}-slot epochs) after its node was killed")
        assert silent in net.client.get(f"{net.urls[0]}/v1/producers").json()["jailed"]
        assert min(finals(net, others)) > killed_at + EPOCH  # the other three finalized meanwhile
        net.start(VALIDATORS - 1)
        restarted_slot = net.status(0)["slot"]
        # it catches up, sees itself jailed and sends `unjail`; the next election seats it again
        wait_until(lambda: silent in net.status(0)["schedule"], 10 * EPOCH * SLOT_MS / 1000 + 20,
                   "the producer back in the schedule")
        print(f"back in the schedule {net.status(0)['slot'] - restarted_slot} slots after its node restarted")
        assert silent not in net.client.get(f"{net.urls[0]}/v1/producers").json()["jailed"]
        start = min(finals(net, range(VALIDATORS)))

        def its_block_final():
            top = min(finals(net, range(VALIDATORS)))
            return any(net.client.get(f"{net.urls[0]}/v1/blocks/{h}").json()["header"]["producer"] == silent
                       for h in range(start + 1, top + 1))
        wait_until(its_block_final, 20, "a final block of the returned producer")
        assert_same_final_chain(net, range(VALIDATORS), min(finals(net, range(VALIDATORS))))
    finally:
        net.stop_all()
