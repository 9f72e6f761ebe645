"""Typed errors.

`ProtocolError` and its subclasses are what a client or peer got wrong: they carry a snake_case code
and the HTTP status the API answers with, and are never a reason to halt. `InvariantBroken` is our
own bug (a broken internal invariant): the node halts rather than sign something wrong.
"""


class ProtocolError(Exception):
    status = 400

    def __init__(self, code: str, message: str = "", status: int | None = None):
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message or code.replace("_", " ")
        if status is not None:
            self.status = status


class Malformed(ProtocolError):
    """Bytes that are not a well-formed object of the expected shape."""


class InvalidTx(ProtocolError):
    """A transaction that is well-formed but not valid against the rules or the state."""


class InvalidBlock(ProtocolError):
    """A block (or its header/signature/roots) that must not be accepted."""


class InvalidVote(ProtocolError):
    """A vote that is malformed, wrongly signed or from a non-producer."""


class InvariantBroken(Exception):
    """Our own state is inconsistent; continuing could sign or commit something wrong."""
