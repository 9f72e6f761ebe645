"""A node whose disk fills up stops at its first failed write, exits with EXIT_FATAL and a message
that says what to do, and starts again cleanly once there is space: LevelDB refuses every write
after a failed one until it is reopened, so a node that went on answering would never follow the
chain again. Real processes: on a real full disk (a small tmpfs, as root), and under a file size
limit (RLIMIT_FSIZE: writes fail with EFBIG) where mounting is not allowed."""
import json
import os
import resource
import subprocess
import sys
import time

import httpx
import pytest

from core.crypto import Keypair
from core.genesis import ChainParams, Genesis, Member, Producer
from node.keystore import write_key_file
from node.health import EXIT_FATAL
from tests.conftest import wait_until
from tests.test_e2e_single import ROOT, free_port


def single_producer_chain(d, chain_id: str) -> list[str]:
    """A one-producer chain's genesis and key in `d`; the node command's arguments but the data dir."""
    keys = {n: Keypair(bytes([i + 21]) * 32) for i, n in enumerate(["alice", "bob"])}
    genesis = Genesis(chain_id=chain_id, genesis_time_ms=time.time_ns() // 1_000_000,
                      params=ChainParams(block_interval_ms=100),
                      members=tuple(Member(n, k.public_key, 10**6, 10**5) for n, k in keys.items()),
                      producers=(Producer("alice", keys["alice"].public_key, ""),))
    (d / "genesis.json").write_text(json.dumps(genesis.to_json()))
    write_key_file(d / "alice.json", "alice", keys["alice"])
    return [sys.executable, os.path.join(ROOT, "cli.py"), "node", "run", "--genesis",
            str(d / "genesis.json"), "--key-file", str(d / "alice.json")]


def final_height(port: int) -> int:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/v1/status", timeout=1).json()["final"]["height"]
    except httpx.HTTPError:
        return -1


def run_until_exit(cmd, timeout_s: float, **kw) -> tuple[int, str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)
    try:
        out, _ = proc.communicate(timeout=timeout_s)  # (a pipe: the output is not a file it fills)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out.decode()


def restart_goes_on(cmd, data_dir, port: int) -> None:
    """The node starts again on the same data dir and finalizes 3 more blocks."""
    proc = subprocess.Popen(cmd + ["--data-dir", str(data_dir), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: final_height(port) >= 0, 30, "the node answering")
        start = final_height(port)
        wait_until(lambda: final_height(port) > start + 3, 30, f"final height past {start + 3}")
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def tmpfs(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root): {r.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory) -> None:
    """Write a file until the disk is full."""
    with open(directory / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def test_a_full_disk_stops_the_node_with_a_clear_message_and_it_restarts_once_freed(tmp_path, tmpfs):
    cmd = single_producer_chain(tmp_path, "full-tmpfs")
    port = free_port()
    proc = subprocess.Popen(cmd + ["--data-dir", str(tmpfs / "data"), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: final_height(port) >= 5, 30, "final height 5")
        fill(tmpfs)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    log = out.decode()
    assert proc.returncode == EXIT_FATAL, log[-3000:]
    assert "is full" in log and "Free some space, then start the node again" in log, log[-3000:]
    assert f"stopping the node (exit status {EXIT_FATAL})" in log
    os.unlink(tmpfs / "filler")
    restart_goes_on(cmd, tmpfs / "data", free_port())


def test_a_file_size_limit_stops_the_node_at_its_first_failed_write_and_it_restarts(tmp_path):
    cmd = single_producer_chain(tmp_path, "full-rlimit")
    data = tmp_path / "data"
    restart_goes_on(cmd, data, free_port())  # some blocks, then a limit just above its files
    limit = max(os.path.getsize(p) for p in data.rglob("*") if p.is_file()) + 16 * 1024

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    code, log = run_until_exit(cmd + ["--data-dir", str(data), "--port", str(free_port())], 60,
                               preexec_fn=limit_file_size)
    assert code == EXIT_FATAL, log[-3000:]
    assert "File too large" in log and "check the disk, then start the node again" in log, log[-3000:]
    assert log.count("stopping the node") == 1
    restart_goes_on(cmd, data, free_port())
