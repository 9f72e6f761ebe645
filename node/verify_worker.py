"""A signature-verifying worker process (started by node.verify_pool; `python -m node.verify_worker`).

It reads requests from stdin and writes answers to stdout, one at a time, each a 4-byte big-endian
length and that many bytes. A request is a run of items, each a 32-byte public key, a 64-byte
signature, a 2-byte message length and the message; the answer holds one byte per item, 1 if the
signature is valid. It exits when stdin closes, which is also what happens when the node dies.
"""
import os
import signal
import sys

from core import crypto

NICE = 10  # below the node: block production, import and votes get the cores first


def verify_items(payload: bytes) -> bytes:
    out = bytearray()
    i, end = 0, len(payload)
    while i < end:
        key, signature = payload[i:i + 32], payload[i + 32:i + 96]
        size = int.from_bytes(payload[i + 96:i + 98], "big")
        out.append(crypto.verify_raw(key, payload[i + 98:i + 98 + size], signature))
        i += 98 + size
    return bytes(out)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the node stops its workers itself
    if hasattr(os, "nice"):
        os.nice(NICE)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = stdin.read(4)
        if len(head) < 4:
            return
        payload = stdin.read(int.from_bytes(head, "big"))
        answer = verify_items(payload)
        stdout.write(len(answer).to_bytes(4, "big") + answer)
        stdout.flush()


if __name__ == "__main__":
    main()
