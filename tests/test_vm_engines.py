"""One semantics, two engines: every call gives the same result, gas, steps, events, awards,
writes and errors (code, gas, function, line) on the translated code (`run`) and on the reference
interpreter (`run(..., trace=[])`); and gas is charged per basic block, as contracts/README.md
defines it."""
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import DictHost, Limits, OutOfGas, VMError, VMFault, compile_source, run
from contracts.bytecode import FunctionCode, Program, basic_blocks, encode_program, load_program
from contracts.opcodes import GAS_TABLE, Op
from contracts.rules import DEFAULT_PARAMS, HOOK_FOR_KIND, HOOK_GAS_LIMITS, load_default_rules
from tests.test_vm_determinism import _ITEMS, WORKLOAD
from tests.test_vm_gas import _PROGRAM

INT_MIN, INT_MAX = -(1 << 127), (1 << 127) - 1


def _host():
    host = DictHost(params=DEFAULT_PARAMS, pools={"content": 500, "behaviour": 10**9, "relationship": 0})
    for name in ("alice", "bob"):
        host.add_account(name, stake=1_000_000)
    host.storage_set(b"k1", 11)
    return host


def _outcome(code, function, args, gas, *, traced, host=None, limits=Limits()):
    host = host or _host()
    try:
        result = run(code, function, list(args), host, gas, limits=limits,
                     trace=[] if traced else None)
    except VMError as e:
        return ("error", type(e).__name__, e.code, e.gas_used, e.function, e.line, host.snapshot())
    return ("ok", result, host.snapshot())


def _same(code, function="main", args=(), gas=10**6, host_factory=_host, limits=Limits()):
    fast = _outcome(code, function, args, gas, traced=False, host=host_factory(), limits=limits)
    reference = _outcome(code, function, args, gas, traced=True, host=host_factory(), limits=limits)
    assert fast == reference
    return fast


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_PROGRAM, st.integers(-5, 5), st.integers(-5, 5), st.integers(0, 20_000))
def test_random_programs_agree_at_any_gas_limit(source, a, b, gas):
    _same(compile_source(source), args=[a, b], gas=gas)


@settings(max_examples=60, deadline=None)
@given(st.lists(_ITEMS, max_size=8), st.integers(-10 ** 30, 10 ** 30), st.integers(0, 3000))
def test_workload_agrees_on_any_values_and_gas(items, seed, gas):
    _same(compile_source(WORKLOAD), args=[items, seed], gas=gas)


_EXPRESSIONS = st.sampled_from([
    "a + b", "a - b", "a * b", "a // b", "a % b", "-a", "a < b", "a <= b", "a > b", "a >= b",
    "a == b", "a != b", "a in b", "a not in b", "a[b]", "len(a)", "abs(a)", "min(a, b)",
    "max(a, b)", "str(a)", "encode(a)", "sorted(a)", "a is None", "a and b", "a or b", "not a",
    "[a, b]", "{a: b}", "a if b else 0",
])
_OPERANDS = st.one_of(st.none(), st.booleans(), st.integers(INT_MIN, INT_MAX),
                      st.sampled_from([INT_MAX, INT_MIN, 0, -1]), st.text(max_size=5),
                      st.binary(max_size=5), st.lists(st.integers(-3, 3), max_size=3),
                      st.dictionaries(st.text(max_size=2), st.integers(), max_size=3))


@settings(max_examples=300, deadline=None)
@given(_EXPRESSIONS, _OPERANDS, _OPERANDS)
def test_every_operator_agrees_on_any_operands(expression, a, b):
    """Including the translation's inline fast paths (int arithmetic and comparisons, `//` by a
    positive int, int min and max, text +, map items, `is None`) and the faults of every opcode
    function."""
    code = compile_source(f"def main(a, b):\n    x = {expression}\n    return [x, a, b]\n")
    _same(code, args=[a, b])


@pytest.mark.parametrize("kind", sorted(HOOK_FOR_KIND))
def test_default_rules_agree(kind):
    bodies = {"post": {"permlink": "p", "title": "", "body": "", "tags": []},
              "vote": {"post": "alice/p", "weight": -3000},
              "attend": {"event": "alice/p", "ticket": bytes(64)},
              "refer": {"new_account": "carol", "pubkey": bytes(32)}}

    def host():
        h = _host()
        h.set_block(1, 1000)
        h.set_tx("post", "alice", bodies["post"])
        run(load_default_rules(), "on_post", [], h, 10**6)
        h.set_tx(kind, "bob", bodies[kind])
        return h

    hook = HOOK_FOR_KIND[kind]
    for gas in (HOOK_GAS_LIMITS[hook], 1500, 300, 0):
        _same(load_default_rules(), hook, gas=gas, host_factory=host)


def test_limits_agree():
    deep = compile_source("def main(n):\n    return main(n + 1)\n")
    assert _same(deep, args=[0], limits=Limits(max_call_depth=10))[2] == "call_depth_exceeded"
    spin = compile_source("def main():\n    while True:\n        pass\n")
    assert _same(spin, limits=Limits(max_steps=999))[2] == "step_limit"
    grow = compile_source('def main():\n    s = "x"\n    while True:\n        s = s + s\n')
    assert _same(grow, gas=10**9, limits=Limits(max_memory=10_000))[2] == "memory_limit"


def _handwritten(*instrs, nlocals=2):
    fn = FunctionCode("main", 0, tuple(f"l{i}" for i in range(nlocals)), tuple(instrs),
                      ((0, 1),))
    return encode_program(Program((1, None, "k"), (fn,)))


def test_hand_written_bytecode_agrees():
    # reads a local that only one path assigns; unreachable code after RETURN; a jump into the
    # middle of what the compiler would call one block
    maybe_unbound = _handwritten((Op.CONST, 1), (Op.JUMP_IF_FALSE, 4), (Op.CONST, 0), (Op.STORE, 1),
                                 (Op.LOAD, 1), (Op.RETURN, 0), (Op.POP, 0))
    assert _same(maybe_unbound)[2:6] == ("unbound_local", 6, "main", 1)  # LOAD and RETURN charged
    skip = _handwritten((Op.CONST, 1), (Op.JUMP_IF_TRUE_OR_POP, 3), (Op.CONST, 0), (Op.RETURN, 0))
    assert _same(skip)[0] == "ok"


def test_a_local_read_before_it_is_overwritten_keeps_its_old_value():
    """The translation uses a loaded local where the value is consumed, not where it is loaded:
    a STORE to that local in between (same block, or across a branch) must not change what was
    read. The compiler never emits this; bytecode from elsewhere may."""
    def program(*instrs):
        fn = FunctionCode("main", 0, ("x",), tuple(instrs), ((0, 1),))
        return encode_program(Program((7, 5, True), (fn,)))

    same_block = program((Op.CONST, 0), (Op.STORE, 0), (Op.LOAD, 0), (Op.CONST, 1), (Op.STORE, 0),
                         (Op.LOAD, 0), (Op.BUILD_LIST, 2), (Op.RETURN, 0))
    assert _same(same_block)[1].return_value == [7, 5]
    across_a_branch = program((Op.CONST, 0), (Op.STORE, 0), (Op.LOAD, 0), (Op.CONST, 2),
                              (Op.JUMP_IF_FALSE, 7), (Op.CONST, 1), (Op.STORE, 0), (Op.LOAD, 0),
                              (Op.BUILD_LIST, 2), (Op.RETURN, 0))
    assert _same(across_a_branch)[1].return_value == [7, 5]
    kept_on_the_jump = program((Op.CONST, 0), (Op.STORE, 0), (Op.LOAD, 0), (Op.JUMP_IF_TRUE_OR_POP, 6),
                               (Op.CONST, 1), (Op.RETURN, 0), (Op.CONST, 1), (Op.STORE, 0),
                               (Op.LOAD, 0), (Op.BUILD_LIST, 2), (Op.RETURN, 0))
    assert _same(kept_on_the_jump)[1].return_value == [7, 5]


def test_a_constant_compared_with_none_translates_without_a_warning():
    """`5 == None` is not written as `5 is None` (Python warns on `is` with a literal, and a
    warning filter set to error would turn the translation into a crash)."""
    code = compile_source("def main(x):\n    return [5 == None, 'a' != None, None == None, x == None]\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _same(code, args=[None])[1].return_value == [False, True, True, True]


# -- block gas: what the README defines ------------------------------------------------------

def test_a_block_is_charged_when_it_is_entered():
    """A fault inside a basic block has consumed the fixed gas of the whole block."""
    code = compile_source('def main(a):\n    x = a + 1\n    y = x * 2\n    return y\n')
    (start, end, gas), = basic_blocks(load_program(code).functions[0])
    assert gas == sum(GAS_TABLE[op.name] for op, _ in load_program(code).functions[0].instrs)
    assert run(code, "main", [1], DictHost(), 1000).gas_used == gas
    with pytest.raises(VMFault) as info:
        run(code, "main", ["text"], DictHost(), 1000)  # a type error at the first ADD
    assert info.value.code == "type_error" and info.value.gas_used == gas
    with pytest.raises(OutOfGas) as oog:
        run(code, "main", [1], DictHost(), gas - 1)  # the block does not fit: nothing runs
    assert oog.value.gas_used == gas - 1 and oog.value.line == 2


def test_trace_accounts_for_all_gas():
    code = compile_source('def _f(s):\n    return s + s\n\ndef main(s):\n    host.emit("e", {"s": _f(s)})\n'
                          '    return len(s)\n')
    trace = []
    result = run(code, "main", ["abc"], DictHost(), 10_000, trace=trace)
    assert sum(step.gas for step in trace) == result.gas_used
    assert len(trace) == result.steps


def test_which_fault_a_bad_host_value_raises_does_not_depend_on_map_order():
    """import_value copies maps in insertion order, but reports the fault a canonical walk
    meets first."""
    from contracts.values import import_value
    for value in ({"b": 1.5, "a": 1 << 200}, {"a": 1 << 200, "b": 1.5}):
        with pytest.raises(VMFault) as info:
            import_value(value)
        assert info.value.code == "int_overflow"
    with pytest.raises(VMFault) as info:
        import_value({"z": 1.5, 3: None, True: 1})
    assert info.value.code == "bad_value" and "map key" in info.value.message


def test_a_contract_too_big_to_translate_is_interpreted_with_the_same_results(monkeypatch):
    import contracts.translate as translate_module
    code = compile_source(WORKLOAD)
    translated = _same(code, args=[[1, "ab", None], 5])
    monkeypatch.setattr(translate_module, "MAX_TRANSLATED_INSTRUCTIONS", 10)
    translate_module.translate.cache_clear()
    try:
        assert translate_module.translate(code) is None
        assert _same(code, args=[[1, "ab", None], 5]) == translated
    finally:
        translate_module.translate.cache_clear()
