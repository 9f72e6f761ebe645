"""Offline signing: `tx <kind> --offline --out FILE` signs with an encrypted key file and contacts
no node; `tx broadcast FILE` submits those bytes to a real node (whose own producer key is an
encrypted file, unlocked by COMMUNITY_CHAIN_PASSPHRASE) with the usual exit codes. What a command
would ask the node for must be given offline, else a usage error names the flag; and a node that
holds no evidence makes `report-equivocation` exit 1, not 2."""
import json
import os
import socket

import pytest
from click.testing import CliRunner

from cli import cli
from core.devnet import load_dev_keys, make_devnet
from core.genesis import now_ms
from core.types import Tx
from node.keystore import CHEAP_FOR_TESTS, PASSPHRASE_ENV, PASSPHRASE_FILE_ENV, write_key_file
from tests.test_e2e_single import NodeProcess

CHAIN = "offline-test"
PW = "bob's passphrase"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NOWHERE = f"http://127.0.0.1:{closed_port()}"  # offline commands would fail (exit 3) if they called it


@pytest.fixture(autouse=True)
def no_passphrase_in_env(monkeypatch):
    for name in (PASSPHRASE_ENV, PASSPHRASE_FILE_ENV):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory):
    """A chain whose one producer is alice; alice's and bob's key files encrypted (cheaply)."""
    tmp = tmp_path_factory.mktemp("offline")
    genesis_doc, dev_keys = make_devnet(3, 1, CHAIN, 200, now_ms() - 10_000,
                                        names=["alice", "bob", "carol"], deterministic=True)
    (tmp / "genesis.json").write_text(json.dumps(genesis_doc))
    (tmp / "dev-keys.json").write_text(json.dumps(dev_keys))
    keys = load_dev_keys(tmp / "dev-keys.json")
    write_key_file(tmp / "alice.json", "alice", keys["alice"], "alice's passphrase", CHEAP_FOR_TESTS)
    write_key_file(tmp / "bob.json", "bob", keys["bob"], PW, CHEAP_FOR_TESTS)
    (tmp / "pw").write_text(PW + "\n")
    (tmp / "pw").chmod(0o600)
    return tmp


@pytest.fixture(scope="module")
def node(keys_dir):
    """A real node process producing as alice from her encrypted key file."""
    saved = os.environ.get(PASSPHRASE_ENV)
    os.environ[PASSPHRASE_ENV] = "alice's passphrase"  # (inherited by the node process only)
    try:
        n = NodeProcess(keys_dir, closed_port())
        n.start()
    finally:
        if saved is None:
            os.environ.pop(PASSPHRASE_ENV, None)
        else:
            os.environ[PASSPHRASE_ENV] = saved
    yield n
    n.stop()


def run(*args):
    return CliRunner().invoke(cli, [*map(str, args)])


def sign_offline(keys_dir, out, *args):
    return run("tx", *args, "--key-file", keys_dir / "bob.json", "--passphrase-file", keys_dir / "pw",
               "--offline", "--out", out, "--chain-id", CHAIN, "--node", NOWHERE)


def test_a_tx_signed_offline_is_broadcast_later_and_becomes_final(keys_dir, node, tmp_path):
    out = tmp_path / "signed" / "transfer.tx"
    r = sign_offline(keys_dir, out, "transfer", "--to", "carol", "--amount", "1234", "--memo", "air-gapped",
                     "--expires-in", "30m")
    assert r.exit_code == 0, r.output
    made = json.loads(r.stdout)
    tx = Tx.decode(out.read_bytes())  # the canonical wire bytes, as POST /v1/transactions takes them
    assert (made["id"], made["kind"], made["sender"], made["chain_id"]) == (tx.id.hex(), "transfer", "bob", CHAIN)
    assert tx.body == {"to": "carol", "amount": 1234, "memo": "air-gapped"}
    assert 29 * 60_000 < tx.expires_at - now_ms() <= 30 * 60_000
    before = json.loads(run("query", "account", "carol", "--node", node.url).stdout)["balance"]
    r = run("tx", "broadcast", out, "--node", node.url, "--print-id")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == tx.id.hex()
    assert json.loads(run("query", "account", "carol", "--node", node.url).stdout)["balance"] == before + 1234
    again = run("tx", "broadcast", out, "--node", node.url)
    assert again.exit_code == 1  # the same tx twice: the node refuses it


def test_broadcast_of_a_file_that_is_no_tx_is_a_usage_error_and_no_node_is_exit_3(tmp_path, keys_dir):
    junk = tmp_path / "junk.tx"
    junk.write_bytes(b"not a tx")
    r = run("tx", "broadcast", junk, "--node", NOWHERE)
    assert r.exit_code == 2 and "malformed" in r.output
    out = tmp_path / "t.tx"
    assert sign_offline(keys_dir, out, "stake", "--amount", "5").exit_code == 0
    r = run("tx", "broadcast", out, "--node", NOWHERE)
    assert r.exit_code == 3 and NOWHERE in r.output


def test_a_governance_proposal_is_signed_offline_at_an_absolute_height(keys_dir, tmp_path):
    out = tmp_path / "p.tx"
    r = sign_offline(keys_dir, out, "govern", "set-param", "attend_points", "1500", "--effective-height", "500")
    assert r.exit_code == 0, r.output
    assert Tx.decode(out.read_bytes()).body["proposal"]["effective_height"] == 500


@pytest.mark.parametrize("args,flag", [
    (["transfer", "--to", "carol", "--amount", "1", "--offline", "--out", "{out}"], "--chain-id"),
    (["transfer", "--to", "carol", "--amount", "1", "--offline", "--chain-id", CHAIN], "--out"),
    (["transfer", "--to", "carol", "--amount", "1", "--out", "{out}", "--chain-id", CHAIN], "--offline"),
    (["govern", "set-param", "attend_points", "1", "--effective-height", "+10", "--offline", "--out", "{out}",
      "--chain-id", CHAIN], "--effective-height"),
    (["report-equivocation", "alice", "--offline", "--out", "{out}", "--chain-id", CHAIN], "--evidence-kind"),
    (["report-equivocation", "alice", "--first", "00", "--offline", "--out", "{out}", "--chain-id", CHAIN],
     "--second"),
    (["transfer", "--to", "carol", "--amount", "1", "--offline", "--out", "{out}", "--chain-id", CHAIN,
      "--expires-in", "0m"], "--expires-in"),
], ids=["no-chain-id", "no-out", "out-without-offline", "relative-height", "no-evidence-pair",
        "half-a-pair", "zero-expiry"])
def test_what_offline_signing_cannot_ask_the_node_is_a_usage_error_naming_the_flag(tmp_path, args, flag):
    out = tmp_path / "t.tx"
    r = run("tx", *[a.replace("{out}", str(out)) for a in args], "--dev", "bob", "--node", NOWHERE)
    assert r.exit_code == 2 and flag in r.output, r.output
    assert not out.exists()


def test_an_encrypted_key_without_its_passphrase_signs_nothing(keys_dir, tmp_path):
    r = run("tx", "stake", "--amount", "5", "--key-file", keys_dir / "bob.json", "--offline", "--out",
            tmp_path / "t.tx", "--chain-id", CHAIN)
    assert r.exit_code == 2 and "COMMUNITY_CHAIN_PASSPHRASE" in r.output and not (tmp_path / "t.tx").exists()


def test_report_equivocation_with_no_evidence_held_exits_1_saying_nothing_to_report(keys_dir, node):
    r = run("tx", "report-equivocation", "alice", "--dev", "bob", "--dev-keys", keys_dir / "dev-keys.json",
            "--node", node.url)
    assert r.exit_code == 1 and "nothing to report" in r.output and "Usage" not in r.output
