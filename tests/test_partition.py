"""Partitions and pauses of real validator processes (4 validators; every link between them through
its own forwarder, tests/netsplit.py): a validator cut off alone stalls while the other three
finalize, and catches up when the partition heals; an even split stops finality on both sides
without any conflicting final block, and finality resumes when it heals; a validator paused with
SIGSTOP holds up nobody and catches up when resumed."""
import signal
import time

import pytest

from tests.netsplit import start_linked_testnet
from tests.test_multinode import assert_same_final_chain, evidence, finals, wait_until

VALIDATORS = 4
EVERYONE = range(VALIDATORS)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """(testnet, links): node i's peers are reached through links.url(i, j)."""
    net, links = start_linked_testnet(tmp_path_factory.mktemp("partition"), VALIDATORS)
    wait_until(lambda: min(finals(net, EVERYONE)) >= 3, 30, "finality on all")
    yield net, links
    net.stop_all()
    links.close()


def test_a_validator_cut_off_alone_stalls_the_others_go_on_and_it_catches_up(split):
    net, links = split
    links.partition([0, 1, 2], [3])
    try:
        time.sleep(1.0)  # what it had notarized before the cut may still finalize
        alone = finals(net, [3])[0]
        top = min(finals(net, [0, 1, 2]))
        wait_until(lambda: min(finals(net, [0, 1, 2])) >= top + 5, 30, "finality among the three")
        assert finals(net, [3])[0] == alone, "one validator of four finalized alone"
    finally:
        links.heal()
    target = min(finals(net, [0, 1, 2]))
    wait_until(lambda: finals(net, [3])[0] >= target, 30, "the cut-off validator caught up")
    assert_same_final_chain(net, EVERYONE, target)


def test_an_even_split_stops_finality_on_both_sides_until_it_heals(split):
    net, links = split
    links.partition([0, 1], [2, 3])
    try:
        time.sleep(1.0)
        stalled = max(finals(net, EVERYONE))
        time.sleep(3.0)  # both sides keep producing blocks; neither has the 3 votes to notarize one
        # (a node behind its side's partner may still catch up to it, with the votes of before)
        assert max(finals(net, EVERYONE)) == stalled, "finality without a 2/3+1 quorum"
    finally:
        links.heal()
    wait_until(lambda: min(finals(net, EVERYONE)) >= stalled + 4, 40, "finality resumed")
    assert_same_final_chain(net, EVERYONE, stalled + 4)
    assert evidence(net, EVERYONE) == []


def test_a_paused_validator_holds_up_nobody_and_catches_up_when_resumed(split):
    net, _ = split
    net.procs[2].send_signal(signal.SIGSTOP)
    try:
        top = min(finals(net, [0, 1, 3]))
        # its peers' requests to it hang until they time out: each peer has its own lanes
        wait_until(lambda: min(finals(net, [0, 1, 3])) >= top + 5, 30, "finality without the paused one")
    finally:
        net.procs[2].send_signal(signal.SIGCONT)
    target = min(finals(net, [0, 1, 3]))
    wait_until(lambda: finals(net, [2])[0] >= target, 30, "the resumed validator caught up")
    assert_same_final_chain(net, EVERYONE, target)
    assert evidence(net, EVERYONE) == []
