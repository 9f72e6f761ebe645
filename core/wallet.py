"""The project's one client of the protocol: sign every transaction kind, talk to a node's HTTP API.

`Wallet` builds signed `Tx`s with no I/O (so tests and tools can sign offline); `Client` is a thin
synchronous httpx wrapper over `/v1/` that turns every non-2xx answer into an `ApiError` carrying the
node's snake_case code, and a connection failure into `NodeUnreachable`, so callers can tell "the
node said no" from "there is no node".
"""
import secrets
import time
from urllib.parse import quote

import httpx
import msgpack

from core.crypto import Keypair
from core.genesis import now_ms
from core.types import Tx, make_ticket

DEFAULT_TTL_MS = 10 * 60 * 1000
DEFAULT_NODE_URL = "http://127.0.0.1:8080"


class Wallet:
    """One member's signing identity on one chain. Every method returns a signed, statically
    checked Tx (a bad field raises InvalidTx here, before anything is sent)."""

    def __init__(self, name: str, key: Keypair, chain_id: str, ttl_ms: int = DEFAULT_TTL_MS):
        self.name = name
        self.key = key
        self.chain_id = chain_id
        self.ttl_ms = ttl_ms

    @property
    def public_key(self) -> bytes:
        return self.key.public_key

    def sign(self, kind: str, body: dict, salt: int | None = None) -> Tx:
        """A signed tx of any kind; expiry is now + ttl, salt random unless given (the salt is what
        lets the same intent be sent twice under different ids)."""
        return Tx.create(self.key, self.chain_id, kind, self.name, now_ms() + self.ttl_ms, body,
                         secrets.randbelow(2**32) if salt is None else salt)

    # -- content, behaviour, relationships
    def post(self, permlink: str, title: str, body: str, tags=(), parent: str | None = None,
             event: dict | None = None, *, salt: int | None = None) -> Tx:
        """A post, a comment (`parent` = 'author/permlink') or an event
        (`event` = {"starts_at", "ends_at", "capacity"}, times in ms since epoch)."""
        doc = {"permlink": permlink, "title": title, "body": body, "tags": list(tags)}
        if parent is not None:
            doc["parent"] = parent
        if event is not None:
            doc["event"] = dict(event)
        return self.sign("post", doc, salt)

    def vote_post(self, ref: str, weight: int, *, salt: int | None = None) -> Tx:
        """Curation vote on 'author/permlink', weight in basis points (-10000..10000)."""
        return self.sign("vote", {"post": ref, "weight": weight}, salt)

    def approve_producer(self, name: str, approve: bool = True, *, salt: int | None = None) -> Tx:
        return self.sign("vote", {"producer": name, "approve": approve}, salt)

    def ticket(self, event_ref: str, attendee: str) -> bytes:
        """As the event's organizer: the 64-byte ticket that admits `attendee`."""
        return make_ticket(self.key, self.chain_id, event_ref, attendee)

    def attend(self, event_ref: str, ticket: bytes, *, salt: int | None = None) -> Tx:
        return self.sign("attend", {"event": event_ref, "ticket": bytes(ticket)}, salt)

    def refer(self, new_account: str, pubkey: bytes, *, salt: int | None = None) -> Tx:
        return self.sign("refer", {"new_account": new_account, "pubkey": bytes(pubkey)}, salt)

    # -- chain kinds (amounts in milli-units)
    def transfer(self, to: str, amount: int, memo: str | None = None, *,
                 salt: int | None = None) -> Tx:
        doc = {"to": to, "amount": amount}
        if memo is not None:
            doc["memo"] = memo
        return self.sign("transfer", doc, salt)

    def stake(self, amount: int, *, salt: int | None = None) -> Tx:
        return self.sign("stake", {"amount": amount}, salt)

    def unstake(self, amount: int, *, salt: int | None = None) -> Tx:
        return self.sign("unstake", {"amount": amount}, salt)

    def register_producer(self, node_key: bytes, url: str, *, salt: int | None = None) -> Tx:
        return self.sign("register_producer", {"node_key": bytes(node_key), "url": url}, salt)

    def unjail(self, *, salt: int | None = None) -> Tx:
        return self.sign("unjail", {}, salt)

    def report_equivocation(self, kind: str, first: bytes, second: bytes, *, salt: int | None = None) -> Tx:
        """Report two conflicting messages of one producer for one slot (core.evidence)."""
        return self.sign("report_equivocation", {"first": bytes(first), "kind": kind,
                                                 "second": bytes(second)}, salt)

    # -- governance (producers in office only)
    def propose_param(self, name: str, value: int, effective_height: int, *,
                      salt: int | None = None) -> Tx:
        proposal = {"action": "set_param", "effective_height": effective_height, "name": name,
                    "value": value}
        return self.sign("govern", {"proposal": proposal}, salt)

    def propose_upgrade(self, code: bytes, effective_height: int, *, salt: int | None = None) -> Tx:
        """Replace the rules contract with `code` from effective_height on: bytecode, compiled
        here (`contracts.compile_source`) and verified by every node, which compiles nothing."""
        proposal = {"action": "upgrade_rules", "code": bytes(code),
                    "effective_height": effective_height}
        return self.sign("govern", {"proposal": proposal}, salt)

    def approve_proposal(self, proposal_id, *, salt: int | None = None) -> Tx:
        """Approve a proposal by its id (the id of the tx that made it: bytes or hex)."""
        raw = bytes.fromhex(proposal_id) if isinstance(proposal_id, str) else bytes(proposal_id)
        return self.sign("govern", {"approve": raw}, salt)


class ApiError(Exception):
    """The node answered with a non-2xx status and `{"error": {"code", "message"}}`."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class NodeUnreachable(ConnectionError):
    """No HTTP answer at all (refused, DNS failure, timeout)."""

    def __init__(self, url: str, reason: str):
        super().__init__(f"cannot reach the node at {url}: {reason}")
        self.url = url
        self.reason = reason


def reached(result: dict, wait: str) -> bool:
    """Whether a tx status (`Client.submit`'s answer with `wait`, or `tx_status`) shows the tx at
    the status waited for: `final`, or with wait='included' `included` or `final`. A tx still
    pending after the timeout did not reach it, nor did a rejected one."""
    return result.get("status") in {"included": ("included", "final"), "final": ("final",)}[wait]


def _id_hex(tx_id) -> str:
    return tx_id.hex() if isinstance(tx_id, bytes) else str(tx_id)


class Client:
    """Synchronous client of one node's `/v1/` API. Usable as a context manager."""

    def __init__(self, base_url: str = DEFAULT_NODE_URL, timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None, rate_limit_retries: int = 3,
                 rate_limit_backoff_s: float = 0.5):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        # a request the node refused as over this client's rate (`429 rate_limited`, which
        # changed nothing) is sent again after backoff, 2x backoff, 4x backoff... this many times
        self.rate_limit_retries, self.rate_limit_backoff_s = rate_limit_retries, rate_limit_backoff_s
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _request(self, method: str, path: str, timeout: float | None = None, **kw) -> dict:
        attempt = 0
        while True:
            try:
                return self._request_once(method, path, timeout, **kw)
            except ApiError as e:
                if e.code != "rate_limited" or attempt >= self.rate_limit_retries:
                    raise
            time.sleep(self.rate_limit_backoff_s * 2 ** attempt)
            attempt += 1

    def _request_once(self, method: str, path: str, timeout: float | None, **kw) -> dict:
        try:
            r = self._http.request(method, path, timeout=timeout or self.timeout, **kw)
        except httpx.TransportError as e:
            raise NodeUnreachable(self.base_url, str(e) or type(e).__name__) from None
        try:
            doc = r.json()
        except ValueError:
            doc = None
        if r.is_success and isinstance(doc, dict):
            return doc
        err = doc.get("error") if isinstance(doc, dict) else None
        if isinstance(err, dict):
            raise ApiError(r.status_code, str(err.get("code", "error")), str(err.get("message", "")))
        raise ApiError(r.status_code, f"http_{r.status_code}", r.text[:200] or r.reason_phrase)

    # -- writes
    def submit(self, tx: Tx, wait: str | None = None, timeout_s: float = 30) -> dict:
        """POST the raw signed tx. With wait='included'|'final' the node holds the answer until
        then or until timeout_s; the returned dict's `status` says which happened (`reached`)."""
        params = {}
        if wait and wait != "none":
            params = {"wait": wait, "timeout": str(timeout_s)}
        return self._request("POST", "/v1/transactions", content=tx.raw, params=params,
                             headers={"Content-Type": "application/msgpack"},
                             timeout=self.timeout + (timeout_s if params else 0))

    def submit_batch(self, txs) -> dict:
        body = msgpack.packb([t.raw for t in txs], use_bin_type=True)
        return self._request("POST", "/v1/transactions/batch", content=body,
                             headers={"Content-Type": "application/msgpack"})

    # -- reads
    def tx_status(self, tx_id) -> dict:
        """Status of a tx; a tx this node never saw is `{"status": "unknown"}` rather than an
        error, because a just-sent tx may not have reached this node yet."""
        id_hex = _id_hex(tx_id)
        try:
            return self._request("GET", f"/v1/transactions/{quote(id_hex, safe='')}")
        except ApiError as e:
            if e.code == "unknown_tx":
                return {"id": id_hex, "status": "unknown"}
            raise

    def wait_final(self, tx_id, timeout_s: float = 30, poll_s: float = 0.2) -> dict:
        """Poll until the tx is final or rejected; after timeout_s return the last status seen."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.tx_status(tx_id)
            if status["status"] in ("final", "rejected") or time.monotonic() >= deadline:
                return status
            time.sleep(poll_s)

    def account(self, name: str) -> dict:
        return self._request("GET", f"/v1/accounts/{quote(name, safe='')}")

    def post(self, author: str, permlink: str) -> dict:
        return self._request("GET", f"/v1/posts/{quote(author, safe='')}/{quote(permlink, safe='')}")

    def block(self, ref: int | str = "head") -> dict:
        return self._request("GET", f"/v1/blocks/{quote(str(ref), safe='')}")

    def producers(self) -> dict:
        return self._request("GET", "/v1/producers")

    def status(self) -> dict:
        return self._request("GET", "/v1/status")

    def params(self) -> dict:
        return self._request("GET", "/v1/params")

    def rules(self) -> dict:
        return self._request("GET", "/v1/rules")

    def proposals(self) -> dict:
        return self._request("GET", "/v1/proposals")
