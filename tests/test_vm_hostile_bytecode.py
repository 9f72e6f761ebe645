"""Hostile bytecode. A rules upgrade carries bytecode from whoever proposes it, so the loader
(`prepare`, the check of state.governance.verify_rules_code) and the fast engine that translates
verified bytecode into Python (`translate.py`) face arbitrary bytes: random bytes after the magic,
random bodies, random stack-aware programs, and valid programs with bits flipped, bytes cut,
operands swapped, jumps retargeted, instructions dropped, constants swollen, functions multiplied,
calls made recursive and loops made endless.

For every such input the loader either refuses it cleanly — a `bad_bytecode` VMFault, at
governance `invalid_proposal`, never another exception — or accepts it, and then the translated
engine and the reference interpreter give the same result, gas, steps, writes and faults (the
comparison of tests/test_vm_engines.py), each call bounded by the VM's gas and step limits. The
loader's limits refuse oversize input before the work it would cost; its memory stays a small
multiple of its input. And the compile bomb of issue 14 reaches no node and does not eat the
client that compiles it.
"""
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from contracts import CompileError, Limits, VMError, VMFault, compile_source, prepare
from contracts import bytecode as B
from contracts.bytecode import FunctionCode, Program, encode_program, load_program
from contracts.opcodes import BYTECODE_MAGIC, BYTECODE_VERSION, JUMPS, SPECS, Op
from contracts.rules import HOOK_FOR_KIND, ROUND_HOOK, load_default_rules
from contracts import translate as T
from contracts.translate import MAX_TRANSLATED_INSTRUCTIONS
from contracts.values import INT_MAX, INT_MIN, encode_value
from core.errors import InvalidTx
from core.types import MAX_RULES_CODE_BYTES, MAX_TX_BYTES, Tx
from state import governance
from state.governance import HOOK_ARITY, verify_rules_code
from tests.conftest import CHAIN_ID, EXPIRES, keypair
from tests.test_vm_determinism import _VALUES, WORKLOAD
from tests.test_vm_engines import _OPERANDS, _host, _same
from tests.test_vm_gas import _PROGRAM

# a warning while translating (e.g. Python's SyntaxWarning on `True[0]`) is an error here: under
# `-W error` it would be one on a node too
pytestmark = pytest.mark.filterwarnings("error")
HEADER = BYTECODE_MAGIC + bytes([BYTECODE_VERSION])
# every call of a hostile program runs under these: a runaway loop or recursion ends within them
LIMITS = Limits(max_steps=20_000, max_call_depth=24, max_memory=1 << 20)
GAS = 300_000


def hostile(examples: int):
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# Issue 14's compile bomb: a string doubled 24 times by constant folding, 64 B × 2^24 = 1 GiB
COMPILE_BOMB = ('C0 = "' + "x" * 64 + '"\n'
                + "".join(f"C{i + 1} = C{i} + C{i}\n" for i in range(24))
                + "\ndef on_post():\n    return len(C24)\n")
RULES_HOOKS = "".join(f"def {hook}():\n    return 0\n\n" for hook in HOOK_FOR_KIND.values()) + \
    f"def {ROUND_HOOK}(n):\n    return n\n"


# ---------------------------------------------------------------------------------- the judge
def rules_verdict(code: bytes) -> str | None:
    """None if governance accepts `code` as a rules contract, else its refusal's message; any
    refusal other than InvalidTx("invalid_proposal") fails the test."""
    try:
        verify_rules_code(code)
    except InvalidTx as e:
        assert e.code == "invalid_proposal", e
        return e.message
    return None


def has_hooks(program: Program) -> bool:
    return all(program.index_of(hook) is not None and
               program.functions[program.index_of(hook)].nparams == arity
               for hook, arity in HOOK_ARITY.items())


def judge(code: bytes, data, calls: int = 3) -> Program | None:
    """Refused cleanly, or accepted and then the same on both engines for `calls` calls (its
    first function, then any), with arguments drawn from `data`. The accepted program, or None."""
    try:
        program, _ = prepare(code)
    except VMError as e:  # anything else propagates and fails the test
        assert type(e) is VMFault and e.code == "bad_bytecode", e
        event("refused")  # --hypothesis-show-statistics shows how many of each
        if 0 < len(code) <= MAX_RULES_CODE_BYTES:
            assert "bad_bytecode" in rules_verdict(code)
        return None
    if 0 < len(code) <= MAX_RULES_CODE_BYTES:
        assert (rules_verdict(code) is None) == has_hooks(program)
    event("accepted")
    last = len(program.functions) - 1
    for i in range(calls):
        fn = program.functions[0 if i == 0 else data.draw(st.integers(0, last))]
        if fn.nparams <= 4:
            args = data.draw(st.lists(_OPERANDS, min_size=fn.nparams, max_size=fn.nparams))
        else:
            args = [0] * fn.nparams
        _same(code, fn.name, args, gas=GAS, limits=LIMITS)
    return program


# ---------------------------------------------------------------------------------- strategies
_NEAR_MAX_CONST = st.integers(B.MAX_CONST_BYTES - 1, B.MAX_CONST_BYTES + 1)
_HUGE_CONSTS = st.one_of(st.sampled_from([INT_MAX, INT_MIN, -1, 0, True, None]),
                         _NEAR_MAX_CONST.map(lambda n: "y" * n),
                         _NEAR_MAX_CONST.map(lambda n: b"\xff" * n))
_CONSTS = st.lists(st.one_of(_OPERANDS.filter(lambda v: type(v) not in (list, dict)), _HUGE_CONSTS),
                   max_size=5)

# bytes after the magic: almost always refused while decoding
RANDOM_BYTES = st.binary(max_size=300).map(lambda body: HEADER + body)

# canonical msgpack of roughly the right shape with random fields
_RAW_FUNCTION = st.tuples(st.one_of(st.sampled_from(["main", "on_post", "_h"]), st.text(max_size=3)),
                          st.one_of(st.integers(-1, 3), st.booleans()),
                          st.lists(st.text(max_size=2), max_size=4),
                          st.one_of(st.binary(max_size=30), st.text(max_size=3)),
                          st.binary(max_size=12)).map(list)
RANDOM_BODIES = st.one_of(
    st.tuples(_CONSTS, st.lists(_RAW_FUNCTION, max_size=3)).map(
        lambda body: HEADER + encode_value(list(body))),
    _VALUES.map(lambda v: HEADER + encode_value(v)))


@st.composite
def stack_walks(draw):
    """Programs written an instruction at a time by a walker that knows each opcode's stack
    effect, and usually, not always, respects it; jump targets anywhere (the heights often
    disagree, and then the verifier refuses)."""
    consts = draw(_CONSTS)
    nparams = draw(st.lists(st.integers(0, 2), min_size=1, max_size=3))
    functions = []
    for index, np in enumerate(nparams):
        nlocals = np + draw(st.integers(0, 3))
        n = draw(st.integers(1, 24))
        instrs, h = [], 0
        for _ in range(n):
            op = draw(st.sampled_from(Op))
            arg = 0
            if op == Op.CONST:
                arg = draw(st.integers(0, len(consts)))  # len(consts): out of range
            elif op in (Op.LOAD, Op.STORE):
                arg = draw(st.integers(0, nlocals))
            elif op in JUMPS:
                arg = draw(st.integers(0, n + 1))
            elif op == Op.CALL:
                arg = draw(st.integers(0, len(nparams)))
            elif op in (Op.BUILD_LIST, Op.BUILD_MAP):
                arg = draw(st.integers(0, 2))
            pops = SPECS[op].pops
            if op == Op.CALL:
                pops = nparams[arg] if arg < len(nparams) else 0
            elif op == Op.BUILD_LIST:
                pops = arg
            elif op == Op.BUILD_MAP:
                pops = 2 * arg
            if pops > h and draw(st.integers(0, 9)) > 0:
                op, arg, pops = Op.CONST, draw(st.integers(0, max(len(consts) - 1, 0))), 0
            instrs.append((op, arg))
            h = max(h - pops + SPECS[op].pushes, 0)
        if h == 0:
            instrs.append((Op.CONST, 0))
        instrs.append((Op.RETURN, 0))
        name = "main" if index == 0 else f"_f{index}"
        local_names = tuple(f"l{i}" for i in range(nlocals))
        functions.append(FunctionCode(name, np, local_names, tuple(instrs), ((0, 1),)))
    return encode_program(Program(tuple(consts) or (0,), tuple(functions)))


SEEDS = [load_default_rules(), compile_source(WORKLOAD), compile_source(RULES_HOOKS)]
_SEED = st.one_of(st.sampled_from(SEEDS), _PROGRAM.map(compile_source))


def _rebuild(program: Program, functions=None, consts=None) -> bytes:
    functions = program.functions if functions is None else functions
    return encode_program(Program(tuple(program.consts if consts is None else consts), tuple(
        FunctionCode(fn.name, fn.nparams, fn.local_names, tuple(fn.instrs),
                     tuple((pc, line) for pc, line in fn.lines if pc < len(fn.instrs)))
        for fn in functions)))


def _with_instrs(fn: FunctionCode, instrs) -> FunctionCode:
    return FunctionCode(fn.name, fn.nparams, fn.local_names, tuple(instrs), fn.lines)


@st.composite
def mutated(draw):
    """A valid program (the default rules, the determinism workload, a rules skeleton, or a
    random program of tests/test_vm_gas.py) with one hostile change."""
    code = draw(_SEED)
    program = load_program(code)
    kind = draw(st.sampled_from(["flip", "truncate", "splice", "cut", "op", "arg", "swap_args",
                                 "swap", "drop", "duplicate", "retarget", "self_loop", "recurse",
                                 "nparams", "const", "many_functions", "many_consts",
                                 "deep_calls"]))
    at = draw(st.integers(0, 1 << 16))
    if kind == "flip":
        out = bytearray(code)
        out[at % len(out)] ^= 1 << draw(st.integers(0, 7))
        return bytes(out)
    if kind == "truncate":
        return code[:at % len(code)]
    if kind == "splice":
        junk = draw(st.binary(min_size=1, max_size=8))
        return code[:at % len(code)] + junk + code[at % len(code):]
    if kind == "cut":
        return code[:at % len(code)] + code[at % len(code) + draw(st.integers(1, 8)):]
    functions = list(program.functions)
    fi = at % len(functions)
    fn = functions[fi]
    instrs = list(fn.instrs)
    pc = draw(st.integers(0, len(instrs) - 1))
    if kind == "op":  # another opcode with the same operand
        instrs[pc] = (draw(st.sampled_from(Op)), instrs[pc][1])
    elif kind == "arg":  # an operand anywhere in u16, often just out of range
        instrs[pc] = (instrs[pc][0], draw(st.one_of(st.integers(0, 300), st.integers(0, 65535))))
    elif kind == "swap_args":
        other = draw(st.integers(0, len(instrs) - 1))
        (a, x), (b, y) = instrs[pc], instrs[other]
        instrs[pc], instrs[other] = (a, y), (b, x)
    elif kind == "swap":
        other = draw(st.integers(0, len(instrs) - 1))
        instrs[pc], instrs[other] = instrs[other], instrs[pc]
    elif kind == "drop":  # the stack underflows, or jump targets shift
        del instrs[pc]
    elif kind == "duplicate":
        instrs.insert(pc, instrs[pc])
    elif kind == "retarget":  # a jump anywhere, in range or not
        instrs[pc] = (draw(st.sampled_from(sorted(JUMPS))), draw(st.integers(0, len(instrs) + 2)))
    elif kind == "self_loop":  # an endless loop at a point of stack height 0
        instrs[0] = (Op.JUMP, 0)
    elif kind == "recurse":  # a call back into the function (or a mutual one)
        instrs[pc] = (Op.CALL, draw(st.integers(0, len(functions) - 1)))
    elif kind == "nparams":
        fn = FunctionCode(fn.name, draw(st.integers(0, len(fn.local_names) + 1)), fn.local_names,
                          fn.instrs, fn.lines)
    elif kind == "const":
        consts = list(program.consts) or [0]
        consts[at % len(consts)] = draw(_HUGE_CONSTS)
        return _rebuild(program, consts=consts)
    elif kind == "many_functions":  # around MAX_FUNCTIONS copies of one function
        room = B.MAX_FUNCTIONS - len(functions)
        count = draw(st.integers(room, room + 2))
        extra = [FunctionCode(f"_copy{i}", fn.nparams, fn.local_names, fn.instrs, fn.lines)
                 for i in range(count)]
        return _rebuild(program, functions=functions + extra)
    elif kind == "many_consts":  # around MAX_CONSTS constants
        count = draw(st.integers(B.MAX_CONSTS - 1, B.MAX_CONSTS + 1))
        consts = list(program.consts) + list(range(1000, 1000 + count - len(program.consts)))
        return _rebuild(program, consts=consts)
    elif kind == "deep_calls":  # a public function entering a ring of 21 helpers
        chain = [FunctionCode(f"_d{i}", 0, (), ((Op.CALL, len(functions) + i + 1), (Op.RETURN, 0)),
                              ()) for i in range(20)]
        chain.append(FunctionCode("_d20", 0, (), ((Op.CALL, len(functions)), (Op.RETURN, 0)), ()))
        start = FunctionCode("deep", 0, (), ((Op.CALL, len(functions)), (Op.RETURN, 0)), ())
        return _rebuild(program, functions=functions + chain + [start])
    functions[fi] = _with_instrs(fn, instrs)
    return _rebuild(program, functions=functions)


# ---------------------------------------------------------------------------------- properties
@hostile(300)
@given(RANDOM_BYTES, st.data())
def test_random_bytes_after_the_magic_are_refused_cleanly(code, data):
    judge(code, data)


@hostile(200)
@given(RANDOM_BODIES, st.data())
def test_random_bodies_are_refused_cleanly_or_agree(code, data):
    judge(code, data)


@hostile(400)
@given(stack_walks(), st.data())
def test_random_programs_are_refused_cleanly_or_agree_on_both_engines(code, data):
    judge(code, data)


@hostile(400)
@given(mutated(), st.data())
def test_mutated_bytecode_is_refused_cleanly_or_agrees_on_both_engines(code, data):
    judge(code, data)


def _rules_host():
    """The host of test_vm_engines with a block, a post and a tx: what a rules hook sees."""
    host = _host()
    host.set_block(3, 2_000)
    host.add_post("alice", "p", created_height=1, created_at=1_000)
    host.set_tx("vote", "bob", {"post": "alice/p", "weight": 5000})
    return host


@hostile(150)
@given(st.data())
def test_mutated_rules_are_verified_as_the_loader_says_and_their_hooks_agree(data):
    """Mutations of the default rules through governance's check; every hook of one it accepts
    gives the same outcome on both engines, at the chain's gas limit for hooks."""
    program = load_program(load_default_rules())
    fi = data.draw(st.integers(0, len(program.functions) - 1))
    fn = program.functions[fi]
    instrs = list(fn.instrs)
    pc = data.draw(st.integers(0, len(instrs) - 1))
    instrs[pc] = data.draw(st.one_of(
        st.tuples(st.sampled_from(Op), st.just(instrs[pc][1])),
        st.tuples(st.just(instrs[pc][0]), st.integers(0, 300)),
        st.tuples(st.sampled_from(sorted(JUMPS)), st.integers(0, len(instrs)))))
    functions = list(program.functions)
    functions[fi] = _with_instrs(fn, instrs)
    code = _rebuild(program, functions=functions)
    if rules_verdict(code) is not None:
        return
    assert has_hooks(load_program(code))
    for hook, arity in HOOK_ARITY.items():
        _same(code, hook, [7] * arity, gas=1_000_000, host_factory=_rules_host, limits=LIMITS)


# ---------------------------------------------------------------------------------- examples
def _one(*instrs, nlocals=1, nparams=0, consts=(1, None, "k")):
    local_names = tuple(f"l{i}" for i in range(nlocals))
    fn = FunctionCode("main", nparams, local_names, tuple(instrs), ((0, 1),))
    return encode_program(Program(tuple(consts), (fn,)))


@pytest.mark.parametrize("code,message", [
    (_one((Op.JUMP, 9), (Op.CONST, 0), (Op.RETURN, 0)), "jump target 9 out of range"),
    # unreachable, but it would start a basic block past the end (it crashed the translation)
    (_one((Op.CONST, 0), (Op.RETURN, 0), (Op.JUMP, 9)), "jump target 9 out of range"),
    (_one((Op.CONST, 0), (Op.RETURN, 0), (Op.CONST, 7)), "constant 7 out of range"),
    (_one((Op.POP, 0), (Op.CONST, 0), (Op.RETURN, 0)), "stack underflow"),
    (_one((Op.CONST, 0), (Op.JUMP_IF_FALSE, 3), (Op.CONST, 0), (Op.CONST, 0), (Op.RETURN, 0)),
     "stack height differs"),
    (_one((Op.CONST, 0), (Op.POP, 0)), "falls off the end"),
    (_one((Op.CONST, 3), (Op.RETURN, 0)), "constant 3 out of range"),
    (_one((Op.LOAD, 1), (Op.RETURN, 0)), "local 1 out of range"),
    (_one((Op.CALL, 1), (Op.RETURN, 0)), "unknown function 1"),
    (_one(*[(Op.CONST, 0)] * 257, (Op.RETURN, 0)), "deeper than 256"),
    (HEADER[:-1] + b"\x02" + _one((Op.CONST, 0), (Op.RETURN, 0))[len(HEADER):],
     "bad magic or version"),
    (_one((Op.CONST, 0), (Op.RETURN, 0))[:-1], "undecodable"),
    # [[], [["main", 0, [], code 0x99, no lines]]]
    (HEADER + bytes([0x92, 0x90, 0x91, 0x95, 0xa4]) + b"main"
     + bytes([0, 0x90, 0xc4, 1, 0x99, 0xc4, 0]), "unknown opcode 0x99"),
], ids=["bad_jump", "unreachable_bad_jump", "unreachable_bad_const", "underflow", "heights_differ", "falls_off", "const_range", "local_range",
        "unknown_function", "stack_too_deep", "version_2", "truncated", "unknown_opcode"])
def test_hostile_examples_are_refused_with_a_reason(code, message):
    with pytest.raises(VMFault) as info:
        prepare(code)
    assert info.value.code == "bad_bytecode" and message in info.value.message
    assert "bad_bytecode" in rules_verdict(code) and message in rules_verdict(code)


def test_hostile_examples_that_load_agree_and_end_within_the_limits():
    spin = _one((Op.JUMP, 0))
    assert _same(spin, limits=LIMITS)[2] == "step_limit"
    assert _same(spin, gas=5_000, limits=LIMITS)[2] == "out_of_gas"
    recurse = _one((Op.CALL, 0), (Op.RETURN, 0))
    assert _same(recurse, limits=LIMITS)[2] == "call_depth_exceeded"
    overflow = _one((Op.CONST, 0), (Op.CONST, 1), (Op.ADD, 0), (Op.RETURN, 0), consts=(INT_MAX, 1))
    assert _same(overflow, limits=LIMITS)[2] == "int_overflow"
    wide = _one(*[(Op.CONST, 0)] * 256, (Op.BUILD_LIST, 256), (Op.RETURN, 0),
                consts=("y" * B.MAX_CONST_BYTES,))
    assert _same(wide, limits=LIMITS)[1].return_value == ["y" * B.MAX_CONST_BYTES] * 256
    # 256 locals, read on paths where only some were assigned
    maybe = [(Op.LOAD, 0), (Op.JUMP_IF_FALSE, 4), (Op.CONST, 0), (Op.STORE, 255),
             (Op.LOAD, 255), (Op.RETURN, 0)]
    code = _one(*maybe, nlocals=256, nparams=1)
    assert _same(code, args=[True], limits=LIMITS)[1].return_value == 1
    assert _same(code, args=[False], limits=LIMITS)[2] == "unbound_local"
    # an iterator left on the stack, returned, or stored
    # a constant as the container: `True[1]` or `"k"["k"]` in generated Python would be a
    # SyntaxWarning, an error under -W error (this module's filter)
    for container, key in ((0, 0), (2, 2), (1, 2)):
        get = _one((Op.CONST, container), (Op.CONST, key), (Op.GET_ITEM, 0), (Op.RETURN, 0),
                   consts=(True, None, "k"))
        assert _same(get, limits=LIMITS)[2] == "type_error"
        set_ = _one((Op.CONST, 0), (Op.CONST, container), (Op.CONST, key), (Op.SET_ITEM, 0),
                    (Op.CONST, 1), (Op.RETURN, 0), consts=(True, None, "k"))
        assert _same(set_, limits=LIMITS)[2] == "type_error"
    leak = _one((Op.BUILD_LIST, 0), (Op.GET_ITER, 0), (Op.STORE, 0), (Op.CONST, 2), (Op.LOAD, 0),
                (Op.HOST_STORAGE_SET, 0), (Op.RETURN, 0), consts=(1, None, b"k"))
    assert _same(leak, limits=LIMITS)[2] == "bad_value"


# ---------------------------------------------------------------------------------- limits first
def test_oversize_input_is_refused_before_it_is_decoded(monkeypatch):
    def must_not_run(*_):
        raise AssertionError("the loader did the work a limit should have spared")

    monkeypatch.setattr(B, "decode_value", must_not_run)
    with pytest.raises(VMFault, match="at most 262144"):
        load_program(HEADER + bytes(B.MAX_CODE_BYTES))
    monkeypatch.setattr(governance, "prepare", must_not_run)
    assert "1..12288" in rules_verdict(HEADER + bytes(MAX_RULES_CODE_BYTES))
    assert "1..12288" in rules_verdict(b"")


def _functions(n):
    return [FunctionCode(f"f{i}", 0, (), ((Op.CONST, 0), (Op.RETURN, 0)), ()) for i in range(n)]


@pytest.mark.parametrize("consts,functions,fits", [
    ((0,), _functions(B.MAX_FUNCTIONS), True),
    ((0,), _functions(B.MAX_FUNCTIONS + 1), False),
    (tuple(range(B.MAX_CONSTS)), _functions(1), True),
    (tuple(range(B.MAX_CONSTS + 1)), _functions(1), False),
    (("é" * (B.MAX_CONST_BYTES // 2),), _functions(1), True),
    (("é" * (B.MAX_CONST_BYTES // 2) + "x",), _functions(1), False),  # counted in UTF-8 bytes
    ((b"b" * (B.MAX_CONST_BYTES + 1),), _functions(1), False),
], ids=["functions_max", "functions_over", "consts_max", "consts_over", "text_max", "text_over",
        "bytes_over"])
def test_function_and_constant_limits_are_checked_before_any_function_is(monkeypatch, consts,
                                                                          functions, fits):
    decoded = []
    real = B._decode_function
    monkeypatch.setattr(B, "_decode_function", lambda record: decoded.append(1) or real(record))
    code = encode_program(Program(consts, tuple(functions)))
    if fits:
        assert len(load_program(code).functions) == len(functions)
    else:
        with pytest.raises(VMFault) as info:
            load_program(code)
        assert info.value.code == "bad_bytecode" and decoded == []


def test_instructions_per_function_are_limited():
    at_most = _one(*[(Op.CONST, 0)], *[(Op.NOT, 0)] * (B.MAX_INSTRUCTIONS - 2), (Op.RETURN, 0))
    assert len(load_program(at_most).functions[0].instrs) == B.MAX_INSTRUCTIONS
    over = _one(*[(Op.CONST, 0)], *[(Op.NOT, 0)] * (B.MAX_INSTRUCTIONS - 1), (Op.RETURN, 0))
    with pytest.raises(VMFault, match="1..65535 instructions"):
        load_program(over)


def test_a_rules_proposal_fits_a_tx_and_is_always_translated():
    """MAX_RULES_CODE_BYTES leaves room in a tx for the rest of it, and a program of that many
    bytes has fewer instructions (one byte at least each) than the translation takes on; the
    default rules fit one."""
    biggest = {"action": "upgrade_rules", "code": b"c" * MAX_RULES_CODE_BYTES,
               "effective_height": 2**63 - 1}
    tx = Tx.create(keypair("alice"), CHAIN_ID, "govern", "alice", EXPIRES, {"proposal": biggest},
                   salt=2**63 - 1)
    assert len(tx.raw) < MAX_TX_BYTES
    assert MAX_RULES_CODE_BYTES < MAX_TRANSLATED_INSTRUCTIONS
    assert len(load_default_rules()) < MAX_RULES_CODE_BYTES


def _max_size_programs():
    """Hostile programs of about MAX_RULES_CODE_BYTES that the loader accepts: the most
    instructions, the most jump targets, the most branches, the most functions."""
    n = MAX_RULES_CODE_BYTES - 200
    yield _one((Op.CONST, 0), *[(Op.NOT, 0)] * n, (Op.RETURN, 0))
    k = n // 3
    yield _one(*[(Op.JUMP, i + 1) for i in range(k)], (Op.CONST, 0), (Op.RETURN, 0))
    k = n // 6
    yield _one(*[x for i in range(k) for x in ((Op.LOAD, 0), (Op.JUMP_IF_FALSE, 2 * i + 2))],
               (Op.CONST, 0), (Op.RETURN, 0), nparams=1)
    yield encode_program(Program((0,), tuple(_functions(B.MAX_FUNCTIONS))))


def test_the_loader_holds_a_bounded_multiple_of_its_input():
    """Memory, not time (a deterministic measure): loading hostile programs of the largest size a
    proposal carries allocates at most a few hundred times their size."""
    for code in _max_size_programs():
        assert len(code) <= MAX_RULES_CODE_BYTES + 1_000
        load_program.cache_clear()
        prepare.cache_clear()
        tracemalloc.start()
        try:
            prepare(code)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 400 * MAX_RULES_CODE_BYTES, peak  # under 5 MB


# ---------------------------------------------------------------------------------- compile bomb
def test_the_compile_bomb_cannot_reach_a_node():
    """A proposal carries bytecode only: source, alone or beside code, is refused by the tx's
    static checks; source bytes sent as code are not bytecode."""
    for proposal in ({"action": "upgrade_rules", "effective_height": 9, "source": COMPILE_BOMB},
                     {"action": "upgrade_rules", "code": compile_source(RULES_HOOKS),
                      "effective_height": 9, "source": COMPILE_BOMB}):
        with pytest.raises(InvalidTx) as info:
            Tx.create(keypair("alice"), CHAIN_ID, "govern", "alice", EXPIRES,
                      {"proposal": proposal})
        assert info.value.code == "invalid_field"
    assert "bad magic" in rules_verdict(COMPILE_BOMB.encode())


def test_the_client_compiler_refuses_the_compile_bomb_in_bounded_memory():
    assert len(COMPILE_BOMB) < 600 and 64 * 2 ** 24 == 1 << 30
    tracemalloc.start()
    try:
        with pytest.raises(CompileError, match=f"at most {B.MAX_CONST_BYTES} bytes") as info:
            compile_source(COMPILE_BOMB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.line == 8  # the first fold past MAX_CONST_BYTES: 64 B × 2^7 = 8 KiB
    assert peak < 2 * 1024 * 1024, peak
    # folding up to the bound is fine, and one more doubling is not
    fits = 'A = "' + "x" * (B.MAX_CONST_BYTES // 2) + '"\nB = A + A\n\ndef main():\n    return B\n'
    assert len(load_program(compile_source(fits)).consts[0]) == B.MAX_CONST_BYTES
    with pytest.raises(CompileError, match="at most"):
        compile_source(fits.replace("B = A + A", "B = A + A + 'x'"))


def test_source_nested_beyond_the_parser_is_a_compile_error_not_a_crash():
    with pytest.raises(CompileError, match="nests too deeply"):
        compile_source("def main():\n    return " + "-" * 5000 + "1\n")


def test_the_documented_limits_are_the_ones_in_the_code():
    """A wallet builds the body from docs/protocol.md and contracts/README.md: their numbers."""
    root = Path(__file__).resolve().parent.parent
    readme = (root / "contracts" / "README.md").read_text(encoding="utf-8")
    protocol = (root / "docs" / "protocol.md").read_text(encoding="utf-8")
    assert f"| {B.MAX_FUNCTIONS} / {B.MAX_CONSTS} / {B.MAX_CONST_BYTES} |" in readme
    assert f"at most {MAX_RULES_CODE_BYTES}\nbytes" in readme
    assert f"`code` (bin, 1..{MAX_RULES_CODE_BYTES} B" in protocol
    assert (f"at most {B.MAX_FUNCTIONS} functions, {B.MAX_CONSTS} constants, {B.MAX_CONST_BYTES} bytes "
            "per text or bytes\nconstant") in protocol


def test_past_the_dataflow_budget_every_load_keeps_its_check_and_results_agree(monkeypatch):
    """The unbound-local dataflow a crafted program could make revisit code once per local stops
    at a fixed budget; the LOADs it did not clear keep their check, which raises only where the
    interpreter would, so the results stay the interpreter's."""
    source = "def main(a, b):\n    if a > 0:\n        x = b\n    y = a\n    return x + y\n"
    fn = load_program(compile_source(source)).functions[0]
    loads = {pc for pc, (op, arg) in enumerate(fn.instrs) if op == Op.LOAD and arg >= fn.nparams}
    assert T._maybe_unbound(fn) < loads  # within the budget, some LOADs need no check
    monkeypatch.setattr(T, "UNBOUND_VISITS_PER_INSTRUCTION", 0)
    assert T._maybe_unbound(fn) == loads
    T.translate.cache_clear()
    try:
        assert _same(compile_source(source), args=[1, 5]) == _same(compile_source(source), args=[1, 5])
        _same(compile_source(source), args=[0, 5])  # x unbound on this path: the same fault on both
        _same(compile_source(WORKLOAD), args=[[1, "a", None], 3])
    finally:
        T.translate.cache_clear()
