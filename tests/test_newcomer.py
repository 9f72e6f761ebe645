"""What a newcomer runs into first: the testnet command started from any directory and on a
folder of another size, the number of producers a new chain needs running, a node that takes txs
it can never get into a block, and the README's files and promises."""
import dataclasses
import fnmatch
import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import msgpack
import pytest
from click.testing import CliRunner

from cli import cli
from contracts.rules import DEFAULT_PARAMS
from node import cli_simulate, cli_testnet, testnet
from node.api import create_app
from node.config import NodeConfig
from node.service import NodeService
from node.testnet import (ROOT, TestnetMismatch, free_port_range, prepare, prepare_for_cli,
                          read_layout)
from state.kv import MemoryKV
from tests.conftest import wait_until
from tests.test_p2p import AppClient, fresh_tx

PATH_KEYS = ("data_dir", "genesis", "key_file")


def config_paths(directory: Path) -> dict[str, dict[str, str]]:
    """node folder -> its config's path settings, as written."""
    return {c.parent.name: {k: v for k, v in tomllib.loads(c.read_text())["node"].items() if k in PATH_KEYS}
            for c in sorted(directory.glob("node-*/config.toml"))}


# ------------------------------------------------------------------ testnet: paths
def test_a_testnet_prepared_from_a_relative_folder_writes_only_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    prepare("./tn", 2, free_port_range(3), full_nodes=1)
    paths = config_paths(tmp_path / "tn")
    assert len(paths) == 3 and all(len(p) >= 2 for p in paths.values())
    for node, settings in paths.items():
        for key, value in settings.items():
            assert Path(value).is_absolute(), (node, key, value)
            assert Path(value).resolve().is_relative_to((tmp_path / "tn").resolve()), (node, key, value)
        assert Path(settings["genesis"]).exists()
        assert "key_file" not in settings or Path(settings["key_file"]).exists()


def test_a_folder_written_with_repository_relative_paths_gets_absolute_ones(tmp_path):
    """An older release wrote paths relative to the repository, where it started the nodes; a
    node now reads them from the config's folder, so they are rewritten on the next start."""
    d = tmp_path / "tn"
    prepare(d, 2, free_port_range(2))
    before = config_paths(d)
    for config in d.glob("node-*/config.toml"):
        text = config.read_text()
        for key in PATH_KEYS:
            text = re.sub(rf'(?m)^{key} = "(.*)"$',
                          lambda m: f'{key} = "{os.path.relpath(m.group(1), ROOT)}"', text)
        config.write_text(text)
    assert not Path(config_paths(d)["node-0"]["genesis"]).is_absolute()
    prepare(d, 2, read_layout(d)["base_port"])
    assert config_paths(d) == before


def test_the_testnet_command_runs_from_outside_the_repository(tmp_path):
    base = free_port_range(1)
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "testnet", "--dir", "./tn", "--nodes", "1",
                             "--base-port", str(base)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    net = None
    try:
        deadline = time.time() + 40
        while not (tmp_path / "tn" / "testnet.json").exists() and time.time() < deadline:
            time.sleep(0.1)
        net = testnet.Testnet(tmp_path / "tn")
        wait_until(lambda: proc.poll() is not None or net.status(0) is not None, 40, "the node")
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert (tmp_path / "tn" / "node-0" / "data").is_dir() and not (ROOT / "tn").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if net is not None:
            net.client.close()
        proc.stdout.close()


# ------------------------------------------------------------------ testnet: another size
def test_the_testnet_command_refuses_another_node_count_on_an_existing_folder(tmp_path):
    d = tmp_path / "tn"
    prepare(d, 4, free_port_range(4))
    layout = (d / "testnet.json").read_text()
    result = CliRunner().invoke(cli_testnet.testnet, ["--dir", str(d), "--nodes", "5"])
    assert result.exit_code == 2, result.output
    assert "holds a 4-node testnet" in result.output and "--fresh" in result.output
    assert (d / "testnet.json").read_text() == layout
    result = CliRunner().invoke(cli_testnet.testnet, ["--dir", str(d), "--base-port", "1024"])
    assert result.exit_code == 2 and "holds a 4-node testnet" in result.output


def test_a_testnet_restarts_with_the_folders_own_layout_and_fresh_recreates_it(tmp_path):
    d = tmp_path / "tn"
    base = free_port_range(5)
    prepare(d, 4, base)
    genesis = (d / "genesis.json").read_text()
    (d / "node-3" / "data").mkdir()
    (d / "notes.txt").write_text("mine")
    prepare_for_cli(str(d), None, None)  # no flags: the folder's own testnet, unchanged
    assert (d / "genesis.json").read_text() == genesis
    with pytest.raises(TestnetMismatch):
        prepare_for_cli(str(d), 5, None)
    prepare_for_cli(str(d), 5, None, fresh=True)
    assert read_layout(d) == {"validators": 5, "standby": 0, "full_nodes": 0, "base_port": base}
    assert len(json.loads((d / "genesis.json").read_text())["producers"]) == 5
    assert not (d / "node-3" / "data").exists() and (d / "node-4" / "config.toml").exists()
    assert (d / "notes.txt").read_text() == "mine"  # only what the testnet wrote is deleted


def test_a_genesis_folder_is_not_taken_for_a_testnet(tmp_path):
    assert CliRunner().invoke(cli, ["genesis", "create", "--out", str(tmp_path / "c"), "--members", "2",
                                    "--producers", "2"]).exit_code == 0
    result = CliRunner().invoke(cli_testnet.testnet, ["--dir", str(tmp_path / "c")])
    assert result.exit_code == 2 and "not a testnet folder" in result.output


# ------------------------------------------------------------------ how many producers must run
@pytest.mark.parametrize("producers,needed", [(4, 3), (7, 5), (3, 3)])
def test_genesis_create_says_how_many_producers_must_run_for_finality(tmp_path, producers, needed):
    result = CliRunner().invoke(cli, ["genesis", "create", "--out", str(tmp_path / "c"),
                                      "--members", "8", "--producers", str(producers)])
    assert result.exit_code == 0, result.output
    assert f"at least {needed} of the {producers} producers run" in result.output
    assert f"--key-file {tmp_path / 'c'}/keys/member-01.json" in result.output


# ------------------------------------------------------------------ a node with no route
def _submit(app_client: AppClient, tx) -> tuple[int, str | None]:
    r = app_client.post("/v1/transactions", content=tx.raw, headers={"content-type": "application/msgpack"})
    return r.status_code, (r.json()["error"]["code"] if r.status_code >= 400 else None)


def test_a_node_that_neither_produces_nor_has_peers_refuses_txs_with_no_route(service):
    lonely = NodeService(dataclasses.replace(service.config, key_file=""), kv=MemoryKV())
    client = AppClient(create_app(lonely))
    assert _submit(client, fresh_tx("bob", "transfer", {"to": "carol", "amount": 1})) == (503, "no_route")
    r = client.post("/v1/transactions/batch", headers={"content-type": "application/msgpack"},
                    content=msgpack.packb([fresh_tx("bob", "transfer", {"to": "carol", "amount": 2}).raw]))
    assert (r.status_code, r.json()["error"]["code"]) == (503, "no_route")
    assert "no peers" in r.json()["error"]["message"] and len(lonely.mempool) == 0


def test_a_producer_alone_or_a_full_node_with_peers_accepts_txs(service):
    tx = fresh_tx("bob", "transfer", {"to": "carol", "amount": 1})
    assert _submit(AppClient(create_app(service)), tx) == (202, None)  # a single-node devnet
    relay = NodeService(dataclasses.replace(service.config, key_file="", peers=("http://127.0.0.1:9",)),
                        kv=MemoryKV())
    assert _submit(AppClient(create_app(relay)), tx) == (202, None)  # its peers take them on


def test_no_route_is_in_the_protocols_error_table():
    table = (ROOT / "docs" / "protocol.md").read_text().split("### Error codes", 1)[1]
    assert re.search(r"(?m)^\| 503 \|.*`no_route`", table)


# ------------------------------------------------------------------ the README and .gitignore
def is_ignored(relative: str) -> bool:
    """Whether .gitignore ignores the repository path `relative` (a/b/c), for the forms the file
    uses: name patterns without a slash, a trailing / matching directories only, and a directory
    path from the root (`a/b/`)."""
    parts = Path(relative).parts
    for line in (ROOT / ".gitignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        assert not pattern.startswith("!"), f"unsupported: {pattern}"
        if "/" in pattern.rstrip("/"):  # anchored at the root
            assert pattern.endswith("/") and "*" not in pattern, f"unsupported: {pattern}"
            if relative.startswith(pattern):
                return True
            continue
        dirs_only = pattern.endswith("/")
        names = parts[:-1] if dirs_only else parts
        if any(fnmatch.fnmatchcase(name, pattern.rstrip("/")) for name in names):
            return True
    return False


def _default(command, name: str):
    return next(p.default for p in command.params if p.name == name)


def test_what_the_commands_write_by_default_is_ignored():
    written = [f"{NodeConfig().data_dir}/chain.ldb/CURRENT",  # node run, ./run.sh
               f"{_default(cli_testnet.testnet, 'directory')}/node-0/node.log",
               str(_default(cli_simulate.simulate, "out")),
               "walkthrough/frank.json", "walkthrough/my_rules.py",
               "mychain/genesis.json", "snap.bin",  # README examples
               "deploy/chain/keys/member-01.json"]  # deploy/make-compose-chain.sh
    assert [w for w in written if not is_ignored(os.path.normpath(w))] == []
    assert not is_ignored("node/testnet.py") and not is_ignored("docs/protocol.md")


def test_the_readme_names_only_docs_that_exist_and_promises_no_design_notes():
    readme = (ROOT / "README.md").read_text()
    assert "design notes" not in readme
    assert [d for d in set(re.findall(r"docs/[\w.-]+\.md", readme)) if not (ROOT / d).exists()] == []


def test_frank_stakes_enough_in_the_walkthrough_to_earn():
    from tests.test_readme_walkthrough import walkthrough
    stakes = re.findall(r"tx stake --key-file \S+ --amount (\d+)", walkthrough("dev"))
    unstakes = re.findall(r"tx unstake --key-file \S+ --amount (\d+)", walkthrough("dev"))
    assert stakes and sum(map(int, stakes)) - sum(map(int, unstakes)) >= DEFAULT_PARAMS["min_earning_stake"]
