"""Failures are loud (a full disk, in real processes: tests/test_full_disk.py). In process, with a
fault injected explicitly into one method of a real service: one failed slot is logged and the next slots produce; our own broken invariant stops
the producer at once; only the same failure in a row counts; a background task that dies is
logged and stops the node; a sync round that fails is logged and the next goes on."""
import asyncio
import json
import logging
import time

import p2p.gossip
from core.errors import InvariantBroken
from core.genesis import ChainParams, Genesis, Member, Producer
from node.config import NodeConfig
from node.keystore import write_key_file
from node.health import EXIT_FATAL, MAX_REPEATED_FAILURES
from node.service import NodeService
from state.kv import MemoryKV
from tests.conftest import BALANCE, CHAIN_ID, GENESIS_MS, MEMBERS, STAKE, keypair, node_keypair
from tests.test_e2e_single import free_port

SLOT_MS = 50
SLOT_S = SLOT_MS / 1000


def alice_node(tmp_path, peers=(), producers=("alice",)) -> NodeService:
    """alice's producing node of a chain with short slots, on a MemoryKV."""
    genesis = Genesis(chain_id=CHAIN_ID, genesis_time_ms=GENESIS_MS,
                      params=ChainParams(block_interval_ms=SLOT_MS),
                      members=tuple(Member(n, keypair(n).public_key, BALANCE, STAKE) for n in MEMBERS),
                      producers=tuple(Producer(n, node_keypair(n).public_key, "") for n in producers))
    (tmp_path / "genesis.json").write_text(json.dumps(genesis.to_json()))
    write_key_file(tmp_path / "key.json", "alice", node_keypair("alice"))
    config = NodeConfig(genesis=str(tmp_path / "genesis.json"), key_file=str(tmp_path / "key.json"),
                        peers=tuple(peers))
    return NodeService(config, kv=MemoryKV())


def inject(obj, method: str, exc: Exception, times: int | None = None) -> list:
    """The injected fault: `obj.method` raises `exc` on its first `times` calls (None: always),
    then behaves as before. Returns the list of calls it failed."""
    real, failed = getattr(obj, method), []

    def faulty(*args, **kw):
        if times is None or len(failed) < times:
            failed.append(args)
            raise type(exc)(*exc.args)  # a new one each time, as a real fault raises
        return real(*args, **kw)
    setattr(obj, method, faulty)
    return failed


def run_producer_until_it_returns(service, limit_s: float) -> None:
    asyncio.run(asyncio.wait_for(service.run_producer(), limit_s))


def errors(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_failed_slot_is_logged_with_its_traceback_and_the_next_slots_produce(tmp_path, caplog):
    service = alice_node(tmp_path)
    # what issue 14 saw: begin_block (inside build_block) raising OverflowError in a slot
    failed = inject(service.chain, "build_block", OverflowError("int too big to convert"), times=1)

    async def go():
        task = asyncio.create_task(service.run_producer())
        await asyncio.sleep(20 * SLOT_S)
        running = not task.done()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return running

    assert asyncio.run(go())
    assert len(failed) == 1 and service.health.fatal is None
    [record] = errors(caplog)
    assert record.exc_info[0] is OverflowError and "failed (1 in a row)" in record.getMessage()
    assert "Traceback" in caplog.text and "build_block" in caplog.text
    assert service.chain.tip().height >= 3 and service.metrics.produced >= 3  # and it goes on
    assert service.health.slot_failures == 1


def test_the_same_failure_in_slot_after_slot_stops_the_node(tmp_path, caplog):
    service = alice_node(tmp_path)
    inject(service.chain, "build_block", OverflowError("int too big to convert"))
    stopped = []
    service.health.on_fatal = lambda: stopped.append(service.health.fatal)
    run_producer_until_it_returns(service, 10 + 20 * MAX_REPEATED_FAILURES * SLOT_S)  # it stopped
    assert len(stopped) == 1
    assert stopped[0].startswith(f"the same failure in {MAX_REPEATED_FAILURES} slots in a row")
    said = errors(caplog)
    in_a_row = [f"({n} in a row)" in r.getMessage() for n, r in enumerate(said[:-1], 1)]
    assert in_a_row == [True] * MAX_REPEATED_FAILURES
    assert all(r.exc_info[0] is OverflowError for r in said[:-1])
    assert said[-1].levelname == "CRITICAL" and f"exit status {EXIT_FATAL}" in said[-1].getMessage()
    assert service.chain.tip().height == 0


def test_our_own_broken_invariant_stops_the_producer_at_once(tmp_path, caplog):
    service = alice_node(tmp_path)
    inject(service.chain, "build_block", InvariantBroken("the final block is not where it was"))
    run_producer_until_it_returns(service, 10)
    assert service.health.fatal.startswith("our own invariant broke in slot")
    assert [r.levelname for r in errors(caplog)] == ["ERROR", "CRITICAL"]


def _overflow() -> Exception:
    try:
        raise OverflowError("one line")
    except OverflowError as e:
        return e


def _missing() -> Exception:
    try:
        raise KeyError("another line")
    except KeyError as e:
        return e


def test_only_the_same_failure_in_our_slots_in_a_row_counts(tmp_path):
    """Failures of another type or at another line do not add up; a slot of ours that goes
    through ends the run; another producer's slot going through does not."""
    service = alice_node(tmp_path, producers=("alice", "bob"))
    health = service.health
    ours, theirs = sorted(range(2), key=lambda s: service.chain.producer_for_slot(s) != "alice")
    for n in range(3 * MAX_REPEATED_FAILURES):
        health.slot_failed(ours, _overflow() if n % 2 else _missing())
    health.slot_done(ours)
    for _ in range(MAX_REPEATED_FAILURES - 1):
        health.slot_failed(ours, _overflow())
    health.slot_done(ours)  # ends the run
    for _ in range(MAX_REPEATED_FAILURES - 1):
        health.slot_failed(ours, _overflow())
    assert health.fatal is None
    health.slot_done(theirs)  # bob's slot: nothing of alice's was tried in it
    health.slot_failed(ours, _overflow())
    assert health.fatal == (f"the same failure in {MAX_REPEATED_FAILURES} slots in a row: "
                            "OverflowError: one line")


def test_a_background_task_that_dies_is_logged_and_stops_the_node(tmp_path, caplog):
    service = alice_node(tmp_path)
    health = service.health

    async def broken():
        raise RuntimeError("lane broke")

    async def go():
        cancelled = health.watch(asyncio.create_task(asyncio.sleep(10)), "cancelled")
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        assert health.fatal is None
        health.watch(asyncio.create_task(broken()), "blocks to http://peer")
        await asyncio.sleep(0.01)

    asyncio.run(go())
    assert health.fatal == "task blocks to http://peer died: RuntimeError: lane broke"
    [record, critical] = errors(caplog)
    assert record.exc_info[0] is RuntimeError
    assert record.getMessage() == "task blocks to http://peer died: RuntimeError: lane broke"
    assert critical.levelname == "CRITICAL"


def test_a_task_ending_in_a_shutdown_is_logged_but_stops_nothing(tmp_path, caplog):
    health = alice_node(tmp_path).health
    health.stopping = True

    async def broken():
        raise RuntimeError("closed under it")

    async def go():
        health.watch(asyncio.create_task(broken()), "txs to http://peer")
        await asyncio.sleep(0.01)

    asyncio.run(go())
    assert health.fatal is None and errors(caplog)[0].exc_info[0] is RuntimeError


def test_a_failed_sync_round_is_logged_and_the_next_goes_on_and_a_broken_invariant_stops_the_node(
        tmp_path, caplog, monkeypatch):
    """E.g. our import failing on a peer's block with an unexpected error: logged, not fatal.
    (A peer's invalid block is an InvalidBlock: refused and penalized, see tests/test_p2p.py.)"""
    monkeypatch.setattr(p2p.gossip, "SYNC_INTERVAL_S", SLOT_S)
    service = alice_node(tmp_path, peers=[f"http://127.0.0.1:{free_port()}"])  # nobody there
    rounds = []

    async def catch_up():
        rounds.append(len(rounds))
        if len(rounds) <= 2:
            raise ZeroDivisionError("import failed")
        raise InvariantBroken("the final block is not where it was")
    service.net._catch_up = catch_up

    async def go():
        service.net.start()
        deadline = time.monotonic() + 10
        while service.health.fatal is None and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await service.net.stop()

    asyncio.run(go())
    assert len(rounds) == 3
    logged = [r for r in errors(caplog) if r.getMessage() == "sync round failed"]
    assert [r.exc_info[0] for r in logged] == [ZeroDivisionError, ZeroDivisionError]
    assert service.health.fatal == "task sync died: InvariantBroken: the final block is not where it was"
