"""A seeded run of mixed faults on 4 real validator processes (links through tests/netsplit.py):
partitions of every shape, SIGSTOP pauses and kill -9 with restart, one after another. Throughout,
no node's final height ever goes down; at the end, healed, every node finalizes again and all
agree on every final block and state root, with no equivocation evidence (nobody equivocated)."""
import random
import signal
import time

import pytest

from tests.netsplit import start_linked_testnet
from tests.test_multinode import assert_same_final_chain, evidence, final_height, finals, wait_until

VALIDATORS = 4
EVERYONE = range(VALIDATORS)
SEED = 11
FAULTS = 8
FAULT_S = 2.0


@pytest.fixture
def cluster(tmp_path):
    net, links = start_linked_testnet(tmp_path, VALIDATORS)
    yield net, links
    for proc in net.procs:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
    net.stop_all()
    links.close()


def test_mixed_faults_never_lower_a_final_height_and_leave_one_chain(cluster):
    net, links = cluster
    rng = random.Random(SEED)
    wait_until(lambda: min(finals(net, EVERYONE)) >= 3, 30, "finality on all")
    highest = {i: -1 for i in EVERYONE}

    def observe() -> None:
        for i in EVERYONE:
            h = final_height(net, i)
            if h >= 0:  # -1: down or paused
                assert h >= highest[i], f"node {i}'s final height went from {highest[i]} to {h}"
                highest[i] = h

    def hold(seconds: float) -> None:
        deadline = time.time() + seconds
        while time.time() < deadline:
            observe()
            time.sleep(0.25)

    done = []
    for _ in range(FAULTS):
        kind, victim = rng.choice(["split", "pause", "kill"]), rng.randrange(VALIDATORS)
        if kind == "split":
            side = set(rng.sample(range(VALIDATORS), rng.choice([1, 2])))
            links.partition(sorted(side), sorted(set(EVERYONE) - side))
            done.append(f"split {sorted(side)}")
            hold(FAULT_S)
            links.heal()
        elif kind == "pause":
            net.procs[victim].send_signal(signal.SIGSTOP)
            done.append(f"pause {victim}")
            hold(FAULT_S)
            net.procs[victim].send_signal(signal.SIGCONT)
        else:
            net.kill9(victim)
            done.append(f"kill {victim}")
            hold(FAULT_S / 2)
            net.start(victim)
        hold(1.0)
    top = max(highest.values())
    wait_until(lambda: min(finals(net, EVERYONE)) >= top + 3, 60,
               f"finality on every node after the faults ({', '.join(done)})")
    observe()
    assert_same_final_chain(net, EVERYONE, top + 3)
    assert evidence(net, EVERYONE) == []
