"""Hostile contracts are stopped by metering within bounded wall time, and leave no writes."""
import time

import pytest

from contracts import DictHost, Limits, OutOfGas, VMError, VMFault, compile_source, run
from contracts.bytecode import FunctionCode, Program, encode_program
from contracts.opcodes import Op

GAS = 2_000_000
WALL_SECONDS = 3.0


def stopped(source, args=(), gas=GAS, limits=None):
    """The error that stopped the call, after checking time bound and untouched host."""
    host = DictHost()
    host.add_account("alice")
    before = host.snapshot()
    start = time.perf_counter()
    with pytest.raises(VMError) as info:
        kwargs = {"limits": limits} if limits else {}
        run(compile_source(source), "main", list(args), host, gas, **kwargs)
    assert time.perf_counter() - start < WALL_SECONDS
    assert host.snapshot() == before
    return info.value


def test_infinite_loop():
    err = stopped("def main():\n    while True:\n        pass\n")
    assert err.code in ("out_of_gas", "step_limit")
    assert stopped("def main():\n    while True:\n        pass\n", gas=50_000).code == "out_of_gas"


def test_step_limit_independent_of_gas():
    err = stopped("def main():\n    while True:\n        pass\n", gas=10 ** 9,
                  limits=Limits(max_steps=10_000))
    assert err.code == "step_limit"


def test_deep_recursion():
    err = stopped("def main(n):\n    return main(n + 1)\n", args=[0])
    assert err.code == "call_depth_exceeded" and err.function == "main"


def test_wide_frames_exhaust_value_stack_slots():
    params = ", ".join(f"p{i}" for i in range(200))
    source = f"def _deep({params}):\n    return _deep({params})\n\ndef main():\n" \
             f"    return _deep({', '.join(['0'] * 200)})\n"
    assert stopped(source).code == "stack_overflow"


def test_huge_allocation_by_doubling():
    err = stopped('def main():\n    s = "x"\n    while True:\n        s = s + s\n', gas=10 ** 9)
    assert err.code == "memory_limit"
    err = stopped('def main():\n    s = b"x"\n    while True:\n        s = s + s\n')
    assert err.code in ("memory_limit", "out_of_gas")


def test_list_growth_is_bounded():
    err = stopped("def main():\n    xs = []\n    while True:\n        append(xs, 1)\n", gas=10 ** 9)
    assert err.code == "container_too_long"
    err = stopped("def main():\n    xs = [1]\n    while True:\n        xs = xs + xs\n", gas=10 ** 9)
    assert err.code == "container_too_long"
    err = stopped("def main():\n    d = {}\n    i = 0\n    while True:\n        d[i] = i\n"
                  "        i += 1\n", gas=10 ** 9)
    assert err.code == "container_too_long"


def test_many_small_allocations_hit_memory_limit():
    source = "def main():\n    keep = []\n    while True:\n        keep = [keep, keep, keep]\n"
    assert stopped(source, gas=10 ** 9, limits=Limits(max_memory=100_000)).code == "memory_limit"


def test_storage_spam():
    source = '''
def main():
    i = 0
    while True:
        host.storage_set(encode("spam" + str(i)), "x")
        i += 1
'''
    err = stopped(source)
    assert isinstance(err, OutOfGas) and err.gas_used == GAS


def test_oversized_storage_value():
    source = '''
def main():
    s = "0123456789abcdef"
    while len(s) < 20000:
        s = s + s
    host.storage_set(b"big", s)
'''
    assert stopped(source).code == "storage_value_too_large"


def test_event_spam():
    source = 'def main():\n    while True:\n        host.emit("e", {})\n'
    assert stopped(source).code == "too_many_events"


def test_award_spam_is_paid_for():
    source = 'def main():\n    while True:\n        host.award("alice", "content", 1)\n'
    assert stopped(source).code == "out_of_gas"


def test_deep_and_cyclic_values_cannot_leave_the_vm():
    deep = "def main():\n    x = []\n    for i in range(100):\n        x = [x]\n" \
           "    host.storage_set(b\"k\", x)\n"
    assert stopped(deep).code == "value_too_deep"
    cyclic = "def main():\n    x = []\n    append(x, x)\n    return x\n"
    assert stopped(cyclic).code == "value_too_deep"
    event = "def main():\n    x = {}\n    x[\"self\"] = x\n    host.emit(\"e\", x)\n"
    assert stopped(event).code == "value_too_deep"


def test_long_text_comparisons_are_charged_by_length():
    source = '''
def main(n):
    a = "x"
    while len(a) < 60000:
        a = a + a
    b = a + "y"
    c = a + "z"
    same = 0
    for i in range(n):
        if b == c:
            same += 1
    return same
'''
    code = compile_source(source)
    one = run(code, "main", [1], DictHost(), GAS).gas_used
    ten = run(code, "main", [11], DictHost(), GAS).gas_used
    assert (ten - one) // 10 > 60000 // 32   # each comparison pays per 32 bytes compared
    assert stopped(source, args=[10 ** 6]).code == "out_of_gas"


def test_list_membership_is_charged_per_element():
    source = '''
def main():
    xs = []
    for i in range(4000):
        append(xs, i)
    while True:
        if -1 in xs:
            pass
'''
    err = stopped(source)
    assert err.code == "out_of_gas"


def _handwritten(*instrs, nlocals=1):
    fn = FunctionCode("main", 0, tuple(f"l{i}" for i in range(nlocals)), tuple(instrs), ())
    return encode_program(Program((1, None, b"k"), (fn,)))


def test_hostile_bytecode_cannot_leak_an_iterator_or_misuse_one():
    leak = _handwritten((Op.BUILD_LIST, 0), (Op.GET_ITER, 0), (Op.RETURN, 0))
    with pytest.raises(VMFault) as info:
        run(leak, "main", [], DictHost(), 1000)
    assert info.value.code == "bad_value"
    misuse = _handwritten((Op.CONST, 0), (Op.FOR_ITER, 3), (Op.RETURN, 0), (Op.CONST, 1),
                          (Op.RETURN, 0))
    with pytest.raises(VMFault) as info:
        run(misuse, "main", [], DictHost(), 1000)
    assert info.value.code == "type_error"
    store = _handwritten((Op.BUILD_LIST, 0), (Op.GET_ITER, 0), (Op.STORE, 0), (Op.CONST, 2),
                         (Op.LOAD, 0), (Op.HOST_STORAGE_SET, 0), (Op.RETURN, 0))
    with pytest.raises(VMFault) as info:
        run(store, "main", [], DictHost(), 1000)
    assert info.value.code == "bad_value"
