"""Key files: one account's Ed25519 seed on disk, owner-only (0600), encrypted under a passphrase.

Not part of the protocol (nodes never see a key file); this module is its one definition. A file
is JSON, version 1:

    {"version": 1, "name", "public_key",
     "crypto": {"kdf": "argon2id", "opslimit", "memlimit", "salt", "cipher": "xsalsa20-poly1305",
                "nonce", "ciphertext"}}

The key is Argon2id(passphrase, salt) and the ciphertext is a SecretBox (XSalsa20-Poly1305) of the
32-byte seed followed by the name, so neither can be altered unnoticed; `public_key` is checked
against the decrypted seed. A plain file holds `"seed"` (hex) instead of `crypto`: the dev keys,
testnets and tests write those, and they stay readable.

The passphrase of an encrypted file, when the caller gives none, comes from the environment:
COMMUNITY_CHAIN_PASSPHRASE_FILE (a file, refused if group/other can read it), then
COMMUNITY_CHAIN_PASSPHRASE. That is how `node run` reads its producer key unattended; prompting
on a terminal is the command line's business (node.cli_params).
"""
import json
import os
import secrets
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.pwhash.argon2id as argon2id
import nacl.secret

from core.crypto import Keypair

VERSION = 1
CIPHER = "xsalsa20-poly1305"  # nacl.secret.SecretBox
PASSPHRASE_FILE_ENV = "COMMUNITY_CHAIN_PASSPHRASE_FILE"
PASSPHRASE_ENV = "COMMUNITY_CHAIN_PASSPHRASE"
PASSPHRASE_SOURCES = (f"--passphrase-file FILE where the command has it, {PASSPHRASE_FILE_ENV}=FILE "
                      f"(mode 600) or {PASSPHRASE_ENV} in the environment, or a terminal to be asked on")


@dataclass(frozen=True)
class KdfLimits:
    """Argon2id cost: passes over memory and bytes of memory (libsodium's opslimit, memlimit)."""
    opslimit: int
    memlimit: int


# MODERATE (3 passes, 256 MiB): libsodium's setting for a secret opened once per start. A key file
# is opened once per `node run` or `tx` command, where its 0.5-0.6 s goes unnoticed, while each
# guess of an attacker holding the file costs as much time and 256 MiB. INTERACTIVE (64 MiB,
# 0.08 s) is ~6x cheaper to guess; SENSITIVE (1 GiB, 5.4 s) too slow per command and too big for a
# small VM. (Times measured on the 2-core build VM, libsodium via PyNaCl.)
MODERATE = KdfLimits(argon2id.OPSLIMIT_MODERATE, argon2id.MEMLIMIT_MODERATE)
INTERACTIVE = KdfLimits(argon2id.OPSLIMIT_INTERACTIVE, argon2id.MEMLIMIT_INTERACTIVE)
SENSITIVE = KdfLimits(argon2id.OPSLIMIT_SENSITIVE, argon2id.MEMLIMIT_SENSITIVE)
# tests only: derives in ~0.1 ms and protects nothing
CHEAP_FOR_TESTS = KdfLimits(argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN)
KDF_LIMITS = {"moderate": MODERATE, "interactive": INTERACTIVE, "sensitive": SENSITIVE}
# what a file may ask of the reader: at most SENSITIVE's memory and 4x its passes, so a crafted
# file cannot make `node run` allocate beyond what any setting here writes
_MAX_OPSLIMIT, _MAX_MEMLIMIT = 4 * argon2id.OPSLIMIT_SENSITIVE, argon2id.MEMLIMIT_SENSITIVE


class KeyFileError(ValueError):
    """A key or passphrase file this process cannot use; the message names the file."""


class WrongPassphrase(KeyFileError):
    def __init__(self, path):
        super().__init__(f"wrong passphrase for {path} (or the file was altered)")


class PassphraseNeeded(KeyFileError):
    def __init__(self, path):
        super().__init__(f"{path} is encrypted and no passphrase was given: use {PASSPHRASE_SOURCES}")


@dataclass(frozen=True)
class KeyFile:
    name: str
    key: Keypair
    encrypted: bool = False


@dataclass(frozen=True)
class KeyInfo:
    """What a key file says without its passphrase. For an encrypted file `public_key` is only
    checked against the seed when the file is decrypted (read_key_file)."""
    name: str
    public_key: bytes
    encrypted: bool


def check_private(path) -> None:
    """Refuse (KeyFileError) a secret file readable or writable by group or others, as ssh
    refuses a private key: a secret that others can read is no longer ours alone."""
    mode = os.stat(path).st_mode & 0o777
    if mode & 0o077:
        raise KeyFileError(f"{path} is accessible by group or others (mode {mode:04o}): "
                           f"run `chmod 600 {path}`")


def normalize_passphrase(passphrase: str) -> bytes:
    """The bytes a passphrase stands for: NFC, so the same text typed on two systems derives the
    same key."""
    return unicodedata.normalize("NFC", passphrase).encode()


def read_passphrase_file(path) -> str:
    """The passphrase in `path`: its text without the trailing newline; refused if group or
    others can read it, or if it is empty."""
    check_private(path)
    text = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    if not text:
        raise KeyFileError(f"passphrase file {path} is empty")
    return text


def passphrase_from_env() -> str | None:
    """COMMUNITY_CHAIN_PASSPHRASE_FILE (a file's content), else COMMUNITY_CHAIN_PASSPHRASE, else
    None."""
    if os.environ.get(PASSPHRASE_FILE_ENV):
        return read_passphrase_file(os.environ[PASSPHRASE_FILE_ENV])
    return os.environ.get(PASSPHRASE_ENV) or None


def _derive(passphrase: str, salt: bytes, limits: KdfLimits) -> bytes:
    return argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE, normalize_passphrase(passphrase), salt,
                        opslimit=limits.opslimit, memlimit=limits.memlimit)


def encrypt_doc(name: str, key: Keypair, passphrase: str, limits: KdfLimits = MODERATE) -> dict:
    """The JSON document of an encrypted key file (fresh salt and nonce each time)."""
    if not passphrase:
        raise KeyFileError("an empty passphrase protects nothing")
    salt = secrets.token_bytes(argon2id.SALTBYTES)
    nonce = secrets.token_bytes(nacl.secret.SecretBox.NONCE_SIZE)
    box = nacl.secret.SecretBox(_derive(passphrase, salt, limits))
    ciphertext = box.encrypt(key.seed + name.encode(), nonce).ciphertext
    return {"version": VERSION, "name": name, "public_key": key.public_key.hex(),
            "crypto": {"kdf": "argon2id", "opslimit": limits.opslimit, "memlimit": limits.memlimit,
                       "salt": salt.hex(), "cipher": CIPHER, "nonce": nonce.hex(),
                       "ciphertext": ciphertext.hex()}}


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, 0600 from the start, replacing any old file atomically: a crash
    leaves the old key or the new one, never half of either (change-passphrase rewrites in place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_key_file(path: str | Path, name: str, key: Keypair, passphrase: str | None = None,
                   limits: KdfLimits = MODERATE) -> None:
    """Write a key file readable by its owner only (0600), never world-readable even briefly:
    encrypted under `passphrase`, or plain without one (dev keys, testnets, tests)."""
    if passphrase is None:
        doc = {"version": VERSION, "name": name, "seed": key.seed.hex(),
               "public_key": key.public_key.hex()}
    else:
        doc = encrypt_doc(name, key, passphrase, limits)
    _write_private(Path(path), json.dumps(doc, indent=2) + "\n")


def _load(path) -> dict:
    check_private(path)
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise KeyFileError(f"{path} is not a key file (not JSON: {e})") from None
    if type(doc) is not dict or type(doc.get("name")) is not str:
        raise KeyFileError(f"{path} is not a key file (no name)")
    if doc.get("version", VERSION) != VERSION:
        raise KeyFileError(f"{path}: key file version {doc.get('version')!r}; this program reads {VERSION}")
    return doc


def _hex(path, doc: dict, field: str, length: int | None = None) -> bytes:
    try:
        raw = bytes.fromhex(doc[field])
    except (KeyError, TypeError, ValueError):
        raise KeyFileError(f"{path}: {field} is missing or not hex") from None
    if length is not None and len(raw) != length:
        raise KeyFileError(f"{path}: {field} must be {length} bytes")
    return raw


def is_encrypted(path) -> bool:
    return "crypto" in _load(path)


def read_key_info(path) -> KeyInfo:
    """Name and public key, no passphrase needed (`keys show`, `node doctor`)."""
    doc = _load(path)
    if "crypto" not in doc:
        kf = _decode_plain(path, doc)
        return KeyInfo(kf.name, kf.key.public_key, False)
    return KeyInfo(doc["name"], _hex(path, doc, "public_key", 32), True)


def _decode_plain(path, doc: dict) -> KeyFile:
    key = Keypair(_hex(path, doc, "seed", 32))
    if "public_key" in doc and doc["public_key"] != key.public_key.hex():
        raise KeyFileError(f"{path}: public_key does not match the seed")
    return KeyFile(doc["name"], key, False)


def _decrypt(path, doc: dict, passphrase: str) -> KeyFile:
    c = doc["crypto"]
    if type(c) is not dict or c.get("kdf") != "argon2id" or c.get("cipher", CIPHER) != CIPHER:
        raise KeyFileError(f"{path}: unknown encryption (kdf argon2id, cipher {CIPHER} expected)")
    ops, mem = c.get("opslimit"), c.get("memlimit")
    if (type(ops) is not int or type(mem) is not int or not argon2id.OPSLIMIT_MIN <= ops <= _MAX_OPSLIMIT
            or not argon2id.MEMLIMIT_MIN <= mem <= _MAX_MEMLIMIT):
        raise KeyFileError(f"{path}: opslimit/memlimit out of range")
    salt = _hex(path, c, "salt", argon2id.SALTBYTES)
    nonce = _hex(path, c, "nonce", nacl.secret.SecretBox.NONCE_SIZE)
    ciphertext = _hex(path, c, "ciphertext")
    box = nacl.secret.SecretBox(_derive(passphrase, salt, KdfLimits(ops, mem)))
    try:
        plain = box.decrypt(ciphertext, nonce)
    except nacl.exceptions.CryptoError:
        raise WrongPassphrase(path) from None
    seed, name = plain[:32], plain[32:].decode(errors="replace")
    key = Keypair(seed)
    if name != doc["name"] or doc.get("public_key") != key.public_key.hex():
        raise KeyFileError(f"{path}: name or public_key does not match the encrypted key (altered?)")
    return KeyFile(name, key, True)


def read_key_file(path: str | Path, passphrase: str | None = None) -> KeyFile:
    """The key in `path`. Refused (KeyFileError, a ValueError) if the file is accessible by group
    or others, malformed, or encrypted and the passphrase (given, else from the environment:
    passphrase_from_env) is missing or wrong."""
    doc = _load(path)
    if "crypto" not in doc:
        return _decode_plain(path, doc)
    if passphrase is None:
        passphrase = passphrase_from_env()
    if passphrase is None:
        raise PassphraseNeeded(path)
    return _decrypt(path, doc, passphrase)
