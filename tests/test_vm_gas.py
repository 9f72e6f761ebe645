"""Metering: gas is exact (the sum of the executed trace), monotonic, and a call either finishes
within its gas or fails with the host untouched."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import DictHost, OutOfGas, VMError, VMFault, compile_source, encode_value, run
from contracts.opcodes import GAS_PER_EVENT_BYTE, GAS_PER_STORAGE_BYTE, GAS_TABLE

PURE = '''
def _step(x):
    if x % 3 == 0:
        return x // 3
    return x * 2 - 1

def main(n):
    total = 0
    for i in range(n):
        total = total + _step(i)
    while total > 10:
        total -= 7
    return total and -total or 0
'''


def traced(source, function="main", args=(), host=None, gas=1_000_000):
    trace = []
    result = run(compile_source(source), function, list(args), host or DictHost(), gas, trace=trace)
    return result, trace


@pytest.mark.parametrize("n", [0, 1, 5, 40])
def test_pure_gas_is_exactly_the_sum_of_fixed_costs_of_the_trace(n):
    result, trace = traced(PURE, args=[n])
    assert result.gas_used == sum(GAS_TABLE[step.op] for step in trace)
    assert all(step.gas == GAS_TABLE[step.op] for step in trace)
    assert result.steps == len(trace)


def test_dynamic_costs_are_exact():
    source = '''
def main(s):
    host.storage_set(b"key", [1, 2])
    host.emit("e", {"n": 1})
    x = [s, s]
    return s + s
'''
    result, trace = traced(source, args=["abcdefghij"])
    extra = {step.op: step.gas - GAS_TABLE[step.op] for step in trace if step.gas != GAS_TABLE[step.op]}
    assert extra == {
        "HOST_STORAGE_SET": GAS_PER_STORAGE_BYTE * (3 + len(encode_value([1, 2]))),
        "HOST_EMIT": GAS_PER_EVENT_BYTE * len(encode_value({"n": 1})),
        "BUILD_MAP": 3,               # 8 + 16 bytes -> 3 words
        "BUILD_LIST": 3,              # 8 + 8*2 bytes -> 3 words
        "ADD": 4,                     # "abcdefghij" * 2: 8 + 20 bytes -> 4 words
    }
    assert result.gas_used == sum(step.gas for step in trace)


def test_host_reads_pay_for_the_memory_they_bring_in():
    host = DictHost()
    host.set_tx("post", "alice", {"body": "x" * 800})
    result, trace = traced("def main():\n    return host.tx()\n", host=host)
    (tx_step,) = [s for s in trace if s.op == "HOST_TX"]
    assert tx_step.gas > GAS_TABLE["HOST_TX"] + 100   # 800 bytes of text -> 100+ words


def test_a_storage_read_pays_per_byte_of_the_stored_encoding():
    host = DictHost()
    host.storage_set(b"k", {"list": list(range(50)), "text": "y" * 300})
    result, trace = traced("def main():\n    return host.storage_get(b\"k\")\n", host=host)
    (read,) = [s for s in trace if s.op == "HOST_STORAGE_GET"]
    assert read.gas - GAS_TABLE["HOST_STORAGE_GET"] == len(host.storage[b"k"])  # 8 bytes each


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 60))
def test_more_work_costs_more_gas(n):
    code = compile_source(PURE)
    less = run(code, "main", [n], DictHost(), 10 ** 6).gas_used
    more = run(code, "main", [n + 1], DictHost(), 10 ** 6).gas_used
    assert more > less


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 3000))
def test_gas_limit_boundary(limit):
    code = compile_source(PURE)
    needed = run(code, "main", [20], DictHost(), 10 ** 6).gas_used
    if limit >= needed:
        assert run(code, "main", [20], DictHost(), limit).gas_used == needed
    else:
        with pytest.raises(OutOfGas) as info:
            run(code, "main", [20], DictHost(), limit)
        assert info.value.gas_used == limit


# -- random programs: finish within gas, or fail and leave nothing --------------------------------

_VALUE = st.one_of(st.integers(-50, 50).map(str), st.sampled_from(["a", "b", "a + b", "a * b",
                                                                   "a - 3", "len(xs)"]))


def _statement(depth):
    simple = st.one_of(
        st.builds("a = {}".format, _VALUE),
        st.builds("b = {}".format, _VALUE),
        st.builds("b = b // ({})".format, _VALUE),
        st.builds('host.storage_set(encode("k" + str(({}) % 5)), {})'.format, _VALUE, _VALUE),
        st.builds('host.storage_delete(encode("k" + str(({}) % 5)))'.format, _VALUE),
        st.builds('host.award("alice", "content", abs({}) % 100)'.format, _VALUE),
        st.builds('host.emit("e", {{"v": {}}})'.format, _VALUE),
        st.builds("append(xs, {})".format, _VALUE),
        st.just("xs = xs + xs"),
        st.just("a = host.storage_get(b\"k1\")"),
    )
    if depth == 0:
        return simple.map(lambda s: [s])
    body = st.lists(_statement(depth - 1), min_size=1, max_size=3).map(lambda b: sum(b, []))
    indent = lambda lines: ["    " + line for line in lines]  # noqa: E731
    return st.one_of(
        simple.map(lambda s: [s]),
        st.builds(lambda c, b: [f"if {c} > 0:"] + indent(b), _VALUE, body),
        st.builds(lambda n, b: [f"for i in range({n}):"] + indent(b), st.integers(0, 6), body),
        st.builds(lambda b: ["while True:"] + indent(b), body),
    )


_PROGRAM = st.lists(_statement(2), min_size=1, max_size=6).map(
    lambda stmts: "def main(a, b):\n    xs = []\n" +
                  "".join(f"    {line}\n" for stmt in stmts for line in stmt) + "    return [a, b]\n")


def _host():
    host = DictHost(pools={"content": 500, "behaviour": 0, "relationship": 0})
    host.add_account("alice")
    host.storage_set(b"k1", 11)
    return host


def _outcome(code, args, gas):
    host = _host()
    before = host.snapshot()
    try:
        result = run(code, "main", args, host, gas)
    except VMError as e:
        assert host.snapshot() == before, "a failed call changed the host"
        assert 0 <= e.gas_used <= gas
        return type(e).__name__, e.code, e.gas_used, None
    assert result.gas_used <= gas
    return "ok", result.return_value, result.gas_used, host.snapshot()


@settings(max_examples=120, deadline=None)
@given(_PROGRAM, st.integers(-5, 5), st.integers(-5, 5), st.integers(0, 20_000))
def test_any_program_finishes_within_gas_or_leaves_no_writes(source, a, b, limit):
    code = compile_source(source)
    limited = _outcome(code, [a, b], limit)
    reference = _outcome(code, [a, b], 200_000)
    if limited[0] == "ok" or limited[0] == "VMFault":
        assert limited == reference   # enough gas: the same outcome, gas and writes as with plenty
    else:
        assert limited[2] == limit
        assert reference[0] != "ok" or reference[2] > limit


def test_out_of_gas_mid_write_sequence_leaves_storage_awards_and_events_untouched():
    source = '''
def main():
    host.storage_set(b"a", 1)
    host.award("alice", "content", 10)
    host.emit("e", {})
    i = 0
    while True:
        i += 1
'''
    host = _host()
    before = host.snapshot()
    with pytest.raises(VMError) as info:
        run(compile_source(source), "main", [], host, 5_000)
    assert isinstance(info.value, (OutOfGas, VMFault))
    assert host.snapshot() == before
