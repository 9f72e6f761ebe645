"""Static checks of a transaction (core.types.Tx.decode): take a valid signed tx of each kind, break
one field, and expect the exact error class, code and HTTP status. Then the signature domain."""
import copy

import msgpack
import pytest

from contracts import compile_source
from contracts.rules import load_default_rules
from core import codec, crypto
from core.errors import InvalidTx, Malformed
from core.types import (MAX_BODY_TEXT, MAX_INT, MAX_RULES_CODE_BYTES, MAX_TX_BYTES, Tx,
                        is_ticket_valid, make_ticket)
from tests.conftest import CHAIN_ID, EXPIRES, keypair, node_keypair

SENDER = "alice"
KEY = keypair(SENDER)

BASES = {
    "post": ("post", {"body": "hello world", "permlink": "first-post", "tags": ["intro", "news"],
                      "title": "Hello"}),
    "comment": ("post", {"body": "nice", "parent": "bob/first-post", "permlink": "re-first-post",
                         "tags": [], "title": ""}),
    "event": ("post", {"body": "come", "event": {"capacity": 10, "ends_at": 2000, "starts_at": 1000},
                       "permlink": "meetup", "tags": ["meetup"], "title": "Meetup"}),
    "vote_post": ("vote", {"post": "bob/first-post", "weight": 5000}),
    "vote_producer": ("vote", {"approve": True, "producer": "bob"}),
    "attend": ("attend", {"event": "bob/meetup",
                          "ticket": make_ticket(keypair("bob"), CHAIN_ID, "bob/meetup", SENDER)}),
    "refer": ("refer", {"new_account": "erin", "pubkey": keypair("erin").public_key}),
    "transfer": ("transfer", {"amount": 1000, "memo": "thanks", "to": "bob"}),
    "stake": ("stake", {"amount": 100}),
    "unstake": ("unstake", {"amount": 100}),
    "register_producer": ("register_producer", {"node_key": node_keypair(SENDER).public_key,
                                                "url": "http://alice.test:8000"}),
    "unjail": ("unjail", {}),
    "govern_param": ("govern", {"proposal": {"action": "set_param", "effective_height": 100,
                                             "name": "attend_points", "value": 2000}}),
    "govern_upgrade": ("govern", {"proposal": {"action": "upgrade_rules",
                                               "code": compile_source("def on_post():\n    pass\n"),
                                               "effective_height": 100}}),
    "govern_approve": ("govern", {"approve": b"p" * 32}),
}
REQUIRED = {
    "post": ["body", "permlink", "tags", "title"], "comment": ["body", "permlink", "tags", "title"],
    "event": ["body", "permlink", "tags", "title"], "attend": ["event", "ticket"],
    "refer": ["new_account", "pubkey"], "transfer": ["amount", "to"], "stake": ["amount"],
    "unstake": ["amount"], "register_producer": ["node_key", "url"],
}


def packb(obj) -> bytes:
    """Plain msgpack (no key sorting, floats allowed): lets a case build any byte string."""
    return msgpack.packb(obj, use_bin_type=True)


def sign(unsigned, key=KEY, tag="tx") -> bytes:
    return key.sign_raw(b"\x92" + packb(tag) + packb(unsigned))


def unsigned_of(base: str) -> list:
    kind, body = BASES[base]
    return [1, CHAIN_ID, kind, SENDER, EXPIRES, 0, copy.deepcopy(body)]


def encode(unsigned, signature=None) -> bytes:
    return packb([unsigned, sign(unsigned) if signature is None else signature])


@pytest.mark.parametrize("base", sorted(BASES))
def test_every_base_tx_is_valid(base):
    raw = encode(unsigned_of(base))
    tx = Tx.decode(raw)
    assert tx.raw == raw and tx.verify(KEY.public_key)
    kind, body = BASES[base]
    assert Tx.create(KEY, CHAIN_ID, kind, SENDER, EXPIRES, body) == tx


# ---------------------------------------------------------------------------------- break one field
def body_set(**changes):
    """Mutation: set body keys (kept in sorted order)."""
    def mutate(u):
        u[6].update(changes)
        u[6] = dict(sorted(u[6].items()))
        return u
    return mutate


def body_del(key):
    def mutate(u):
        del u[6][key]
        return u
    return mutate


def proposal_set(**changes):
    """Mutation: set keys of a govern body's proposal (kept in sorted order)."""
    def mutate(u):
        u[6]["proposal"] = dict(sorted({**u[6]["proposal"], **changes}.items()))
        return u
    return mutate


def field(i, value):
    def mutate(u):
        u[i] = value
        return u
    return mutate


def signed_with(signature):
    return lambda u: packb([u, signature])


def raw_fields(*, salt: bytes):
    """The tx bytes built field by field, with the salt's encoding given as raw bytes."""
    def mutate(u):
        head = b"\x97" + b"".join(packb(x) for x in u[:5]) + salt + packb(u[6])
        return b"\x92" + head + packb(KEY.sign_raw(b"\x92" + packb("tx") + head))
    return mutate


M, I = Malformed, InvalidTx
CASES = [
    # shape of the envelope
    ("top_level_map", "transfer", lambda u: packb({"signature": sign(u), "unsigned": u}), M, "malformed"),
    ("signed_array_of_3", "transfer", lambda u: packb([u, sign(u), 0]), M, "malformed"),
    ("signed_array_of_1", "transfer", lambda u: packb([u]), M, "malformed"),
    ("unsigned_not_array", "transfer", lambda u: packb([packb(u), sign(u)]), M, "malformed"),
    ("unsigned_of_6", "transfer", lambda u: u[:6], M, "malformed"),
    ("unsigned_of_8", "transfer", lambda u: u + [0], M, "malformed"),
    ("trailing_bytes", "transfer", lambda u: encode(u) + b"\xc0", M, "malformed"),
    ("truncated", "transfer", lambda u: encode(u)[:-1], M, "malformed"),
    ("ext_type_in_body", "transfer", lambda u: encode(u).replace(packb("thanks"), b"\xd6\x05abcd"), M,
     "malformed"),
    # version, chain, kind
    ("version_2", "transfer", field(0, 2), I, "unsupported_version"),
    ("version_0", "stake", field(0, 0), I, "unsupported_version"),
    ("version_true", "stake", field(0, True), I, "unsupported_version"),
    ("chain_id_not_text", "transfer", field(1, 7), M, "malformed"),
    ("kind_not_text", "transfer", field(2, b"transfer"), M, "malformed"),
    ("unknown_kind", "transfer", field(2, "mint"), I, "unknown_kind"),
    ("kind_wrong_case", "transfer", field(2, "Transfer"), I, "unknown_kind"),
    # sender
    ("sender_upper_case", "transfer", field(3, "Alice"), I, "invalid_field"),
    ("sender_too_short", "transfer", field(3, "ab"), I, "invalid_field"),
    ("sender_too_long", "transfer", field(3, "a" * 17), I, "invalid_field"),
    ("sender_leading_digit", "transfer", field(3, "1abc"), I, "invalid_field"),
    ("sender_trailing_newline", "transfer", field(3, "alice\n"), I, "invalid_field"),
    ("sender_not_text", "transfer", field(3, b"alice"), I, "invalid_field"),
    # expiry and salt
    ("expires_negative", "transfer", field(4, -1), I, "invalid_field"),
    ("expires_beyond_int63", "transfer", field(4, 2**63), I, "invalid_field"),
    ("expires_float", "transfer", field(4, float(EXPIRES)), I, "invalid_field"),
    ("salt_negative", "transfer", field(5, -5), I, "invalid_field"),
    ("salt_non_minimal", "transfer", raw_fields(salt=b"\xcd\x00\x05"), M, "non_canonical"),
    # size
    ("oversized", "post", body_set(body="x" * MAX_TX_BYTES), M, "too_large"),
    ("body_text_over_8k", "post", body_set(body="x" * (MAX_BODY_TEXT + 1)), I, "invalid_field"),
    ("body_text_over_8k_in_bytes", "post", body_set(body="é" * (MAX_BODY_TEXT // 2 + 1)), I, "invalid_field"),
    ("title_over_256_bytes", "post", body_set(title="é" * 129), I, "invalid_field"),
    ("memo_over_256", "transfer", body_set(memo="m" * 257), I, "invalid_field"),
    # signature
    ("signature_63_bytes", "transfer", lambda u: packb([u, sign(u)[:63]]), I, "bad_signature"),
    ("signature_65_bytes", "transfer", lambda u: packb([u, sign(u) + b"\x00"]), I, "bad_signature"),
    ("signature_as_text", "transfer", signed_with("x" * 64), I, "bad_signature"),
    ("signature_nil", "transfer", signed_with(None), I, "bad_signature"),
    # body: encoding
    ("body_keys_unsorted", "transfer", lambda u: field(6, dict(reversed(list(u[6].items()))))(u), M,
     "non_canonical"),
    ("body_key_bytes", "stake", field(6, {b"amount": 1}), M, "non_canonical"),
    ("body_not_a_map", "stake", field(6, [["amount", 1]]), I, "malformed"),
    ("float_in_body", "transfer", body_set(amount=1000.0), I, "invalid_field"),
    ("float32_in_body", "stake", lambda u: encode(u).replace(b"\xa6amount\x64", b"\xa6amount\xca\x42\xc8\x00\x00"),
     M, "non_canonical"),
    # body: keys
    ("unknown_key_last", "transfer", body_set(zzz=1), I, "unknown_key"),
    ("unknown_key_first", "stake", body_set(aaa=1), I, "unknown_key"),
    ("govern_key_on_stake", "stake", body_set(proposal="x"), I, "unknown_key"),
    # post
    ("permlink_upper", "post", body_set(permlink="Bad"), I, "invalid_field"),
    ("permlink_leading_dash", "post", body_set(permlink="-x"), I, "invalid_field"),
    ("permlink_empty", "post", body_set(permlink=""), I, "invalid_field"),
    ("permlink_65", "post", body_set(permlink="a" * 65), I, "invalid_field"),
    ("permlink_slash", "post", body_set(permlink="a/b"), I, "invalid_field"),
    ("permlink_space", "post", body_set(permlink="a b"), I, "invalid_field"),
    ("tags_6", "post", body_set(tags=["a", "b", "c", "d", "e", "f"]), I, "invalid_field"),
    ("tags_duplicate", "post", body_set(tags=["a", "a"]), I, "invalid_field"),
    ("tag_upper", "post", body_set(tags=["News"]), I, "invalid_field"),
    ("tag_33", "post", body_set(tags=["t" * 33]), I, "invalid_field"),
    ("tag_not_text", "post", body_set(tags=[1]), I, "invalid_field"),
    ("tags_not_list", "post", body_set(tags="news"), I, "invalid_field"),
    ("tag_is_a_list", "post", body_set(tags=[["news"]]), I, "invalid_field"),
    ("tag_is_a_map", "post", body_set(tags=[{"a": 1}]), I, "invalid_field"),
    ("parent_no_slash", "comment", body_set(parent="bob"), I, "invalid_field"),
    ("parent_two_slashes", "comment", body_set(parent="bob/a/b"), I, "invalid_field"),
    ("parent_bad_author", "comment", body_set(parent="Bob/first-post"), I, "invalid_field"),
    ("parent_empty", "comment", body_set(parent=""), I, "invalid_field"),
    ("comment_is_event", "comment", body_set(event={"capacity": 1, "ends_at": 2, "starts_at": 1}), I,
     "invalid_field"),
    ("event_ends_before_start", "event", body_set(event={"capacity": 1, "ends_at": 5, "starts_at": 5}), I,
     "invalid_field"),
    ("event_capacity_0", "event", body_set(event={"capacity": 0, "ends_at": 6, "starts_at": 5}), I,
     "invalid_field"),
    ("event_capacity_too_big", "event",
     body_set(event={"capacity": 1_000_001, "ends_at": 6, "starts_at": 5}), I, "invalid_field"),
    ("event_extra_key", "event",
     body_set(event={"capacity": 1, "ends_at": 6, "extra": 1, "starts_at": 5}), I, "invalid_field"),
    ("event_missing_key", "event", body_set(event={"ends_at": 6, "starts_at": 5}), I, "invalid_field"),
    # (a nested map out of order is rejected by the event schema, code invalid_field)
    ("event_keys_unsorted", "event", body_set(event={"starts_at": 5, "ends_at": 6, "capacity": 1}), I,
     "invalid_field"),
    ("event_not_map", "event", body_set(event=[1, 2, 3]), I, "invalid_field"),
    # vote
    ("vote_post_and_producer", "vote_post", body_set(approve=True, producer="bob"), I, "invalid_field"),
    ("vote_post_without_weight", "vote_post", body_del("weight"), I, "invalid_field"),
    ("vote_post_with_approve", "vote_post", lambda u: field(6, {"approve": True, "post": "bob/x"})(u), I,
     "invalid_field"),
    ("vote_producer_without_approve", "vote_producer", body_del("approve"), I, "invalid_field"),
    ("vote_empty", "vote_post", field(6, {}), I, "invalid_field"),
    ("weight_10001", "vote_post", body_set(weight=10001), I, "invalid_field"),
    ("weight_minus_10001", "vote_post", body_set(weight=-10001), I, "invalid_field"),
    ("weight_bool", "vote_post", body_set(weight=True), I, "invalid_field"),
    ("weight_float", "vote_post", body_set(weight=0.5), I, "invalid_field"),
    ("vote_bad_post_ref", "vote_post", body_set(post="bob/Bad"), I, "invalid_field"),
    ("approve_int", "vote_producer", body_set(approve=1), I, "invalid_field"),
    ("producer_bad_name", "vote_producer", body_set(producer="B"), I, "invalid_field"),
    # attend, refer, transfer, stake, register_producer
    ("ticket_63", "attend", body_set(ticket=b"t" * 63), I, "invalid_field"),
    ("ticket_as_text", "attend", body_set(ticket="t" * 64), I, "invalid_field"),
    ("attend_bad_event_ref", "attend", body_set(event="meetup"), I, "invalid_field"),
    ("pubkey_31", "refer", body_set(pubkey=b"k" * 31), I, "invalid_field"),
    ("pubkey_as_text", "refer", body_set(pubkey="k" * 32), I, "invalid_field"),
    ("new_account_bad_name", "refer", body_set(new_account="x"), I, "invalid_field"),
    ("to_bad_name", "transfer", body_set(to="Bob"), I, "invalid_field"),
    ("amount_0", "transfer", body_set(amount=0), I, "invalid_field"),
    ("amount_negative", "transfer", body_set(amount=-1), I, "invalid_field"),
    ("amount_beyond_int63", "stake", body_set(amount=2**63), I, "invalid_field"),
    ("amount_text", "unstake", body_set(amount="100"), I, "invalid_field"),
    ("node_key_33", "register_producer", body_set(node_key=b"k" * 33), I, "invalid_field"),
    ("url_over_256", "register_producer", body_set(url="u" * 257), I, "invalid_field"),
    # govern: exactly one of proposal and approve; each proposal action has its exact keys
    ("govern_empty", "govern_approve", field(6, {}), I, "invalid_field"),
    ("govern_proposal_and_approve", "govern_param", body_set(approve=b"p" * 32), I, "invalid_field"),
    ("approve_31", "govern_approve", body_set(approve=b"p" * 31), I, "invalid_field"),
    ("approve_as_text", "govern_approve", body_set(approve="p" * 32), I, "invalid_field"),
    ("proposal_not_map", "govern_param", body_set(proposal=[1]), I, "invalid_field"),
    ("proposal_unknown_action", "govern_param", proposal_set(action="delete"), I, "invalid_field"),
    ("proposal_action_of_other_keys", "govern_upgrade", proposal_set(action="set_param"), I,
     "invalid_field"),
    ("proposal_extra_key", "govern_param", proposal_set(zz=1), I, "invalid_field"),
    ("proposal_keys_unsorted", "govern_param", body_set(proposal={
        "value": 1, "name": "x", "effective_height": 1, "action": "set_param"}), I, "invalid_field"),
    ("param_name_bad", "govern_param", proposal_set(name="Attend-Points"), I, "invalid_field"),
    ("param_name_65", "govern_param", proposal_set(name="a" * 65), I, "invalid_field"),
    ("param_value_negative", "govern_param", proposal_set(value=-1), I, "invalid_field"),
    ("param_value_bool", "govern_param", proposal_set(value=True), I, "invalid_field"),
    ("effective_height_negative", "govern_param", proposal_set(effective_height=-1), I, "invalid_field"),
    # an upgrade carries bytecode (verified on chain), never source: nothing compiles on a node
    ("upgrade_source_beside_code", "govern_upgrade", proposal_set(source="def f():\n    pass\n"), I,
     "invalid_field"),
    ("upgrade_source_instead_of_code", "govern_upgrade", body_set(proposal={
        "action": "upgrade_rules", "effective_height": 100, "source": "def f():\n    pass\n"}), I,
     "invalid_field"),
    ("upgrade_code_empty", "govern_upgrade", proposal_set(code=b""), I, "invalid_field"),
    ("upgrade_code_over_max", "govern_upgrade", proposal_set(code=b"c" * (MAX_RULES_CODE_BYTES + 1)),
     I, "invalid_field"),
    ("upgrade_code_as_text", "govern_upgrade", proposal_set(code="CAVM"), I, "invalid_field"),
    ("upgrade_code_as_list", "govern_upgrade", proposal_set(code=[1]), I, "invalid_field"),
    ("upgrade_effective_height_bool", "govern_upgrade", proposal_set(effective_height=True), I,
     "invalid_field"),
    ("upgrade_effective_height_over_max", "govern_upgrade", proposal_set(effective_height=MAX_INT + 1),
     I, "invalid_field"),
    ("upgrade_keys_unsorted", "govern_upgrade", body_set(proposal={
        "effective_height": 100, "code": b"CAVM\x01", "action": "upgrade_rules"}), I, "invalid_field"),
]
# every required key of every kind, missing; an unknown key on every kind
CASES += [(f"missing_{base}_{key}", base, body_del(key), I, "missing_field")
          for base, keys in REQUIRED.items() for key in keys]
CASES += [(f"unknown_key_{base}", base, body_set(zz_extra=1), I, "unknown_key") for base in BASES]


@pytest.mark.parametrize("base,mutate,exc,code", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_break_one_field(base, mutate, exc, code):
    out = mutate(unsigned_of(base))
    raw = out if type(out) is bytes else encode(out)
    with pytest.raises((Malformed, InvalidTx)) as e:
        Tx.decode(raw)
    assert type(e.value) is exc, f"{type(e.value).__name__}: {e.value}"
    assert e.value.code == code, str(e.value)
    assert e.value.status == (413 if code == "too_large" else 400)


def test_case_ids_are_unique():
    assert len({c[0] for c in CASES}) == len(CASES)


BOUNDARIES = [
    ("weight_10000", "vote_post", body_set(weight=10000)),
    ("weight_minus_10000", "vote_post", body_set(weight=-10000)),
    ("weight_0", "vote_post", body_set(weight=0)),
    ("tags_5", "post", body_set(tags=["a", "b", "c", "d", "e"])),
    ("body_exactly_8k", "post", body_set(body="x" * MAX_BODY_TEXT)),
    ("title_256_bytes", "post", body_set(title="é" * 128)),
    ("permlink_64", "post", body_set(permlink="a" * 64)),
    ("permlink_single_digit", "post", body_set(permlink="7")),
    ("sender_3_chars", "transfer", field(3, "abc")),
    ("sender_16_chars", "transfer", field(3, "a" + "-" * 14 + "9")),
    ("amount_max", "stake", body_set(amount=MAX_INT)),
    ("expires_0", "stake", field(4, 0)),
    ("expires_max", "stake", field(4, MAX_INT)),
    ("salt_max", "stake", field(5, MAX_INT)),
    ("event_capacity_max", "event", body_set(event={"capacity": 1_000_000, "ends_at": 2, "starts_at": 1})),
    ("transfer_without_memo", "transfer", body_del("memo")),
    ("vote_producer_revoke", "vote_producer", body_set(approve=False)),
    ("chain_id_any_text", "stake", field(1, "Another Chain")),
    ("param_name_64", "govern_param", proposal_set(name="a" * 64)),
    ("param_value_max", "govern_param", proposal_set(value=MAX_INT)),
    ("default_rules_code_fits_a_tx", "govern_upgrade", proposal_set(code=load_default_rules())),
    ("upgrade_code_max_bytes_fits_a_tx", "govern_upgrade", proposal_set(code=b"c" * MAX_RULES_CODE_BYTES)),
    ("upgrade_code_1_byte", "govern_upgrade", proposal_set(code=b"c")),
]


@pytest.mark.parametrize("base,mutate", [c[1:] for c in BOUNDARIES], ids=[c[0] for c in BOUNDARIES])
def test_boundary_values_are_accepted(base, mutate):
    raw = encode(mutate(unsigned_of(base)))
    assert Tx.decode(raw).raw == raw


def test_tx_create_runs_the_same_static_checks():
    with pytest.raises(InvalidTx) as e:
        Tx.create(KEY, CHAIN_ID, "transfer", SENDER, EXPIRES, {"to": "bob", "amount": 0})
    assert e.value.code == "invalid_field"
    # but it sorts the body for the wallet, so key order in the caller's dict does not matter
    a = Tx.create(KEY, CHAIN_ID, "transfer", SENDER, EXPIRES, {"to": "bob", "amount": 5})
    b = Tx.create(KEY, CHAIN_ID, "transfer", SENDER, EXPIRES, {"amount": 5, "to": "bob"})
    assert a.raw == b.raw and a.id == b.id


def test_tx_in_block_with_a_list_tag_is_an_invalid_block_not_a_crash():
    from core.errors import InvalidBlock
    from core.types import Block, BlockHeader, ZERO_HASH
    bad = body_set(tags=[["x"]])(unsigned_of("post"))
    header = BlockHeader(CHAIN_ID, 1, ZERO_HASH, 1, 1, "alice", ZERO_HASH, ZERO_HASH, 0)
    block_raw = b"\x93" + header.encode() + packb(b"s" * 64) + b"\x91" + encode(bad)
    with pytest.raises(InvalidBlock) as e:
        Block.decode(block_raw)
    assert e.value.code == "invalid_field"


# ---------------------------------------------------------------------------------- signatures
@pytest.mark.parametrize("base", sorted(BASES))
def test_signed_by_another_key_fails_verify(base):
    u = unsigned_of(base)
    tx = Tx.decode(encode(u, sign(u, keypair("mallory"))))
    assert tx.verify(keypair("mallory").public_key)
    assert not tx.verify(KEY.public_key)


@pytest.mark.parametrize("tag", sorted(crypto.TAGS - {"tx"}))
def test_signature_under_another_domain_tag_fails(tag):
    u = unsigned_of("transfer")
    sig = KEY.sign(tag, u)
    tx = Tx.decode(encode(u, sig))
    assert not tx.verify(KEY.public_key)
    # the same key over the "tx" domain is what verifies
    assert Tx.decode(encode(u, KEY.sign("tx", u))).verify(KEY.public_key)


def test_signature_does_not_cover_a_changed_field():
    u = unsigned_of("transfer")
    sig = sign(u)
    for i, value in [(1, "other-chain"), (3, "bob"), (4, EXPIRES + 1), (5, 1)]:
        changed = copy.deepcopy(u)
        changed[i] = value
        assert not Tx.decode(encode(changed, sig)).verify(KEY.public_key)
    changed = body_set(amount=1001)(copy.deepcopy(u))
    assert not Tx.decode(encode(changed, sig)).verify(KEY.public_key)


def test_verify_rejects_keys_of_the_wrong_length():
    tx = Tx.decode(encode(unsigned_of("stake")))
    assert not tx.verify(KEY.public_key[:31])
    assert not tx.verify(KEY.public_key + b"\x00")


def test_signing_message_is_sign_bytes_of_the_unsigned_tx():
    u = unsigned_of("event")
    tx = Tx.decode(encode(u))
    assert tx.signing_message() == crypto.sign_bytes("tx", u)
    assert crypto.sign_bytes_of_encoded("tx", codec.pack(u)) == crypto.sign_bytes("tx", u)


def test_sign_bytes_rejects_unknown_tags():
    with pytest.raises(ValueError):
        crypto.sign_bytes("transfer", [1])


def test_ticket_validity():
    organizer, event = keypair("bob"), "bob/meetup"
    ticket = make_ticket(organizer, CHAIN_ID, event, "alice")
    assert is_ticket_valid(organizer.public_key, CHAIN_ID, event, "alice", ticket)
    # signed by someone who is not the organizer
    forged = make_ticket(keypair("carol"), CHAIN_ID, event, "alice")
    assert not is_ticket_valid(organizer.public_key, CHAIN_ID, event, "alice", forged)
    # bound to the attendee, the event and the chain
    assert not is_ticket_valid(organizer.public_key, CHAIN_ID, event, "dave", ticket)
    assert not is_ticket_valid(organizer.public_key, CHAIN_ID, "bob/other", "alice", ticket)
    assert not is_ticket_valid(organizer.public_key, "other-chain", event, "alice", ticket)
    # the same content signed under another domain tag is not a ticket
    as_vote = organizer.sign("vote", [CHAIN_ID, event, "alice"])
    assert not is_ticket_valid(organizer.public_key, CHAIN_ID, event, "alice", as_vote)
    assert not is_ticket_valid(organizer.public_key, CHAIN_ID, event, "alice", ticket[:63])
