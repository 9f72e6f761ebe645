"""Ed25519 keys and domain-separated signatures.

Every signature covers `sign_bytes(tag, obj) = msgpack([tag, obj])`, with tag one of `TAGS`, so a
signature made for one kind of object can never be replayed as another. Verification goes straight
to libsodium's crypto_sign_open through cffi, which releases the GIL while it runs.
"""
import nacl.exceptions
import nacl.signing
from nacl.bindings import crypto_sign_open

from core import codec

TAGS = frozenset({"tx", "block", "vote", "ticket", "p2p"})
PUBKEY_LEN = 32
SIG_LEN = 64


def sign_bytes(tag: str, obj) -> bytes:
    if tag not in TAGS:
        raise ValueError(f"unknown signing tag {tag!r}")
    return codec.pack([tag, obj])


def sign_bytes_of_encoded(tag: str, encoded: bytes) -> bytes:
    """sign_bytes when obj's canonical bytes are already known (avoids a second encode).

    msgpack([tag, obj]) is the 2-element array header, the tag string, then obj's bytes.
    """
    return b"\x92" + codec.pack_flat(tag) + encoded


class Keypair:
    """An Ed25519 signing key from a 32-byte seed."""

    __slots__ = ("seed", "public_key", "_signing")

    def __init__(self, seed: bytes):
        if len(seed) != 32:
            raise ValueError("a seed is 32 bytes")
        self.seed = bytes(seed)
        self._signing = nacl.signing.SigningKey(self.seed)
        self.public_key = bytes(self._signing.verify_key)

    @classmethod
    def generate(cls) -> "Keypair":
        return cls(bytes(nacl.signing.SigningKey.generate()))

    def sign_raw(self, message: bytes) -> bytes:
        return self._signing.sign(message).signature

    def sign(self, tag: str, obj) -> bytes:
        return self.sign_raw(sign_bytes(tag, obj))


def verify_raw(public_key: bytes, message: bytes, signature: bytes) -> bool:
    if len(public_key) != PUBKEY_LEN or len(signature) != SIG_LEN:
        return False
    try:
        crypto_sign_open(signature + message, public_key)
    except nacl.exceptions.BadSignatureError:
        return False
    return True


def verify(public_key: bytes, tag: str, obj, signature: bytes) -> bool:
    return verify_raw(public_key, sign_bytes(tag, obj), signature)
