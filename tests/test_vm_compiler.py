"""Compiler: determinism, rejection of everything outside the language, and bytecode verification."""
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import CompileError, DictHost, VMFault, code_hash, compile_source, disassemble, run
from contracts.bytecode import FunctionCode, Program, encode_program, load_program
from contracts.opcodes import BYTECODE_MAGIC, Op
from contracts.rules import default_rules_hash, default_rules_source, load_default_rules
from contracts.values import encode_value


def test_same_source_same_bytes_and_hash():
    source = default_rules_source()
    a, b = compile_source(source), compile_source(source)
    assert a == b
    assert code_hash(a) == hashlib.sha256(a).digest()
    assert load_default_rules() == a


def test_comments_do_not_change_bytes_but_code_does():
    base = "def main(x):\n    return x + 1\n"
    commented = "def main(x):\n    return x + 1  # one more\n"
    assert compile_source(base) == compile_source(commented)
    assert compile_source(base) != compile_source(base.replace("1", "2"))


_NAMES = st.sampled_from(["a", "b", "c"])
_EXPR = st.recursive(
    st.one_of(st.integers(-10 ** 6, 10 ** 6).map(str), _NAMES, st.sampled_from(['"s"', 'b"x"'])),
    lambda inner: st.tuples(inner, st.sampled_from(["+", "-", "*", "//", "%", "<", "==", "and"]),
                            inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
    max_leaves=8)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_NAMES, _EXPR), min_size=1, max_size=6))
def test_generated_sources_compile_deterministically(assignments):
    body = "".join(f"    {name} = {expr}\n" for name, expr in assignments)
    source = f"def main(a, b, c):\n{body}    return a\n"
    assert compile_source(source) == compile_source(source)


@pytest.mark.parametrize("source, fragment, line", [
    ("def main():\n    return 1.5\n", "floats are not allowed", 2),
    ("def main():\n    return 3 / 2\n", "use //", 2),
    ("import os\ndef main():\n    return 1\n", "imports are not allowed", 1),
    ("from os import path\n", "imports are not allowed", 1),
    ("class A:\n    pass\n", "classes are not allowed", 1),
    ("def main():\n    f = lambda x: x\n", "lambda", 2),
    ("def main():\n    try:\n        pass\n    except Exception:\n        pass\n", "try", 2),
    ("def main(x):\n    return x.y\n", "attribute access", 2),
    ("def main(x):\n    return x.append(1)\n", "only host.<function>", 2),
    ("def main():\n    return host.clock()\n", "only host.<function>", 2),
    ("def main():\n    return [i for i in range(3)]\n", "comprehensions", 2),
    ("def main():\n    return (1, 2)\n", "tuples", 2),
    ("def main():\n    return {1, 2}\n", "sets", 2),
    ("def main(x):\n    return f'{x}'\n", "f-strings", 2),
    ("def main(x):\n    return x[1:2]\n", "slices", 2),
    ("def main(x):\n    return 2 ** x\n", "Pow", 2),
    ("def main(x):\n    return x << 1\n", "LShift", 2),
    ("def main(x):\n    return ~x\n", "Invert", 2),
    ("def main(x):\n    return 0 < x < 3\n", "chained", 2),
    ("def main(x):\n    return x is 3\n", "'is' only compares with None", 2),
    ("def main():\n    global y\n", "global", 2),
    ("def main():\n    assert 1\n", "assert", 2),
    ("def main():\n    raise 1\n", "raise", 2),
    ("def main():\n    with x:\n        pass\n", "with", 2),
    ("def main():\n    def inner():\n        pass\n", "module level", 2),
    ("async def main():\n    pass\n", "async", 1),
    ("def main(x=1):\n    return x\n", "no defaults", 1),
    ("def main(*xs):\n    return 1\n", "no defaults", 1),
    ("@dec\ndef main():\n    return 1\n", "decorators", 2),
    ("def main():\n    return nothing\n", "unknown name 'nothing'", 2),
    ("def main():\n    return print(1)\n", "unknown function 'print'", 2),
    ("def main():\n    return len(1, 2)\n", "takes 1 argument", 2),
    ("def main():\n    return host.tx(1)\n", "takes 0 argument", 2),
    ("def main():\n    x = range(3)\n", "range() is only allowed", 2),
    ("def main():\n    for i in range(0, 3, 0):\n        pass\n", "non-zero", 2),
    ("def main():\n    a, b = 1, 2\n", "tuples", 2),
    ("def main():\n    a = b = 1\n", "chained assignment", 2),
    ("def main():\n    len = 3\n", "cannot assign to 'len'", 2),
    ("def main():\n    host = 3\n", "cannot assign to 'host'", 2),
    ("X = 1\ndef main():\n    X = 2\n", "cannot assign to 'X'", 3),
    ("def main():\n    break\n", "break outside a loop", 2),
    ("def main():\n    while 1:\n        pass\n    else:\n        pass\n", "while ... else", 2),
    ("def main():\n    return f\n", "unknown name", 2),
    ("def f():\n    return 1\ndef main():\n    return f\n", "can only be called", 4),
    ("def main():\n    return 1\ndef main():\n    return 2\n", "defined twice", 3),
    ("x = 3\n", "at least one function", 1),
    ("print(1)\n", "only function definitions and constants", 1),
    ("X = [1]\ndef main():\n    return X\n", "literal expression", 1),
    ("X = 1 // 0\n", "division by zero", 1),
    ("def main():\n    return 170141183460469231731687303715884105728\n", "128-bit", 2),
    ("def main(:\n", "syntax error", 1),
    ("def main():\n    x: int = 3\n", "annotated assignment", 2),
    ("def main(x):\n    return x if (y := 2) else 3\n", "':='", 2),
    ("def main():\n    return {**{}}\n", "'**'", 2),
    ("def main(x):\n    del x\n", "del only removes", 2),
    ("def main(x):\n    return main(x=1)\n", "positional", 2),
])
def test_disallowed_syntax_is_rejected_with_its_line(source, fragment, line):
    with pytest.raises(CompileError) as info:
        compile_source(source)
    assert fragment in str(info.value)
    assert info.value.line == line


def test_module_constants_fold_and_docstrings_are_ignored():
    source = '''"""A contract."""
DAY = 24 * 60 * 60 * 1000
NAME = "ab" + "cd"
NEG = -DAY // 7
def main():
    """Doc."""
    "a string statement is a comment"
    return [DAY, NAME, NEG, -170141183460469231731687303715884105728]
'''
    result = run(compile_source(source), "main", [], DictHost(), 10_000)
    assert result.return_value == [86_400_000, "abcd", -86_400_000 // 7, -(1 << 127)]


def test_disassembler_lists_functions_lines_and_operands():
    code = compile_source("def _twice(x):\n    return x * 2\n\ndef main(n):\n    return _twice(n)\n")
    text = disassemble(code)
    assert code_hash(code).hex() in text
    assert "def _twice(x)" in text and "def main(n)" in text
    assert "line 5:" in text and "CALL" in text and "(_twice)" in text and "MUL" in text
    assert "def on_vote()" in disassemble(load_default_rules())


# -- bytecode verification: hostile or corrupt bytecode never runs ------------------------------

def _program(*instrs, nparams=0, names=("a",), consts=(1,)):
    fn = FunctionCode("main", nparams, tuple(names), tuple(instrs), ())
    return encode_program(Program(tuple(consts), (fn,)))


def _bad(code, fragment):
    with pytest.raises(VMFault) as info:
        load_program(code)
    assert info.value.code == "bad_bytecode"
    assert fragment in info.value.message


def test_valid_handwritten_program_loads_and_runs():
    code = _program((Op.CONST, 0), (Op.RETURN, 0))
    assert load_program(code).functions[0].max_stack == 1
    assert run(code, "main", [], DictHost(), 100).return_value == 1


@pytest.mark.parametrize("instrs, fragment", [
    (((Op.POP, 0), (Op.CONST, 0), (Op.RETURN, 0)), "underflow"),
    (((Op.CONST, 5), (Op.RETURN, 0)), "constant 5 out of range"),
    (((Op.LOAD, 3), (Op.RETURN, 0)), "local 3 out of range"),
    (((Op.JUMP, 9),), "jump target"),
    (((Op.CONST, 0),), "falls off the end"),
    (((Op.CALL, 4), (Op.RETURN, 0)), "unknown function"),
    (((Op.CONST, 0), (Op.JUMP_IF_FALSE, 3), (Op.CONST, 0), (Op.CONST, 0), (Op.RETURN, 0)),
     "stack height differs"),
    (((Op.CONST, 0), (Op.JUMP, 0)), "stack height differs"),
    (((Op.CONST, 0),) * 257 + ((Op.BUILD_LIST, 257), (Op.RETURN, 0)), "operand stack deeper"),
])
def test_verifier_rejects_bad_functions(instrs, fragment):
    _bad(_program(*instrs), fragment)


def test_verifier_rejects_corrupt_containers():
    good = _program((Op.CONST, 0), (Op.RETURN, 0))
    _bad(b"XXXX" + good[4:], "bad magic or version")
    _bad(BYTECODE_MAGIC + b"\x02" + good[5:], "bad magic or version")
    _bad(good[:-3], "")
    _bad(good[:5] + encode_value([[], []]), "at least one function")
    _bad(good[:5] + encode_value([[[1]], [["main", 0, [], b"\x01\x00\x00\x15", b""]]]), "scalars")
    _bad(good[:5] + encode_value([[1], [["main", 0, [], b"\xff", b""]]]), "unknown opcode")
    _bad(good[:5] + encode_value([[1], [["main", 0, [], b"\x01\x00", b""]]]), "truncated operand")
    _bad(good[:5] + encode_value([[1], [["main", 2, ["a"], b"\x01\x00\x00\x15", b""]]]),
         "parameter count")
    twice = ["main", 0, [], b"\x01\x00\x00\x15", b""]
    _bad(good[:5] + encode_value([[1], [twice, twice]]), "duplicate")
    # msgpack with a non-minimal integer encoding: same meaning, different bytes
    _bad(good[:5] + b"\x92\x91\xd0\x01" + good[5 + 3:], "")


def test_programs_beyond_vm_limits_fail_at_compile_time():
    elements = ", ".join(["1"] * 300)
    with pytest.raises(CompileError) as info:
        compile_source(f"def main():\n    return [{elements}]\n")
    assert "exceeds a VM limit" in str(info.value)
    assigns = "".join(f"    v{i} = {i}\n" for i in range(300))
    with pytest.raises(CompileError):
        compile_source(f"def main():\n{assigns}")


def test_default_rules_hash_is_the_hash_of_its_bytecode():
    assert default_rules_hash() == code_hash(load_default_rules())
