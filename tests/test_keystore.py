"""Key files (node.keystore) and the `keys` commands: encrypted files round-trip and refuse a wrong
passphrase or an altered byte; key and passphrase files others can read are refused; plain files
stay readable; the passphrase comes from the argument, then COMMUNITY_CHAIN_PASSPHRASE_FILE, then
COMMUNITY_CHAIN_PASSPHRASE. Argon2id runs at its minimum cost here (CHEAP_FOR_TESTS) except once,
to check what the default writes."""
import json
import os
import stat

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import node.cli_keys
import node.cli_params
from cli import cli
from core.crypto import Keypair
from node.keystore import (CHEAP_FOR_TESTS, MODERATE, PASSPHRASE_ENV, PASSPHRASE_FILE_ENV, KeyFileError,
                           PassphraseNeeded, WrongPassphrase, read_key_file, read_key_info,
                           read_passphrase_file, write_key_file)

KEY = Keypair(bytes(range(32)))
PW = "correct horse battery staple"


@pytest.fixture(autouse=True)
def no_passphrase_in_env(monkeypatch):
    """Each test starts with neither variable set, and whatever it sets is undone after it."""
    for name in (PASSPHRASE_ENV, PASSPHRASE_FILE_ENV):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def encrypted(tmp_path, name="alice", key=KEY, passphrase=PW):
    path = tmp_path / f"{name}.json"
    write_key_file(path, name, key, passphrase, CHEAP_FOR_TESTS)
    return path


def private_file(path, text):
    path.write_text(text)
    path.chmod(0o600)
    return path


# ------------------------------------------------------------------------------ the format
def test_an_encrypted_file_round_trips_is_private_and_holds_no_seed(tmp_path):
    path = encrypted(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert doc["version"] == 1 and doc["name"] == "alice" and doc["public_key"] == KEY.public_key.hex()
    assert "seed" not in doc and KEY.seed.hex() not in path.read_text()
    assert doc["crypto"]["kdf"] == "argon2id" and doc["crypto"]["cipher"] == "xsalsa20-poly1305"
    kf = read_key_file(path, PW)
    assert (kf.name, kf.key.seed, kf.encrypted) == ("alice", KEY.seed, True)
    assert read_key_info(path) == read_key_info(path) and read_key_info(path).encrypted
    assert read_key_info(path).public_key == KEY.public_key
    again = json.loads(encrypted(tmp_path / "2").read_text())["crypto"]
    assert again["salt"] != doc["crypto"]["salt"] and again["nonce"] != doc["crypto"]["nonce"]


def test_the_default_cost_is_moderate(tmp_path):
    """The one real Argon2id MODERATE derive of the suite (~0.5-1 s)."""
    write_key_file(tmp_path / "k.json", "alice", KEY, PW)
    c = json.loads((tmp_path / "k.json").read_text())["crypto"]
    assert (c["opslimit"], c["memlimit"]) == (MODERATE.opslimit, MODERATE.memlimit) == (3, 256 << 20)


def test_a_wrong_passphrase_is_a_clear_error_naming_the_file(tmp_path):
    path = encrypted(tmp_path)
    with pytest.raises(WrongPassphrase) as e:
        read_key_file(path, PW + "!")
    assert isinstance(e.value, ValueError) and str(e.value).startswith(f"wrong passphrase for {path}")


def _tamper_hex(field, i=0):
    def tamper(doc):
        c = doc["crypto"]
        raw = bytearray(bytes.fromhex(c[field]))
        raw[i] ^= 1
        c[field] = raw.hex()
    return tamper


TAMPERINGS = [
    ("ciphertext-first-byte", _tamper_hex("ciphertext"), "wrong passphrase"),
    ("ciphertext-last-byte", _tamper_hex("ciphertext", -1), "wrong passphrase"),
    ("nonce", _tamper_hex("nonce"), "wrong passphrase"),
    ("salt", _tamper_hex("salt"), "wrong passphrase"),
    ("opslimit", lambda d: d["crypto"].update(opslimit=d["crypto"]["opslimit"] + 1), "wrong passphrase"),
    ("name", lambda d: d.update(name="mallory"), "does not match"),
    ("public_key", lambda d: d.update(public_key=Keypair(b"\x05" * 32).public_key.hex()), "does not match"),
    ("huge-memlimit", lambda d: d["crypto"].update(memlimit=1 << 40), "out of range"),
    ("kdf", lambda d: d["crypto"].update(kdf="scrypt"), "unknown encryption"),
    ("short-nonce", lambda d: d["crypto"].update(nonce="00"), "nonce must be"),
    ("not-hex", lambda d: d["crypto"].update(ciphertext="zz"), "ciphertext is missing or not hex"),
    ("version", lambda d: d.update(version=2), "version 2"),
]


def test_tamperings_have_unique_ids():
    assert len({t[0] for t in TAMPERINGS}) == len(TAMPERINGS)


@pytest.mark.parametrize("tamper,message", [t[1:] for t in TAMPERINGS], ids=[t[0] for t in TAMPERINGS])
def test_an_altered_file_is_refused(tmp_path, tamper, message):
    path = encrypted(tmp_path)
    doc = json.loads(path.read_text())
    tamper(doc)
    private_file(path, json.dumps(doc))
    with pytest.raises(KeyFileError) as e:
        read_key_file(path, PW)
    assert message in str(e.value) and str(path) in str(e.value)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.binary(min_size=32, max_size=32), passphrase=st.text(min_size=1, max_size=40).filter(
    lambda s: "\x00" not in s), name=st.from_regex(r"[a-z][a-z0-9-]{2,15}", fullmatch=True))
def test_any_seed_and_passphrase_round_trip(tmp_path, seed, passphrase, name):
    key = Keypair(seed)
    path = encrypted(tmp_path, name, key, passphrase)
    kf = read_key_file(path, passphrase)
    assert (kf.name, kf.key.seed) == (name, seed)
    with pytest.raises(WrongPassphrase):
        read_key_file(path, passphrase + "x")


def test_the_passphrase_is_unicode_normalized(tmp_path):
    path = encrypted(tmp_path, passphrase="caf\u00e9")  # composed é
    assert read_key_file(path, "cafe\u0301").key.seed == KEY.seed  # e + combining acute


def test_an_empty_passphrase_is_refused_when_writing(tmp_path):
    with pytest.raises(KeyFileError):
        write_key_file(tmp_path / "k.json", "alice", KEY, "", CHEAP_FOR_TESTS)


# ------------------------------------------------------------------------------ plain files, modes
def test_plain_files_stay_readable_the_old_format_too(tmp_path):
    write_key_file(tmp_path / "new.json", "alice", KEY)
    kf = read_key_file(tmp_path / "new.json", "any passphrase is ignored")
    assert (kf.name, kf.key.seed, kf.encrypted) == ("alice", KEY.seed, False)
    old = private_file(tmp_path / "old.json", json.dumps({"name": "bob", "seed": KEY.seed.hex(),
                                                          "public_key": KEY.public_key.hex()}))
    assert read_key_file(old).name == "bob" and not read_key_info(old).encrypted


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o602])
def test_key_files_others_can_access_are_refused(tmp_path, mode):
    for path in (encrypted(tmp_path), tmp_path / "plain.json"):
        if not path.exists():
            write_key_file(path, "alice", KEY)
        path.chmod(mode)
        with pytest.raises(KeyFileError) as e:
            read_key_file(path, PW)
        assert str(e.value) == (f"{path} is accessible by group or others (mode {mode:04o}): "
                                f"run `chmod 600 {path}`")


def test_passphrase_files_others_can_read_are_refused(tmp_path, monkeypatch):
    key_path = encrypted(tmp_path)
    pw = private_file(tmp_path / "pw", PW + "\n")
    assert read_passphrase_file(pw) == PW  # (the trailing newline is not part of it)
    pw.chmod(0o640)
    with pytest.raises(KeyFileError, match="accessible by group or others"):
        read_passphrase_file(pw)
    monkeypatch.setenv(PASSPHRASE_FILE_ENV, str(pw))
    with pytest.raises(KeyFileError, match="accessible by group or others"):
        read_key_file(key_path)
    r = CliRunner().invoke(cli, ["keys", "show", str(key_path), "--seed", "--passphrase-file", str(pw)])
    assert r.exit_code == 2 and "accessible by group or others" in r.output


def test_the_passphrase_comes_from_the_argument_then_the_file_variable_then_the_variable(tmp_path, monkeypatch):
    path = encrypted(tmp_path)
    with pytest.raises(PassphraseNeeded) as e:
        read_key_file(path)
    assert all(s in str(e.value) for s in ("--passphrase-file", PASSPHRASE_FILE_ENV, PASSPHRASE_ENV))
    monkeypatch.setenv(PASSPHRASE_ENV, PW)
    assert read_key_file(path).key.seed == KEY.seed
    monkeypatch.setenv(PASSPHRASE_FILE_ENV, str(private_file(tmp_path / "pw", "not it\n")))
    with pytest.raises(WrongPassphrase):  # the file wins over the variable
        read_key_file(path)
    private_file(tmp_path / "pw", PW + "\n")
    monkeypatch.setenv(PASSPHRASE_ENV, "not it")
    assert read_key_file(path).key.seed == KEY.seed
    monkeypatch.setenv(PASSPHRASE_FILE_ENV, str(private_file(tmp_path / "pw2", "not it\n")))
    assert read_key_file(path, PW).key.seed == KEY.seed  # the argument wins over both


# ------------------------------------------------------------------------------ the keys commands
def keys(*args, input=None):
    return CliRunner().invoke(cli, ["keys", *map(str, args)], input=input)


def test_keys_generate_encrypts_and_show_needs_no_passphrase(tmp_path):
    pw = private_file(tmp_path / "pw", PW)
    out = tmp_path / "k" / "alice.json"
    r = keys("generate", "--name", "alice", "--out", out, "--passphrase-file", pw, "--kdf", "interactive")
    assert r.exit_code == 0, r.output
    made = json.loads(r.stdout)
    assert made["encrypted"] and stat.S_IMODE(out.stat().st_mode) == 0o600
    assert json.loads(out.read_text())["crypto"]["memlimit"] == 64 << 20
    shown = keys("show", out)
    assert shown.exit_code == 0 and json.loads(shown.stdout) == {
        "name": "alice", "public_key": made["public_key"], "encrypted": True}
    no_pw = keys("show", out, "--seed")
    assert no_pw.exit_code == 2 and "no passphrase" in no_pw.output and "seed" not in no_pw.stdout
    seed = json.loads(keys("show", out, "--seed", "--passphrase-file", pw).stdout)["seed"]
    assert Keypair(bytes.fromhex(seed)).public_key.hex() == made["public_key"]
    again = keys("generate", "--name", "alice", "--out", out, "--passphrase-file", pw)
    assert again.exit_code == 2 and "--force" in again.output


def test_keys_generate_without_a_passphrase_or_terminal_says_where_to_give_one(tmp_path):
    r = keys("generate", "--name", "alice", "--out", tmp_path / "k.json")
    assert r.exit_code == 2 and not (tmp_path / "k.json").exists()
    assert all(s in r.output for s in ("--passphrase-file", PASSPHRASE_FILE_ENV, PASSPHRASE_ENV))


def test_keys_generate_plain_warns_loudly(tmp_path):
    r = keys("generate", "--name", "alice", "--out", tmp_path / "k.json", "--insecure-plain")
    assert r.exit_code == 0 and "UNENCRYPTED" in r.stderr and "UNENCRYPTED" not in r.stdout
    assert not json.loads(r.stdout)["encrypted"] and not read_key_info(tmp_path / "k.json").encrypted


def test_a_terminal_is_asked_twice_when_creating_and_the_answer_kept_when_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(node.cli_params, "is_interactive", lambda: True)
    monkeypatch.setattr(node.cli_keys, "is_interactive", lambda: True)
    out = tmp_path / "k.json"
    r = keys("generate", "--name", "alice", "--out", out, "--kdf", "interactive", input="pw1\npw2\npw1\npw1\n")
    assert r.exit_code == 0, r.output
    assert "do not match" in r.output.lower() and read_key_file(out, "pw1").name == "alice"
    r = keys("show", out, "--seed", input="wrong\npw1\n")
    assert r.exit_code == 0 and "wrong passphrase, try again" in r.stderr
    assert os.environ[PASSPHRASE_ENV] == "pw1"  # (for the node service, which reads it again)
    monkeypatch.delenv(PASSPHRASE_ENV)
    r = keys("show", out, "--seed", input="a\nb\nc\n")
    assert r.exit_code == 2 and "wrong passphrase for" in r.output and PASSPHRASE_ENV not in os.environ


def test_keys_import_encrypts_a_seed_from_stdin_or_a_plain_file(tmp_path):
    pw = private_file(tmp_path / "pw", PW)
    r = keys("import", "--out", tmp_path / "a.json", "--name", "alice", "--passphrase-file", pw,
             "--kdf", "interactive", input=KEY.seed.hex() + "\n")
    assert r.exit_code == 0, r.output
    assert read_key_file(tmp_path / "a.json", PW).key.seed == KEY.seed
    assert keys("import", "--out", tmp_path / "x.json", "--passphrase-file", pw,
                input=KEY.seed.hex()).exit_code == 2  # a seed needs --name
    assert "32 bytes" in keys("import", "--out", tmp_path / "x.json", "--name", "alice",
                              "--passphrase-file", pw, input="abcd").output
    write_key_file(tmp_path / "plain.json", "bob", KEY)
    r = keys("import", tmp_path / "plain.json", "--out", tmp_path / "plain.json", "--force",
             "--passphrase-file", pw, "--kdf", "interactive")  # encrypting in place
    assert r.exit_code == 0, r.output
    kf = read_key_file(tmp_path / "plain.json", PW)
    assert (kf.name, kf.key.seed, kf.encrypted) == ("bob", KEY.seed, True)
    r = keys("import", tmp_path / "plain.json", "--out", tmp_path / "y.json", "--passphrase-file", pw)
    assert r.exit_code == 2 and "already encrypted" in r.output


def test_keys_export_writes_a_plain_file_or_the_seed_with_a_warning(tmp_path):
    path = encrypted(tmp_path)
    pw = private_file(tmp_path / "pw", PW)
    r = keys("export", path, "--seed", "--passphrase-file", pw)
    assert r.exit_code == 0 and r.stdout.strip() == KEY.seed.hex() and "WARNING" in r.stderr
    r = keys("export", path, "--out", tmp_path / "plain.json", "--passphrase-file", pw)
    assert r.exit_code == 0 and "UNENCRYPTED" in r.stderr
    assert stat.S_IMODE((tmp_path / "plain.json").stat().st_mode) == 0o600
    assert read_key_file(tmp_path / "plain.json").key.seed == KEY.seed
    assert keys("export", path, "--passphrase-file", pw).exit_code == 2  # neither --out nor --seed
    bad = private_file(tmp_path / "bad", "nope")
    r = keys("export", path, "--seed", "--passphrase-file", bad)
    assert r.exit_code == 2 and f"wrong passphrase for {path}" in r.output and KEY.seed.hex() not in r.output


def test_keys_change_passphrase_rewrites_in_place(tmp_path, monkeypatch):
    path = encrypted(tmp_path)
    old, new = private_file(tmp_path / "old", PW), private_file(tmp_path / "new", "new one")
    r = keys("change-passphrase", path, "--new-passphrase-file", new, "--kdf", "interactive")
    assert r.exit_code == 2  # no old passphrase: nothing changed
    monkeypatch.setenv(PASSPHRASE_ENV, PW)
    r = keys("change-passphrase", path, "--new-passphrase-file", new, "--kdf", "interactive")
    assert r.exit_code == 0, r.output
    assert read_key_file(path, "new one").key.seed == KEY.seed and stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(WrongPassphrase):
        read_key_file(path, PW)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left
    r = keys("change-passphrase", path, "--passphrase-file", old, "--new-passphrase-file", new)
    assert r.exit_code == 2 and "wrong passphrase" in r.output
