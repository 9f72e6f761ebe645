"""The wallet, the HTTP client and the CLI: signed txs decode and verify, tickets verify, key files
stay private, `genesis create` makes a loadable chain, the embedded dev chain matches its dev keys,
an unreachable node is exit code 3 naming the URL; and, against a real node process, the governance
commands propose, approve and read proposals and the rules."""
import json
import socket
import stat
import time
from pathlib import Path

import httpx
import msgpack
import pytest
from click.testing import CliRunner

from cli import cli
from contracts.rules import load_default_rules
from core.crypto import Keypair
from core.devnet import dev_seed, load_dev_keys, make_devnet
from core.errors import InvalidTx
from core.genesis import DEFAULT_DEV_KEYS, load_genesis, now_ms
from core.types import KINDS, MAX_RULES_CODE_BYTES, Tx, is_ticket_valid
from core.wallet import ApiError, Client, NodeUnreachable, Wallet
from node.keystore import read_key_file, write_key_file
from tests.test_e2e_single import NodeProcess
from tests.test_vm_hostile_bytecode import COMPILE_BOMB

CHAIN = "wallet-test"
ALICE = Keypair(bytes([7]) * 32)
BOB = Keypair(bytes([8]) * 32)


@pytest.fixture
def alice():
    return Wallet("alice", ALICE, CHAIN)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------ wallet
EVENT = {"starts_at": 1_000, "ends_at": 2_000, "capacity": 3}
EVERY_KIND = [
    ("post", lambda w: w.post("hello", "Hello", "text", tags=("a", "b")),
     {"permlink": "hello", "title": "Hello", "body": "text", "tags": ["a", "b"]}),
    ("post", lambda w: w.post("re", "", "reply", parent="bob/hello"),
     {"permlink": "re", "title": "", "body": "reply", "tags": [], "parent": "bob/hello"}),
    ("post", lambda w: w.post("meet", "Meet", "come", event=EVENT),
     {"permlink": "meet", "title": "Meet", "body": "come", "tags": [], "event": EVENT}),
    ("vote", lambda w: w.vote_post("bob/hello", -2500), {"post": "bob/hello", "weight": -2500}),
    ("vote", lambda w: w.approve_producer("bob", False), {"producer": "bob", "approve": False}),
    ("attend", lambda w: w.attend("bob/meet", bytes(64)), {"event": "bob/meet", "ticket": bytes(64)}),
    ("refer", lambda w: w.refer("newbie", BOB.public_key),
     {"new_account": "newbie", "pubkey": BOB.public_key}),
    ("transfer", lambda w: w.transfer("bob", 5, memo="hi"), {"to": "bob", "amount": 5, "memo": "hi"}),
    ("transfer", lambda w: w.transfer("bob", 5), {"to": "bob", "amount": 5}),
    ("stake", lambda w: w.stake(10), {"amount": 10}),
    ("unstake", lambda w: w.unstake(10), {"amount": 10}),
    ("register_producer", lambda w: w.register_producer(BOB.public_key, "http://n:1"),
     {"node_key": BOB.public_key, "url": "http://n:1"}),
    ("unjail", lambda w: w.unjail(), {}),
    ("govern", lambda w: w.propose_param("attend_points", 5, 100),
     {"proposal": {"action": "set_param", "effective_height": 100, "name": "attend_points", "value": 5}}),
    ("govern", lambda w: w.propose_upgrade(b"CAVM\x01code", 100),
     {"proposal": {"action": "upgrade_rules", "code": b"CAVM\x01code", "effective_height": 100}}),
    ("govern", lambda w: w.approve_proposal("ab" * 32), {"approve": bytes([0xAB]) * 32}),
    ("report_equivocation", lambda w: w.report_equivocation("double_vote", b"\x01", b"\x02"),
     {"first": b"\x01", "kind": "double_vote", "second": b"\x02"}),
]


def test_the_wallet_signs_every_kind_there_is():
    assert {kind for kind, _, _ in EVERY_KIND} == KINDS


@pytest.mark.parametrize("kind,build,body", EVERY_KIND, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(EVERY_KIND)])
def test_every_kind_decodes_and_verifies_with_the_senders_key(alice, kind, build, body):
    before = now_ms()
    tx = build(alice)
    again = Tx.decode(tx.raw)
    assert (again.kind, again.sender, again.chain_id, again.body) == (kind, "alice", CHAIN, body)
    assert again.id == tx.id
    assert again.verify(ALICE.public_key) and not again.verify(BOB.public_key)
    assert before + alice.ttl_ms <= again.expires_at <= now_ms() + alice.ttl_ms
    assert 0 <= again.salt < 2**32


def test_salt_makes_distinct_ids_and_a_given_salt_is_kept(alice):
    assert alice.stake(1).id != alice.stake(1).id
    assert alice.stake(1, salt=42).salt == 42


def test_wallet_refuses_to_sign_what_a_node_would_reject_statically(alice):
    with pytest.raises(InvalidTx):
        alice.vote_post("bob/hello", 20_000)
    with pytest.raises(InvalidTx):
        alice.transfer("bob", 0)


def test_ticket_verifies_for_its_event_and_attendee_only(alice):
    ticket = alice.ticket("alice/meet", "bob")
    assert is_ticket_valid(ALICE.public_key, CHAIN, "alice/meet", "bob", ticket)
    assert not is_ticket_valid(ALICE.public_key, CHAIN, "alice/meet", "carol", ticket)
    assert not is_ticket_valid(ALICE.public_key, CHAIN, "alice/other", "bob", ticket)
    assert not is_ticket_valid(ALICE.public_key, "other-chain", "alice/meet", "bob", ticket)
    assert not is_ticket_valid(BOB.public_key, CHAIN, "alice/meet", "bob", ticket)


# ------------------------------------------------------------------------------ client
def mock_client(handler) -> Client:
    return Client("http://node.test", transport=httpx.MockTransport(handler))


def test_submit_sends_raw_msgpack_and_the_wait_query(alice):
    tx = alice.stake(1)
    seen = {}

    def handler(request):
        seen.update(body=request.content, ctype=request.headers["content-type"], query=dict(request.url.params))
        return httpx.Response(200, json={"id": tx.id.hex(), "status": "final", "height": 3})

    assert mock_client(handler).submit(tx, wait="final", timeout_s=5)["status"] == "final"
    assert seen == {"body": tx.raw, "ctype": "application/msgpack", "query": {"wait": "final", "timeout": "5"}}


def test_batch_body_is_a_msgpack_array_of_raw_txs(alice):
    txs = [alice.stake(1), alice.stake(2)]
    seen = {}

    def handler(request):
        seen["items"] = msgpack.unpackb(request.content)
        return httpx.Response(200, json={"accepted": 2, "results": []})

    assert mock_client(handler).submit_batch(txs)["accepted"] == 2
    assert seen["items"] == [t.raw for t in txs]


def test_error_answers_raise_api_error_with_the_nodes_code():
    def handler(request):
        return httpx.Response(409, json={"error": {"code": "duplicate", "message": "tx already in the chain"}})

    with pytest.raises(ApiError) as e:
        mock_client(handler).account("alice")
    assert (e.value.status, e.value.code, e.value.message) == (409, "duplicate", "tx already in the chain")


def test_a_rate_limited_request_is_sent_again_after_a_growing_backoff(alice, monkeypatch):
    """429 rate_limited changed nothing at the node: the client waits and sends the same request
    again, a bounded number of times; any other error is raised at once."""
    sleeps, sent = [], []
    monkeypatch.setattr("core.wallet.time.sleep", sleeps.append)
    limited = (429, {"error": {"code": "rate_limited", "message": "retry later"}})
    answers = iter([limited, limited, (202, {"id": "ab", "status": "pending"})])

    def handler(request):
        sent.append(request.content)
        status, doc = next(answers)
        return httpx.Response(status, json=doc)

    tx = alice.stake(1)
    assert mock_client(handler).submit(tx)["status"] == "pending"
    assert sleeps == [0.5, 1.0] and sent == [tx.raw] * 3
    sleeps.clear()
    with pytest.raises(ApiError) as e:
        mock_client(lambda r: httpx.Response(*limited[:1], json=limited[1])).status()
    assert e.value.code == "rate_limited" and sleeps == [0.5, 1.0, 2.0]  # 3 retries, then raised
    sleeps.clear()
    banned = {"error": {"code": "peer_banned", "message": "ignored for a while"}}
    with pytest.raises(ApiError):
        mock_client(lambda r: httpx.Response(429, json=banned)).status()
    assert sleeps == []


def test_non_json_error_still_raises_api_error():
    with pytest.raises(ApiError) as e:
        mock_client(lambda r: httpx.Response(502, text="bad gateway")).status()
    assert (e.value.status, e.value.code) == (502, "http_502")


def test_unknown_tx_is_a_status_and_wait_final_stops_at_final():
    answers = iter([(404, {"error": {"code": "unknown_tx", "message": "never seen"}}),
                    (200, {"id": "ab", "status": "pending"}),
                    (200, {"id": "ab", "status": "final", "height": 4, "index": 0})])

    def handler(request):
        status, doc = next(answers)
        return httpx.Response(status, json=doc)

    c = mock_client(handler)
    assert c.tx_status("ab") == {"id": "ab", "status": "unknown"}
    assert c.wait_final("ab", timeout_s=5, poll_s=0)["status"] == "final"


def test_closed_port_raises_node_unreachable():
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(NodeUnreachable) as e, Client(url, timeout=2) as c:
        c.status()
    assert e.value.url == url


# ------------------------------------------------------------------------------ keys and devnets
def test_keys_generate_writes_a_private_file_that_round_trips(tmp_path):
    """A --plain key file (test keys; encrypted ones: tests/test_keystore.py)."""
    out = tmp_path / "k" / "alice.json"
    r = CliRunner().invoke(cli, ["keys", "generate", "--name", "alice", "--out", str(out), "--plain"])
    assert r.exit_code == 0, r.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    kf = read_key_file(out)
    assert kf.name == "alice" and json.loads(r.stdout)["public_key"] == kf.key.public_key.hex()
    shown = CliRunner().invoke(cli, ["keys", "show", str(out)])
    assert shown.exit_code == 0 and kf.key.seed.hex() not in shown.output
    assert json.loads(shown.output) == {"name": "alice", "public_key": kf.key.public_key.hex(),
                                        "encrypted": False}
    with_seed = json.loads(CliRunner().invoke(cli, ["keys", "show", str(out), "--seed"]).stdout)
    assert Keypair(bytes.fromhex(with_seed["seed"])).public_key == kf.key.public_key
    again = CliRunner().invoke(cli, ["keys", "generate", "--name", "alice", "--out", str(out), "--plain"])
    assert again.exit_code == 2 and read_key_file(out).key.seed == kf.key.seed


def test_genesis_create_writes_a_loadable_chain(tmp_path):
    r = CliRunner().invoke(cli, ["genesis", "create", "--out", str(tmp_path), "--members", "7",
                                 "--producers", "3", "--chain-id", "my-dev", "--block-interval-ms", "250"])
    assert r.exit_code == 0, r.output
    g = load_genesis(tmp_path / "genesis.json")
    assert (g.chain_id, len(g.members), len(g.producers), g.params.block_interval_ms) == ("my-dev", 7, 3, 250)
    assert [p.name for p in g.producers] == ["member-01", "member-02", "member-03"]
    dev = load_dev_keys(tmp_path / "dev-keys.json")
    assert {m.name: m.public_key for m in g.members} == {n: k.public_key for n, k in dev.items()}
    for p in g.producers:
        path = tmp_path / "keys" / f"{p.name}.json"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert read_key_file(path).key.public_key == p.node_key
    assert stat.S_IMODE((tmp_path / "dev-keys.json").stat().st_mode) == 0o600
    bad = CliRunner().invoke(cli, ["genesis", "create", "--out", str(tmp_path / "x"), "--members", "2",
                                   "--producers", "3"])
    assert bad.exit_code == 2


def test_deterministic_devnets_are_reproducible_and_random_ones_are_not():
    a = make_devnet(3, 1, "dev-x", 500, 0, deterministic=True)
    assert a == make_devnet(3, 1, "dev-x", 500, 0, deterministic=True)
    assert a[1]["members"][0]["seed"] == dev_seed("dev-x", "member-01").hex()
    assert make_devnet(3, 1, "dev-x", 500, 0)[0] != a[0]


def test_embedded_dev_chain_matches_its_public_dev_keys():
    g = load_genesis()
    dev = load_dev_keys()
    assert g.chain_id == "community-dev" and g.genesis_time_ms == 1767225600000
    assert [m.name for m in g.members] == ["alice", "bob", "carol", "dave", "erin"]
    assert [p.name for p in g.producers] == ["alice"]
    assert g.producers[0].node_key == dev["alice"].public_key
    for m in g.members:
        assert (m.balance, m.stake) == (1_000_000_000, 100_000_000)
        assert dev[m.name].seed == dev_seed("community-dev", m.name)
    assert "local" in json.loads(DEFAULT_DEV_KEYS.read_text())["warning"]


# ------------------------------------------------------------------------------ exit codes
def test_query_status_on_a_closed_port_exits_3_naming_the_url():
    url = f"http://127.0.0.1:{closed_port()}"
    r = CliRunner().invoke(cli, ["query", "status", "--node", url])
    assert r.exit_code == 3
    assert url in r.output and "node run" in r.output


def test_tx_without_a_key_is_a_usage_error():
    r = CliRunner().invoke(cli, ["tx", "transfer", "--to", "bob", "--amount", "1", "--chain-id", CHAIN])
    assert r.exit_code == 2 and "--key-file" in r.output


def test_ticket_with_a_chain_id_needs_no_node():
    url = f"http://127.0.0.1:{closed_port()}"
    r = CliRunner().invoke(cli, ["tx", "ticket", "--dev", "alice", "--event", "alice/meet",
                                 "--attendee", "bob", "--chain-id", "community-dev", "--node", url])
    assert r.exit_code == 0, r.output
    alice = load_dev_keys()["alice"]
    assert is_ticket_valid(alice.public_key, "community-dev", "alice/meet", "bob", bytes.fromhex(r.output.strip()))


# ------------------------------------------------------------------------------ governance commands
@pytest.fixture(scope="module")
def gov_node(tmp_path_factory):
    """A real node process of a chain whose one producer is alice; the dev keys are in its folder."""
    tmp = tmp_path_factory.mktemp("gov")
    genesis_doc, dev_keys = make_devnet(3, 1, "cli-gov", 200, now_ms() - 10_000,
                                        names=["alice", "bob", "carol"], deterministic=True)
    (tmp / "genesis.json").write_text(json.dumps(genesis_doc))
    (tmp / "dev-keys.json").write_text(json.dumps(dev_keys))
    write_key_file(tmp / "alice.json", "alice", load_dev_keys(tmp / "dev-keys.json")["alice"])
    node = NodeProcess(tmp, closed_port())
    node.start()
    yield node
    node.stop()


def govern(node, signer, *args):
    return CliRunner().invoke(cli, ["tx", "govern", *args, "--node", node.url, "--dev", signer,
                                    "--dev-keys", str(node.tmp / "dev-keys.json")])


def query(node, what):
    r = CliRunner().invoke(cli, ["query", what, "--node", node.url])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_set_param_proposal_is_listed_enacted_and_only_producers_approve(gov_node):
    rules = query(gov_node, "rules")
    assert rules["params"]["attend_points"] == 1000 and rules["ranges"]["attend_points"][0] == 0
    r = govern(gov_node, "alice", "set-param", "attend_points", "1500", "--effective-height", "+10")
    assert r.exit_code == 0, r.output
    sent = json.loads(r.stdout)
    assert sent["status"] == "final"
    listed = {p["id"]: p for p in query(gov_node, "proposals")["proposals"]}[sent["id"]]
    assert (listed["action"], listed["name"], listed["value"], listed["approvals"]) == (
        "set_param", "attend_points", 1500, ["alice"])
    assert listed["effective_height"] > sent["height"]
    refused = govern(gov_node, "bob", "approve", sent["id"])
    assert refused.exit_code == 1 and "not_producer" in refused.output
    deadline = time.time() + 20
    while query(gov_node, "rules")["params"]["attend_points"] != 1500 and time.time() < deadline:
        time.sleep(0.2)
    assert query(gov_node, "rules")["params"]["attend_points"] == 1500


def test_upgrade_rules_compiles_on_the_client_and_the_node_verifies_bytecode(gov_node, tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def on_post():\n    return 1\n")  # compiles, but lacks the other hooks
    r = govern(gov_node, "alice", "upgrade-rules", str(bad), "--effective-height", "+10")
    assert r.exit_code == 1 and "invalid_proposal" in r.output
    not_bytecode = tmp_path / "source.bin"
    not_bytecode.write_bytes(bad.read_bytes())
    r = govern(gov_node, "alice", "upgrade-rules", "--code", str(not_bytecode),
               "--effective-height", "+10")
    assert r.exit_code == 1 and "invalid_proposal" in r.output and "bad_bytecode" in r.output
    source = Path(__file__).resolve().parent.parent / "contracts" / "rules" / "default.py"
    head = query(gov_node, "status")["head"]["height"]
    r = govern(gov_node, "alice", "upgrade-rules", str(source), "--effective-height", str(head + 50))
    assert r.exit_code == 0, r.output
    listed = {p["id"]: p for p in query(gov_node, "proposals")["proposals"]}[json.loads(r.stdout)["id"]]
    assert (listed["action"], listed["effective_height"]) == ("upgrade_rules", head + 50)
    assert listed["code_hash"] == query(gov_node, "rules")["code_hash"]  # the same source
    precompiled = tmp_path / "rules.bin"
    precompiled.write_bytes(load_default_rules())
    r = govern(gov_node, "alice", "upgrade-rules", "--code", str(precompiled), "--effective-height",
               str(head + 60))
    assert r.exit_code == 0, r.output
    listed = {p["id"]: p for p in query(gov_node, "proposals")["proposals"]}[json.loads(r.stdout)["id"]]
    assert listed["code_hash"] == query(gov_node, "rules")["code_hash"]


@pytest.mark.parametrize("args,message", [
    (["upgrade-rules", "--effective-height", "5"], "exactly one of SOURCE_FILE or --code"),
    (["upgrade-rules", "{src}", "--code", "{bin}", "--effective-height", "5"],
     "exactly one of SOURCE_FILE or --code"),
    (["upgrade-rules", "{bad}", "--effective-height", "5"], "line 2: floats are not allowed"),
    (["upgrade-rules", "{bomb}", "--effective-height", "5"], "at most 4096 bytes"),
    (["upgrade-rules", "--code", "{big}", "--effective-height", "5"], "1..12288"),
], ids=["neither", "both", "not_in_the_language", "compile_bomb", "too_big"])
def test_upgrade_rules_usage_errors_exit_2_before_contacting_a_node(tmp_path, args, message):
    """What the client cannot compile or send is refused here, the compile bomb (a string doubled
    24 times by constant folding: 1 GiB) included, within the compiler's folding bound."""
    files = {"src": "def on_post():\n    pass\n", "bad": "def on_post():\n    return 1.5\n",
             "bomb": COMPILE_BOMB, "bin": b"CAVM\x01", "big": b"c" * (MAX_RULES_CODE_BYTES + 1)}
    for name, content in files.items():
        path = tmp_path / name
        path.write_bytes(content if type(content) is bytes else content.encode())
    url = f"http://127.0.0.1:{closed_port()}"
    args = [a.format(**{name: str(tmp_path / name) for name in files}) for a in args]
    r = CliRunner().invoke(cli, ["tx", "govern", *args, "--dev", "alice", "--chain-id", CHAIN,
                                 "--node", url])
    assert r.exit_code == 2 and message in r.output, r.output


@pytest.mark.parametrize("args", [
    ["set-param", "attend_points", "1", "--effective-height", "soon"],
    ["set-param", "attend_points", "1.5", "--effective-height", "5"],
    ["approve", "not-hex"],
])
def test_govern_usage_errors_exit_2_before_contacting_a_node(args):
    url = f"http://127.0.0.1:{closed_port()}"
    r = CliRunner().invoke(cli, ["tx", "govern", *args, "--dev", "alice", "--chain-id", CHAIN, "--node", url])
    assert r.exit_code == 2, r.output
