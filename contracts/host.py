"""The host API: the only way a contract touches the world.

`Host` is the interface the chain implements over its state. `Journal` wraps any Host and buffers
every write (storage, awards, events) until `commit()`, which is how a failed call leaves nothing
behind. `DictHost` is an in-memory Host for tests, tools and golden vectors.
"""
from typing import Protocol

from contracts.errors import VMFault
from contracts.values import INT_MAX, decode_own_value, decode_value, encode_value

DIMENSIONS = ("content", "behaviour", "relationship")
MAX_KEY_BYTES = 256
MAX_VALUE_BYTES = 16 * 1024
MAX_EVENT_BYTES = 4 * 1024
MAX_EVENT_NAME = 64
MAX_EVENTS = 64


class Host(Protocol):
    """What the chain offers a contract. Values in and out are plain Python values of VM types
    (int, bytes, str, bool, None, list, dict); the VM copies and validates everything it reads,
    so a host may return its own objects.

    A host whose class says `trusted_values = True` (the chain's: it builds what it returns from
    checked state) promises instead that every value its `tx`, `block`, `account`, `post`,
    `param`, `now`, `stake` and `pool` return is a valid VM value that nothing else holds: a new
    list or map on every call (`values.copy_value` of what it keeps). The VM then neither checks
    nor copies them, and still pays for them by the same size model."""

    def tx(self) -> dict:
        """The tx being applied: {"kind": str, "sender": str, "id": bytes, "body": dict}."""

    def block(self) -> dict:
        """The block being applied: {"height": int, "slot": int, "timestamp": int (ms)}."""

    def storage_get(self, key: bytes):
        """The contract's own stored value under key, or None."""

    def storage_get_encoded(self, key: bytes) -> bytes | None:
        """The bytes stored under key (`encode_value` of the value stored), or None. The VM reads
        storage with this and decodes the bytes itself: only it writes them."""

    def storage_set(self, key: bytes, value) -> None:
        """Store a VM value (the host keeps it as `encode_value(value)`)."""

    def storage_delete(self, key: bytes) -> None:
        """Remove key; removing a missing key does nothing."""

    def account(self, name: str) -> dict | None:
        """{"name", "balance", "stake", "referrer", "joined_height", "content", "behaviour",
        "relationship"} or None if there is no such account."""

    def post(self, author: str, permlink: str) -> dict | None:
        """{"author", "permlink", "parent", "is_event", "created_height", "created_at",
        "net_votes", ...} or None."""

    def param(self, name: str) -> int:
        """A chain/rules parameter; unknown names raise VMFault("unknown_param")."""

    def now(self) -> int:
        """The block's timestamp (ms): `block()["timestamp"]`."""

    def stake(self, name: str) -> int:
        """The account's active stake as the call started (its stake less what is still
        maturing); 0 if there is no such account."""

    def pool(self, dimension: str) -> int:
        """What the dimension's reward pool holds now, after the call's own awards so far. Called
        only with a dimension in DIMENSIONS (the Journal checks)."""

    def award(self, account: str, dimension: str, amount: int) -> None:
        """Pay amount (milli-units) to account from the dimension's reward pool. Called only with
        an existing account, a dimension in DIMENSIONS and amount >= 0 (the Journal checks), so it
        must not fail: when the pool holds less, it pays what the pool has."""

    def emit(self, name: str, data: dict) -> None:
        """Record an event in the tx's receipt."""

    # Optional: `all_or_nothing = True` says that the host itself drops everything a call did
    # when the call fails (the chain's host writes into a per-tx journal it discards on a
    # fault), so `run` hands it each write as soon as it is made (`WriteThrough`), not at the end.
    # It then also needs `put_encoded(key, blob)` (storage_set of bytes `encode_value` made).


def check_dimension(dimension) -> str:
    if type(dimension) is not str or dimension not in DIMENSIONS:
        raise VMFault("bad_award", f"dimension must be one of {', '.join(DIMENSIONS)}")
    return dimension


def check_key(key) -> bytes:
    if type(key) is not bytes or not 0 < len(key) <= MAX_KEY_BYTES:
        raise VMFault("bad_storage_key", f"storage keys are 1..{MAX_KEY_BYTES} bytes")
    return key


class Journal:
    """A Host that reads through to another Host and buffers all writes until commit().

    Reads see the buffered writes (read-your-writes). Every write is validated when it is made,
    so commit() cannot fail half-way: it applies the final value of each written key in sorted
    key order, then the awards and events in the order they were made.
    """

    def __init__(self, host: Host):
        self.host = host
        self.writes: dict[bytes, bytes | None] = {}
        self.awards: list[tuple[str, str, int]] = []
        self._events: list[tuple[str, bytes]] = []

    def tx(self) -> dict:
        return self.host.tx()

    def block(self) -> dict:
        return self.host.block()

    def account(self, name: str) -> dict | None:
        return self.host.account(name)

    def post(self, author: str, permlink: str) -> dict | None:
        return self.host.post(author, permlink)

    def param(self, name: str) -> int:
        return self.host.param(name)

    def now(self) -> int:
        return self.host.now()

    def stake(self, name: str) -> int:
        return self.host.stake(name)

    def pool(self, dimension: str) -> int:
        """The host's pool less what the buffered awards will pay from it (each what is left, up
        to its amount, as the host pays them at commit)."""
        left = self.host.pool(check_dimension(dimension))
        for _, awarded, amount in self.awards:
            if awarded == dimension:
                left -= min(amount, left)
        return left

    def storage_get(self, key: bytes):
        blob = self.storage_get_encoded(key)
        return None if blob is None else decode_own_value(blob)

    def storage_get_encoded(self, key: bytes) -> bytes | None:
        if check_key(key) in self.writes:
            return self.writes[key]
        return self.host.storage_get_encoded(key)

    def storage_set(self, key: bytes, value) -> None:
        self.put_encoded(key, encode_value(value))

    def put_encoded(self, key: bytes, blob: bytes) -> None:
        """storage_set for a value already encoded with `encode_value` (the VM measures it first)."""
        if len(blob) > MAX_VALUE_BYTES:
            raise VMFault("storage_value_too_large", f"{len(blob)} bytes, the limit is {MAX_VALUE_BYTES}")
        self.writes[check_key(key)] = blob

    def storage_delete(self, key: bytes) -> None:
        self.writes[check_key(key)] = None

    def award(self, account: str, dimension: str, amount: int) -> None:
        check_dimension(dimension)
        if type(amount) is not int or not 0 <= amount <= INT_MAX:
            raise VMFault("bad_award", "amount must be a non-negative integer (milli-units)")
        if type(account) is not str or self.host.account(account) is None:
            raise VMFault("unknown_account", f"no account {account!r}")
        self.awards.append((account, dimension, amount))

    def emit(self, name: str, data: dict) -> None:
        if type(data) is not dict:
            raise VMFault("bad_event", "event data is a map")
        self.emit_encoded(name, encode_value(data))

    def emit_encoded(self, name: str, blob: bytes) -> None:
        """emit for a map already encoded with `encode_value` (the VM checks and measures it first)."""
        if type(name) is not str or not 0 < len(name) <= MAX_EVENT_NAME:
            raise VMFault("bad_event", f"event names are 1..{MAX_EVENT_NAME} characters")
        if len(blob) > MAX_EVENT_BYTES:
            raise VMFault("bad_event", f"event data is {len(blob)} bytes, the limit is {MAX_EVENT_BYTES}")
        if len(self._events) >= MAX_EVENTS:
            raise VMFault("too_many_events", f"at most {MAX_EVENTS} events per call")
        self._events.append((name, blob))

    @property
    def events(self) -> list[tuple[str, dict]]:
        """The events emitted so far, decoded (from bytes `encode_value` made: no check needed)."""
        return [(name, decode_own_value(blob)) for name, blob in self._events]

    def commit(self) -> None:
        """Apply every buffered write to the wrapped host, then forget them. A host with
        `put_encoded` (a Journal, the chain's host) gets the encoded bytes: no decode and
        re-encode per key."""
        if not (self.writes or self.awards or self._events):
            return
        put_encoded = getattr(self.host, "put_encoded", None)
        for key in sorted(self.writes):
            blob = self.writes[key]
            if blob is None:
                self.host.storage_delete(key)
            elif put_encoded is not None:
                put_encoded(key, blob)
            else:
                self.host.storage_set(key, decode_value(blob))
        for account, dimension, amount in self.awards:
            self.host.award(account, dimension, amount)
        for name, data in self.events:
            self.host.emit(name, data)
        self.discard()

    def discard(self) -> None:
        """Forget every buffered write."""
        self.writes = {}
        self.awards = []
        self._events = []


class WriteThrough(Journal):
    """A Journal for a host that is itself all or nothing (`Host.all_or_nothing`): each write is
    validated exactly as a Journal does and then made in the host at once, so nothing is buffered,
    sorted or replayed. What a contract can observe is the same: storage reads see the writes
    made, and the host's `account` must keep answering what it answered before an award (awards
    are paid as they are made instead of at the end; a host caches what a call read of an
    account, and the Journal's check reads it before the award). Events are kept to the end."""

    def storage_get_encoded(self, key: bytes) -> bytes | None:
        return self.host.storage_get_encoded(check_key(key))

    def put_encoded(self, key: bytes, blob: bytes) -> None:
        if len(blob) > MAX_VALUE_BYTES:
            raise VMFault("storage_value_too_large", f"{len(blob)} bytes, the limit is {MAX_VALUE_BYTES}")
        self.host.put_encoded(check_key(key), blob)

    def storage_delete(self, key: bytes) -> None:
        self.host.storage_delete(check_key(key))

    def pool(self, dimension: str) -> int:
        return self.host.pool(check_dimension(dimension))  # the awards are paid already

    def award(self, account: str, dimension: str, amount: int) -> None:
        super().award(account, dimension, amount)
        self.host.award(account, dimension, amount)

    def commit(self) -> None:
        for name, data in self.events:
            self.host.emit(name, data)
        self.discard()


class DictHost:
    """An in-memory Host: parameters, accounts, posts, pools and storage in dicts.

    Awards move amounts from `pools[dimension]` to the account's dimension total (capped by the
    pool) and are recorded in `awards`; events in `events`. Storage holds encoded bytes, as a
    real host does.
    """

    def __init__(self, *, params: dict | None = None, pools: dict | None = None):
        self.params = dict(params or {})
        self.pools = dict(pools) if pools is not None else {d: 10 ** 15 for d in DIMENSIONS}
        self.accounts: dict[str, dict] = {}
        self.posts: dict[tuple[str, str], dict] = {}
        self.storage: dict[bytes, bytes] = {}
        self.awards: list[tuple[str, str, int]] = []
        self.events: list[tuple[str, dict]] = []
        self.current_tx = {"kind": "", "sender": "", "id": b"", "body": {}}
        self.current_block = {"height": 0, "slot": 0, "timestamp": 0}

    def set_tx(self, kind: str, sender: str, body: dict, tx_id: bytes = b"\x00" * 32) -> None:
        self.current_tx = {"kind": kind, "sender": sender, "id": tx_id, "body": body}

    def set_block(self, height: int, timestamp: int, slot: int | None = None) -> None:
        self.current_block = {"height": height, "slot": height if slot is None else slot,
                              "timestamp": timestamp}

    def add_account(self, name: str, *, balance: int = 0, stake: int = 0,
                    referrer: str | None = None, joined_height: int = 0) -> dict:
        self.accounts[name] = {"name": name, "balance": balance, "stake": stake,
                               "referrer": referrer, "joined_height": joined_height,
                               "content": 0, "behaviour": 0, "relationship": 0}
        return self.accounts[name]

    def add_post(self, author: str, permlink: str, *, parent: str | None = None,
                 is_event: bool = False, created_height: int = 0, created_at: int = 0) -> dict:
        self.posts[(author, permlink)] = {
            "author": author, "permlink": permlink, "parent": parent, "is_event": is_event,
            "created_height": created_height, "created_at": created_at, "net_votes": 0}
        return self.posts[(author, permlink)]

    def snapshot(self) -> dict:
        """Everything a contract call could change, as plain values (for before/after checks)."""
        return {"storage": dict(self.storage), "pools": dict(self.pools),
                "accounts": {n: dict(a) for n, a in self.accounts.items()},
                "awards": list(self.awards), "events": list(self.events)}

    def storage_values(self) -> dict:
        """Storage decoded: key -> value."""
        return {k: decode_value(v) for k, v in sorted(self.storage.items())}

    def tx(self) -> dict:
        return self.current_tx

    def block(self) -> dict:
        return self.current_block

    def storage_get(self, key: bytes):
        blob = self.storage.get(key)
        return None if blob is None else decode_value(blob)

    def storage_get_encoded(self, key: bytes) -> bytes | None:
        return self.storage.get(key)

    def storage_set(self, key: bytes, value) -> None:
        self.storage[key] = encode_value(value)

    def put_encoded(self, key: bytes, blob: bytes) -> None:
        """storage_set of a value a Journal already encoded (and checked)."""
        self.storage[key] = blob

    def storage_delete(self, key: bytes) -> None:
        self.storage.pop(key, None)

    def account(self, name: str) -> dict | None:
        return self.accounts.get(name)

    def post(self, author: str, permlink: str) -> dict | None:
        return self.posts.get((author, permlink))

    def param(self, name: str) -> int:
        if name not in self.params:
            raise VMFault("unknown_param", f"no parameter {name!r}")
        return self.params[name]

    def now(self) -> int:
        return self.current_block["timestamp"]

    def stake(self, name: str) -> int:
        """An account's `stake` (a DictHost has no maturing stake: all of it is active)."""
        account = self.accounts.get(name)
        return 0 if account is None else account["stake"]

    def pool(self, dimension: str) -> int:
        return self.pools[dimension]

    def award(self, account: str, dimension: str, amount: int) -> None:
        paid = min(amount, self.pools[dimension])
        self.pools[dimension] -= paid
        self.accounts[account][dimension] += paid
        self.awards.append((account, dimension, paid))

    def emit(self, name: str, data: dict) -> None:
        self.events.append((name, data))
