"""Paged listings (node.paging): `GET /v1/producers` and `GET /v1/proposals` take `?limit=&after=`,
read at most a page, and a page walk sees exactly what a full scan sees, non-final writes included."""
import asyncio

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from node.api import create_app
from node.paging import MAX_PAGE_SIZE, scan_page
from state import records, schema
from state.kv import MemoryKV
from state.records import ProducerRecord, Proposal
from state.view import Layer
from tests.conftest import node_keypair

P = b"v1/s/x/"
keys = st.binary(min_size=1, max_size=3)
writes = st.dictionaries(keys, st.one_of(st.none(), st.binary(min_size=1, max_size=2)), max_size=12)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(keys, st.binary(min_size=1, max_size=2), max_size=12), st.lists(writes, max_size=3),
       st.integers(1, 5))
def test_a_page_walk_sees_what_a_full_scan_sees(stored, layers, limit):
    kv = MemoryKV()
    kv.write({P + k: v for k, v in stored.items()} | {b"v1/s/y/other": b"1"})
    layer = Layer(None, kv)
    for w in layers:
        layer = Layer(layer)
        layer.writes.update({P + k: v for k, v in w.items()})
    expected = [(k[len(P):], v) for k, v in layer.scan(P)]
    seen, after = [], b""
    while True:
        page, more = scan_page(layer, P, after, limit)
        assert len(page) <= limit and (not more or len(page) == limit)
        seen += page
        if not more:
            break
        after = page[-1][0]
    assert seen == expected


def get(app, path):
    async def go():
        transport = httpx.ASGITransport(app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as c:
            return await c.get(path)
    return asyncio.run(go())


def test_producers_come_in_pages(service):
    names = [f"cand-{i:03d}" for i in range(250)]
    service.chain.kv.write({schema.producer_key(n): records.encode(ProducerRecord(node_keypair(n).public_key, ""))
                            for n in names})
    app = create_app(service)
    everyone = sorted(names + ["alice"])
    first = get(app, "/v1/producers").json()
    assert len(first["producers"]) == MAX_PAGE_SIZE and first["next"] == everyone[MAX_PAGE_SIZE - 1]
    seen, after = [], ""
    while True:
        doc = get(app, f"/v1/producers?limit=30&after={after}").json()
        seen += [p["name"] for p in doc["producers"]]
        if doc["next"] is None:
            break
        after = doc["next"]
    assert seen == everyone and "schedule" in doc and "jailed" in doc
    for bad in ("limit=0", f"limit={MAX_PAGE_SIZE + 1}", "limit=x", "after=" + "a" * 65):
        r = get(app, f"/v1/producers?{bad}")
        assert (r.status_code, r.json()["error"]["code"]) == (400, "bad_query")


def test_proposals_come_in_pages(service):
    ids = [bytes([i]) * 32 for i in range(1, 8)]
    service.chain.kv.write({schema.proposal_key(i): records.encode(
        Proposal("alice", "set_param", "attend_points", 5, b"", 10**9, 1, "pending", ["alice"])) for i in ids})
    app = create_app(service)
    first = get(app, "/v1/proposals?limit=3").json()
    assert [p["id"] for p in first["proposals"]] == [i.hex() for i in ids[:3]] and first["next"] == ids[2].hex()
    rest = get(app, f"/v1/proposals?after={ids[2].hex()}").json()
    assert [p["id"] for p in rest["proposals"]] == [i.hex() for i in ids[3:]] and rest["next"] is None
    assert get(app, "/v1/proposals?after=zz").json()["error"]["code"] == "bad_query"
