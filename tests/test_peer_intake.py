"""What a node takes from its peers (issue 15, blocks and peers): blocks never grow past what peers
accept; only producers in office (and configured peers) may push; a pushed block is judged by its
header before any tx is decoded; faults add to a decaying score that bans; relayed txs get the
same dry run as a wallet's. In-process, on a MemoryKV, requests straight into the ASGI app."""
import json
import time
from concurrent.futures import ThreadPoolExecutor

import msgpack
import pytest

import consensus.chain
from core import codec, crypto
from core.crypto import Keypair
from core.errors import InvalidBlock
from core.genesis import Genesis, Member, Producer
from core.types import MAX_BLOCK_BYTES, MAX_BODY_TEXT, Block, BlockHeader, Tx
from node.api import create_app
from node.config import NodeConfig
from node.keystore import write_key_file
from node.service import NodeService
from p2p import envelope
from p2p.envelope import BAN_SCORE, FAULT_POINTS, SCORE_HALF_LIFE_S, PeerGuard, seal
from state.kv import MemoryKV
from tests.conftest import CHAIN_ID, GENESIS_MS, MEMBERS, TEST_PARAMS, keypair, make_tx, node_keypair
from tests.test_p2p import AppClient, fresh_tx, post

BOB_NODE = node_keypair("bob")


def now_slot(service) -> int:
    return service.genesis.slot_at(time.time_ns() // 1_000_000)


@pytest.fixture
def rich(tmp_path):
    """A node producing as alice (the only producer) whose members hold stake enough for any
    bandwidth allowance: the block-size case needs 9 MB of posts from four accounts."""
    big = 10**15
    g = Genesis(CHAIN_ID, GENESIS_MS, TEST_PARAMS,
                tuple(Member(n, keypair(n).public_key, big, big) for n in MEMBERS),
                (Producer("alice", node_keypair("alice").public_key, "http://alice.test"),))
    (tmp_path / "genesis.json").write_text(json.dumps(g.to_json()))
    write_key_file(tmp_path / "key.json", "alice", node_keypair("alice"))
    return NodeService(NodeConfig(genesis=str(tmp_path / "genesis.json"),
                                  key_file=str(tmp_path / "key.json")), kv=MemoryKV())


def big_posts(count: int) -> list[Tx]:
    expires = time.time_ns() // 1_000_000 + 600_000
    return [make_tx(MEMBERS[i % len(MEMBERS)], "post",
                    {"permlink": f"p{i}", "title": "t", "body": "x" * MAX_BODY_TEXT, "tags": ["t"]},
                    expires_at=expires)
            for i in range(count)]


# ------------------------------------------------------------------ block size
def test_a_producer_fed_more_than_a_block_of_bytes_fills_blocks_under_the_limit_and_finalizes_all(rich):
    txs = big_posts(1100)
    assert sum(len(t.raw) for t in txs) > MAX_BLOCK_BYTES  # 9.1 MB: more than one block
    for tx in txs:
        rich.submit(tx)
    slot = now_slot(rich)
    for s in range(slot, slot + 6):
        rich.produce(s)
    blocks = [rich.chain.final_block_bytes(h) for h in range(1, rich.chain.final_height + 1)]
    assert all(len(b) <= MAX_BLOCK_BYTES for b in blocks)
    assert len(blocks[0]) > MAX_BLOCK_BYTES - 16 * 1024  # full: the next post did not fit
    assert len(Block.decode(blocks[0]).txs) < 1100
    assert {rich.tx_status(t.id)["status"] for t in txs} == {"final"}
    assert not rich.rejected and len(rich.mempool) == 0


def test_the_txs_that_do_not_fit_stay_in_the_mempool_not_rejected(rich):
    txs = big_posts(1100)
    for tx in txs:
        rich.submit(tx)
    block, _, rejected = rich.chain.build_block(rich.producer_key, "alice", now_slot(rich), txs)
    assert rejected == [] and len(block.encode()) == block.encoded_size() <= MAX_BLOCK_BYTES
    assert len(block.txs) < len(txs) and block.txs == tuple(txs[:len(block.txs)])


def test_a_block_over_the_limit_is_refused_by_add_block(rich, monkeypatch):
    txs = big_posts(1100)
    slot = now_slot(rich)
    monkeypatch.setattr(consensus.chain, "MAX_BLOCK_BYTES", 10**9)  # a producer without the limit
    block, _, _ = rich.chain.build_block(rich.producer_key, "alice", slot, txs)
    monkeypatch.undo()
    assert len(block.encode()) == block.encoded_size() > MAX_BLOCK_BYTES
    with pytest.raises(InvalidBlock) as e:
        rich.chain.add_block(block, slot)
    assert e.value.code == "too_large"
    assert rich.chain.tip().height == 0  # nothing attached, nothing to finalize


# ------------------------------------------------------------------ who may push
@pytest.fixture
def client(service):
    return AppClient(create_app(service))


def test_a_registered_candidate_out_of_office_may_not_push(service, client):
    registered = {"alice": node_keypair("alice").public_key, "bob": BOB_NODE.public_key}
    service.chain.producer_key = registered.get  # bob registered a node key, alice is in office
    body = msgpack.packb([fresh_tx("bob", "stake", {"amount": 5}).raw])
    r = post(client, "/p2p/txs", "txs", body, key=BOB_NODE, sender="bob")
    assert (r.status_code, r.json()["error"]["code"]) == (403, "not_in_office")
    assert post(client, "/p2p/txs", "txs", body).status_code == 202  # alice is in office
    service.net.peer_keys["bob"] = BOB_NODE.public_key  # a configured full node may push
    assert post(client, "/p2p/txs", "txs", body, key=BOB_NODE, sender="bob").status_code == 202


# ------------------------------------------------------------------ header first
def forged_block(service, producer: str, key: Keypair, slot: int, tx_bytes: list[bytes],
                 height: int = 1, parent_id: bytes | None = None) -> bytes:
    """Block bytes for `slot` (on genesis unless told), signed by `key`, carrying `tx_bytes` as its
    txs, whatever they are (the roots are not checked before the txs are decoded)."""
    parent_id = service.chain.head().id if parent_id is None else parent_id
    header = BlockHeader(CHAIN_ID, height, parent_id, slot, service.genesis.slot_start_ms(slot),
                         producer, bytes(32), bytes(32), 0)
    sig = key.sign_raw(crypto.sign_bytes_of_encoded("block", header.encode()))
    return (b"\x93" + header.encode() + codec.pack_flat(sig)
            + b"\xdc" + len(tx_bytes).to_bytes(2, "big") + b"".join(tx_bytes))


@pytest.mark.parametrize("producer, key, code, status", [
    ("bob", BOB_NODE, "wrong_producer", 202),         # not scheduled for the slot
    ("alice", BOB_NODE, "bad_signature", 400),        # scheduled, but not signed by its key
])
def test_a_pushed_block_is_refused_by_its_header_before_any_tx_is_decoded(service, client, monkeypatch,
                                                                          producer, key, code, status):
    decoded = []
    real = service.decode_block
    monkeypatch.setattr(service, "decode_block", lambda data: decoded.append(1) or real(data))
    bad_sig = fresh_tx("bob", "stake", {"amount": 5}).raw[:-64] + bytes(64)  # a wrong tx signature
    data = forged_block(service, producer, key, now_slot(service), [bad_sig] * 1000 + [b"\xc1" * 100])
    r = post(client, "/p2p/block", "block", data)
    assert r.status_code == status
    assert (r.json().get("status") or r.json()["error"]["code"]) == code
    assert decoded == []  # the txs, garbage included, were never looked at


# ------------------------------------------------------------------ misbehaviour score
def test_faults_add_up_to_a_ban_that_ends_and_the_score_decays():
    now = [1000.0]
    guard = PeerGuard(clock=lambda: now[0])
    allowance = int(BAN_SCORE // FAULT_POINTS["unknown_parent"])
    for _ in range(allowance - 1):  # honest races: a few unknown parents go unpunished
        assert not guard.fault("bob", "unknown_parent")
    assert guard.score("bob") == pytest.approx(BAN_SCORE - FAULT_POINTS["unknown_parent"])
    assert guard.fault("bob", "unknown_parent") and guard.is_banned("bob")
    assert guard.report()["banned_s"] == {"bob": envelope.BAN_SECONDS}
    with pytest.raises(envelope.RateLimited) as e:
        guard.admit("bob", 10)
    assert e.value.code == "peer_banned"
    now[0] += envelope.BAN_SECONDS + 1
    assert not guard.is_banned("bob") and guard.score("bob") == 0  # the ban served, a fresh start
    guard.admit("bob", 10)
    guard.fault("carol", "wrong_producer")
    now[0] += SCORE_HALF_LIFE_S
    assert guard.score("carol") == pytest.approx(FAULT_POINTS["wrong_producer"] / 2)  # decays
    assert guard.fault("carol", "invalid")  # invalid data bans at once
    assert guard.report()["bans"] == 2


def test_unknown_parents_cost_points_only_when_we_are_not_behind(service, client):
    alice, slot = node_keypair("alice"), now_slot(service)
    lost = forged_block(service, "alice", alice, slot, [], parent_id=b"\x07" * 32)  # height 1
    assert post(client, "/p2p/block", "block", lost).json()["status"] == "unknown_parent"
    assert service.net.guard.score("alice") == pytest.approx(FAULT_POINTS["unknown_parent"], rel=1e-3)
    ahead = forged_block(service, "alice", alice, slot, [], height=50, parent_id=b"\x07" * 32)
    assert post(client, "/p2p/block", "block", ahead).json()["status"] == "unknown_parent"
    assert client.get("/p2p/scores").json()["faults"] == {"unknown_parent": 1}  # we are behind: free


def test_a_flooding_peer_is_banned_by_its_score(service, client):
    service.net.guard = PeerGuard(msgs_per_s=1)  # a burst of 2, then every message is a flood
    body = msgpack.packb([])
    codes = [post(client, "/p2p/txs", "txs", body).status_code for _ in range(2 + int(BAN_SCORE) + 1)]
    assert codes[:2] == [202, 202] and set(codes[2:-1]) == {429}
    assert post(client, "/p2p/txs", "txs", body).json()["error"]["code"] == "peer_banned"
    assert client.get("/p2p/scores").json()["banned_s"]["alice"] > 0


def test_a_relayed_batch_with_a_bad_signature_costs_its_sender_points(service, client):
    tx = fresh_tx("bob", "stake", {"amount": 5})
    forged = Tx.create(Keypair(bytes(32)), tx.chain_id, "stake", "bob", tx.expires_at, {"amount": 6})
    r = post(client, "/p2p/txs", "txs", msgpack.packb([tx.raw, forged.raw]))
    assert r.json()["accepted"] == 1
    assert service.net.guard.score("alice") == pytest.approx(FAULT_POINTS["bad_tx_signature"], rel=1e-3)


# ------------------------------------------------------------------ relayed txs are dry-run
def test_a_relayed_tx_that_fails_its_dry_run_is_not_admitted(service, client):
    unfunded = [make_tx("dave", "transfer", {"to": "carol", "amount": 10**12}, salt=i,
                        expires_at=time.time_ns() // 1_000_000 + 600_000) for i in range(50)]
    funded = fresh_tx("bob", "transfer", {"to": "carol", "amount": 1})
    r = post(client, "/p2p/txs", "txs", msgpack.packb([t.raw for t in unfunded] + [funded.raw]))
    assert r.json()["accepted"] == 1
    assert funded.id in service.mempool and not any(t.id in service.mempool for t in unfunded)
    assert service.net.guard.score("alice") == 0  # a state difference, not a fault


# ------------------------------------------------------------------ real processes
def test_a_testnet_fed_more_than_a_block_of_big_posts_finalizes_them_all_and_refuses_a_candidate(tmp_path):
    """Three validators and a registered candidate out of office (multi-process): the candidate's
    push is refused with 403; 1,100 posts of 8 KiB (9.6 MB, more than a block) become final on every
    validator in blocks no peer refuses (each one served by `GET /v1/blocks/N`)."""
    from core.wallet import Client, Wallet
    from node import testnet
    from node.testnet import free_port_range, prepare
    from tests.test_multinode import assert_same_final_chain, finals

    validators = 3
    prepare(tmp_path, validators, free_port_range(validators), block_interval_ms=1000)
    net = testnet.Testnet(tmp_path)
    members = json.loads((tmp_path / "dev-keys.json").read_text())["members"]
    wallets = [Wallet(m["name"], Keypair(bytes.fromhex(m["seed"])), testnet.CHAIN_ID) for m in members]
    candidate = wallets[validators]
    try:
        net.start_all()
        with Client(net.urls[0]) as c:
            r = c.submit(candidate.register_producer(candidate.public_key, "http://127.0.0.1:9"), wait="final")
            assert r["status"] == "final", r
        envelope_ = seal(candidate.key, testnet.CHAIN_ID, "txs", candidate.name, msgpack.packb([]))
        r = net.client.post(f"{net.urls[1]}/p2p/txs", content=envelope_,
                            headers={"content-type": "application/msgpack"})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "not_in_office")

        posts = [wallets[i % len(wallets)].post(f"big-{i}", "t", "x" * MAX_BODY_TEXT, salt=i)
                 for i in range(1100)]
        assert sum(len(t.raw) for t in posts) > MAX_BLOCK_BYTES
        before = min(finals(net, range(validators)))

        def submit(half: int) -> int:  # half to one node, half to another, at once
            with Client(net.urls[half]) as c:
                return c.submit_batch(posts[half::2])["accepted"]
        with ThreadPoolExecutor(2) as pool:
            assert sum(pool.map(submit, (0, 1))) == len(posts)
        with Client(net.urls[2]) as c:
            for tx in posts[::100] + posts[-1:]:
                assert c.wait_final(tx.id, timeout_s=60)["status"] == "final"
        top = min(finals(net, range(validators)))
        assert_same_final_chain(net, range(validators), top)  # every block served: none too large
        with Client(net.urls[1]) as c:
            counts = [len(c.block(h)["txs"]) for h in range(before + 1, top + 1)]
        # they never fit in one block (a run: 1,006 posts in one, then 94)
        assert sum(counts) >= 1100 and max(counts) < 1100
    finally:
        net.stop_all()
