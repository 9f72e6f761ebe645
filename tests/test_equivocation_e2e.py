"""A producer that signs four blocks for its slots, against a 4-validator testnet of real
processes on loopback: the validators apply two of them per slot, hold the others undecoded
(`Chain.hold_if_excess`), keep the evidence, and keep finalizing one chain.

The equivocator is this test process with validator 3's key (on a testnet a validator's node key
is also its account key): it follows the chain through `GET /p2p/blocks` into a NodeService of
its own, and in each of validator 3's slots builds three more blocks on its head, each moving a
different amount, and pushes them, signed as validator 3, to every validator. Validator 3's own
process produces its block for the slot as usual: four blocks in all."""
import asyncio
import json
import time

import httpx
import pytest

from core.crypto import Keypair
from core.genesis import load_genesis, now_ms
from core.types import Tx
from node import testnet
from node.config import NodeConfig
from node.service import NodeService
from node.testnet import CHAIN_ID, free_port_range, prepare
from p2p.envelope import seal
from p2p.gossip import Peer
from state.kv import MemoryKV
from tests.test_e2e_single import scrape
from tests.test_multinode import assert_same_final_chain, evidence, finals, wait_until

VALIDATORS = 4
EQUIVOCATOR = 3
EXTRA_BLOCKS = 3
SLOTS_ATTACKED = 2


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    d = tmp_path_factory.mktemp("equivocation")
    prepare(d, VALIDATORS, free_port_range(VALIDATORS), block_interval_ms=500)
    tn = testnet.Testnet(d)
    tn.start_all(range(VALIDATORS))
    yield tn
    tn.stop_all()


class Follower:
    """The chain as node 0 serves it (final and non-final blocks with their votes), in a node
    service of this process that neither produces nor votes."""

    def __init__(self, net):
        self.url = net.urls[0]
        self.service = NodeService(NodeConfig(genesis=str(net.dir / "genesis.json"), key_file=""),
                                   kv=MemoryKV())
        self.peer = Peer(self.url)

    def catch_up(self) -> None:
        chain = self.service.chain
        r = httpx.get(f"{self.url}/p2p/blocks", params={"from": chain.final_height + 1, "count": 256}, timeout=10)
        _, entries = self.service.net._parse(r.content, self.peer)
        asyncio.run(self.service.net._apply(entries, self.peer))


def test_an_equivocators_extra_blocks_are_held_and_the_validators_finalize_one_chain(net):
    genesis = load_genesis(str(net.dir / "genesis.json"))
    member = json.loads((net.dir / "dev-keys.json").read_text())["members"][EQUIVOCATOR]
    name, key = member["name"], Keypair(bytes.fromhex(member["seed"]))
    payee = json.loads((net.dir / "dev-keys.json").read_text())["members"][VALIDATORS]["name"]
    wait_until(lambda: min(finals(net, range(VALIDATORS))) >= 3, 30, "final height 3 on all")
    follower = Follower(net)
    follower.catch_up()
    chain = follower.service.chain
    answers: list[str] = []
    attacked = 0
    now_slot = genesis.slot_at(now_ms())
    for slot in range(now_slot + 2, now_slot + 40):
        if attacked == SLOTS_ATTACKED:
            break
        if chain.producer_for_slot(slot) != name:
            continue
        # just before its own node builds the slot's block (a tenth of a slot early), build three
        # more on the same head
        time.sleep(max(0.0, (genesis.slot_start_ms(slot) - 150 - now_ms()) / 1000))
        follower.catch_up()
        if chain.head().slot >= slot:
            continue  # overslept (a loaded machine): this slot already has a notarized block here
        expires = genesis.slot_start_ms(slot) + 60_000
        for i in range(EXTRA_BLOCKS):
            tx = Tx.create(key, CHAIN_ID, "transfer", name, expires, {"to": payee, "amount": 1 + i}, salt=slot)
            block = chain.build_block(key, name, slot, [tx])[0]
            envelope = seal(key, CHAIN_ID, "block", name, block.encode())
            for url in net.urls[:VALIDATORS]:
                r = httpx.post(f"{url}/p2p/block", content=envelope, timeout=5)
                assert r.status_code == 202, r.text
                answers.append(r.json()["status"])
        attacked += 1
    assert attacked >= 1, "the equivocator had no slot (it may have been reported already)"
    # each validator saw four blocks of one slot, applied at most two of them and held the rest
    assert answers.count("held") >= attacked * VALIDATORS, answers
    # (the equivocator's own node adds its own block without the check: it may hold fewer)
    held = [scrape(net.urls[i])[("chain_blocks_held_total", ())] for i in range(VALIDATORS) if i != EQUIVOCATOR]
    assert all(n >= attacked for n in held), held
    assert {(e["producer"], e["kind"]) for e in evidence(net, range(VALIDATORS))} >= {(name, "double_proposal")}
    # and finality goes on, on one chain
    start = min(finals(net, range(VALIDATORS)))
    wait_until(lambda: min(finals(net, range(VALIDATORS))) >= start + 6, 40, "six more final blocks on all")
    assert_same_final_chain(net, range(VALIDATORS), start + 6)
