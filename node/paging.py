"""Pages of the listing endpoints (`GET /v1/producers`, `GET /v1/proposals`): `?limit=&after=`.

A request reads at most `limit` records (default and most: MAX_PAGE_SIZE), in key order, from the
first key after `after`: the store is read lazily and the non-final blocks' writes under the prefix
are merged in, so no request decodes every record of the chain. The answer's `next` is the `after`
of the next page (null on the last one).
"""
from core.errors import Malformed
from state.view import Layer

MAX_PAGE_SIZE = 100


def parse_page_query(limit: str | None, after: str | None, after_is_hex: bool) -> tuple[int, bytes]:
    """(limit, after as key bytes) from the query; Malformed(bad_query) when out of range."""
    try:
        size = MAX_PAGE_SIZE if limit in (None, "") else int(limit)
    except ValueError:
        raise Malformed("bad_query", f"limit is an integer 1..{MAX_PAGE_SIZE}") from None
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise Malformed("bad_query", f"limit is an integer 1..{MAX_PAGE_SIZE}")
    if not after:
        return size, b""
    try:
        start = bytes.fromhex(after) if after_is_hex else after.encode()
    except ValueError:
        raise Malformed("bad_query", "after is the hex id of the last proposal of a page") from None
    if len(start) > 64:
        raise Malformed("bad_query", "after is at most 64 bytes")
    return size, start


def scan_page(layer: Layer, prefix: bytes, after: bytes, limit: int) -> tuple[list[tuple[bytes, bytes]], bool]:
    """Up to `limit` (key suffix, value) pairs under `prefix` whose suffix sorts after `after`, in
    key order, as `layer` sees them; and whether more follow."""
    start = prefix + after
    overlay: dict[bytes, bytes | None] = {}
    chain, node = [], layer
    while node is not None:
        chain.append(node)
        node = node.parent
    for node in reversed(chain):  # the non-final blocks' writes, oldest first: later ones win
        for k, v in node.writes.items():
            if k.startswith(prefix) and k > start:
                overlay[k] = v
    pending = sorted(overlay.items())
    out: list[tuple[bytes, bytes]] = []
    i = 0

    def emit(k: bytes, v: bytes | None) -> bool:
        """Add one pair (None: deleted); True once the page is full and one more exists."""
        if v is not None:
            if len(out) == limit:
                return True
            out.append((k[len(prefix):], v))
        return False

    for k, v in layer.kv.scan(prefix):
        if k <= start:
            continue
        while i < len(pending) and pending[i][0] < k:
            if emit(*pending[i]):
                return out, True
            i += 1
        if i < len(pending) and pending[i][0] == k:
            v = pending[i][1]
            i += 1
        if emit(k, v):
            return out, True
    for k, v in pending[i:]:
        if emit(k, v):
            return out, True
    return out, False
