"""`node init` writes a config with every setting, its default and its meaning, which loads as
written; `node doctor` checks a real node process: all ok when it is, and a line that says what
is wrong (with a hint, and exit 1 on a fail) for a peer that is down, a peer of another chain, a
key file the chain does not know the producer by, a bad config; never a traceback."""
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from cli import cli
from core.crypto import Keypair
from core.genesis import DEFAULT_GENESIS, ChainParams, Genesis, Member, Producer
from node.config import SETTING_HELP, NodeConfig, load_config
from node.keystore import write_key_file
from node.doctor import Answer, check_disk, compute_clock_offset
from tests.test_e2e_single import ROOT, free_port

CHAIN = "doctor-chain"
KEYS = {n: Keypair(bytes([i + 31]) * 32) for i, n in enumerate(["alice", "bob"])}


def test_every_setting_has_a_one_line_meaning():
    names = [f.name for f in fields(NodeConfig)]
    assert sorted(SETTING_HELP) == sorted(names)
    assert all(SETTING_HELP[n] and "\n" not in SETTING_HELP[n] for n in names)


def test_init_writes_every_setting_which_loads_as_written_and_refuses_to_overwrite(tmp_path):
    write_key_file(tmp_path / "alice.json", "alice", KEYS["alice"])
    folder = tmp_path / "node"
    r = CliRunner().invoke(cli, ["node", "init", "--dir", str(folder), "--key-file", str(tmp_path / "alice.json")])
    assert r.exit_code == 0, r.output
    text = (folder / "node.toml").read_text()
    lines = text.splitlines()
    for f in fields(NodeConfig):
        at = next(i for i, line in enumerate(lines) if line.startswith(f"{f.name} = "))
        assert lines[at - 1] == f"# {SETTING_HELP[f.name]}"  # its meaning just above it
    config = load_config(str(folder / "node.toml"))
    expected = {f.name: getattr(NodeConfig(), f.name) for f in fields(NodeConfig)}
    expected.update(data_dir=str(folder / "data"), key_file=str(tmp_path / "alice.json"),
                    genesis=str(DEFAULT_GENESIS))
    assert config == NodeConfig(**expected)
    assert (folder / "data").is_dir()
    r = CliRunner().invoke(cli, ["node", "init", "--dir", str(folder)])
    assert r.exit_code == 1 and "--force" in r.output
    assert (folder / "node.toml").read_text() == text
    r = CliRunner().invoke(cli, ["node", "init", "--dir", str(folder), "--force"])
    assert r.exit_code == 0 and load_config(str(folder / "node.toml")).key_file == ""


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """A real node process of a one-producer chain (alice), started from a config `node init`
    wrote (relative paths: the data dir is the config's folder's)."""
    tmp = tmp_path_factory.mktemp("doctor")
    genesis = Genesis(CHAIN, time.time_ns() // 1_000_000 - 2_000, ChainParams(block_interval_ms=500),
                      tuple(Member(n, k.public_key, 1_000_000, 100_000) for n, k in KEYS.items()),
                      (Producer("alice", KEYS["alice"].public_key, ""),))
    (tmp / "genesis.json").write_text(json.dumps(genesis.to_json()))
    write_key_file(tmp / "alice.json", "alice", KEYS["alice"])
    r = CliRunner().invoke(cli, ["node", "init", "--dir", str(tmp / "node"), "--genesis", str(tmp / "genesis.json"),
                                 "--key-file", str(tmp / "alice.json")])
    assert r.exit_code == 0, r.output
    port = free_port()
    config = tmp / "node" / "node.toml"
    config.write_text(re.sub(r"(?m)^port = .*$", f"port = {port}", config.read_text()))
    url = f"http://127.0.0.1:{port}"
    with open(tmp / "node.log", "wb") as out:
        proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "cli.py"), "node", "run", "--config",
                                 str(config)], stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path_factory.getbasetemp())
    try:
        deadline = time.time() + 30
        while True:
            assert proc.poll() is None and time.time() < deadline, (tmp / "node.log").read_text()
            try:
                if httpx.get(url + "/v1/status", timeout=1).json()["final"]["height"] >= 2:
                    break
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        yield tmp, config, url
    finally:
        proc.terminate()
        proc.wait(10)


def doctor(*args) -> tuple[int, list[str], str]:
    r = CliRunner().invoke(cli, ["node", "doctor", *args])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.output
    return r.exit_code, r.output.splitlines()[:-1], r.output


def variant(tmp: Path, config: Path, name: str, **changes) -> str:
    """A copy of the node's config (in the same folder: same relative paths) with settings changed."""
    text = config.read_text()
    for key, value in changes.items():
        text = re.sub(rf"(?m)^{key} = .*$", f"{key} = {json.dumps(value)}", text)
    path = config.parent / f"{name}.toml"
    path.write_text(text)
    return str(path)


def test_doctor_says_ok_to_everything_on_a_healthy_node(node):
    tmp, config, url = node
    code, lines, output = doctor("--config", str(config))
    assert code == 0, output
    assert all(line.startswith("ok ") for line in lines), output
    names = [line.split()[1] for line in lines]
    assert names == ["config", "genesis", "key", "node", "peer", "clock", "disk", "sync", "producer",
                     "producing"], output
    assert "data dir" not in output and str(tmp / "node" / "data") in output  # relative to the config
    assert "alice is in the schedule" in output


def test_a_peer_that_is_down_is_a_warning_and_a_peer_of_another_chain_a_failure(node):
    tmp, config, url = node
    down = f"http://127.0.0.1:{free_port()}"
    code, lines, output = doctor("--config", variant(tmp, config, "down", peers=[down]), "--node", url)
    assert code == 0, output
    assert any(line.startswith("warn peer") and down in line and "unreachable" in line and "--" in line
               for line in lines), output
    assert "Traceback" not in output
    # a node of the embedded development chain, given as a peer: another chain_id and genesis
    other = variant(tmp, config, "other", genesis=str(DEFAULT_GENESIS), peers=[url])
    code, lines, output = doctor("--config", other, "--node", url)
    assert code == 1, output
    assert any(line.startswith("fail node") and "another chain" in line for line in lines), output
    assert any(line.startswith("fail peer") and "chain_id" in line for line in lines), output


def test_a_key_file_with_another_key_for_the_producer_fails(node):
    tmp, config, url = node
    write_key_file(tmp / "node" / "impostor.json", "alice", Keypair(b"\x99" * 32))
    code, lines, output = doctor("--config", variant(tmp, config, "impostor", key_file="impostor.json"))
    assert code == 1, output
    [line] = [line for line in lines if line.startswith("fail producer")]
    assert "registered" in line or "knows alice by" in line
    assert KEYS["alice"].public_key.hex()[:16] in line and "-- " in line


def test_a_key_file_the_chain_does_not_know_and_an_unreadable_one(node):
    tmp, config, url = node
    code, lines, output = doctor("--config", variant(tmp, config, "bob", key_file=str(tmp / "bob.json")))
    assert code == 1 and any(line.startswith("fail key") for line in lines), output  # no such file
    write_key_file(tmp / "bob.json", "bob", KEYS["bob"])
    code, lines, output = doctor("--config", variant(tmp, config, "bob", key_file=str(tmp / "bob.json")))
    assert any(line.startswith("warn producer") and "not a registered producer" in line for line in lines), output
    os.chmod(tmp / "bob.json", 0o644)
    code, lines, output = doctor("--config", variant(tmp, config, "bob", key_file=str(tmp / "bob.json")))
    assert code == 1 and any(line.startswith("fail key") and "chmod 600" in line for line in lines), output


def test_a_bad_config_and_no_node_are_failures_not_tracebacks(tmp_path):
    bad = tmp_path / "node.toml"
    bad.write_text('[node]\nport = "abc"\n')
    code, lines, output = doctor("--config", str(bad))
    assert code == 1 and lines == [f"fail config    {bad}: port must be an integer 1..65535 (got 'abc')"
                                   "  -- fix that setting; `node init` writes every setting with its "
                                   "default and meaning"], output
    code, lines, output = doctor("--node", f"http://127.0.0.1:{free_port()}")
    assert code == 1 and any(line.startswith("fail node") and "unreachable" in line for line in lines), output


@pytest.mark.parametrize("free,status", [(80 << 30, "ok"), (512 << 20, "warn"), (50 << 20, "fail")])
def test_disk_space_thresholds(tmp_path, free, status):
    assert check_disk(str(tmp_path / "not" / "yet"), lambda where: free).status == status


def test_clock_offset_bounds_from_the_date_header_and_the_slot():
    genesis = Genesis(CHAIN, 1_000_000, ChainParams(block_interval_ms=500),
                      tuple(Member(n, k.public_key, 1, 1) for n, k in KEYS.items()),
                      (Producer("alice", KEYS["alice"].public_key, ""),))
    now = 2_000_000.3  # seconds since the epoch, 0.3 s into a second and 0.3 s into a slot
    slot = genesis.slot_at(int(now * 1000))
    in_step = Answer("u", {"slot": slot}, sent=now - 0.01, received=now + 0.01, date=float(int(now)))
    low, high = compute_clock_offset(in_step, genesis)
    assert low <= 0 <= high and high - low < 0.53  # a slot and the round trip
    ahead = Answer("u", {"slot": slot + 6}, sent=now - 0.01, received=now + 0.01, date=float(int(now) + 3))
    low, high = compute_clock_offset(ahead, genesis)
    assert low > 1.0  # three seconds ahead: a warning


def test_an_encrypted_key_is_checked_without_its_passphrase(node, tmp_path, monkeypatch):
    """doctor and init read a key file's name and public key only: they never unlock it, so they
    run where no passphrase is given (a cron job, a fresh shell)."""
    from node.keystore import CHEAP_FOR_TESTS
    monkeypatch.delenv("COMMUNITY_CHAIN_PASSPHRASE", raising=False)
    monkeypatch.delenv("COMMUNITY_CHAIN_PASSPHRASE_FILE", raising=False)
    tmp, config, url = node
    write_key_file(tmp / "node" / "sealed.json", "alice", KEYS["alice"], "correct horse", CHEAP_FOR_TESTS)
    code, lines, output = doctor("--config", variant(tmp, config, "sealed", key_file="sealed.json"))
    assert code == 0, output
    [key_line] = [line for line in lines if line.startswith("ok") and line.split()[1] == "key"]
    assert "encrypted (passphrase not checked)" in key_line
    assert any(line.split()[:2] == ["ok", "producer"] for line in lines), output
    r = CliRunner().invoke(cli, ["node", "init", "--dir", str(tmp_path / "n"),
                                 "--key-file", str(tmp / "node" / "sealed.json")])
    assert r.exit_code == 0, r.output
