"""Bytecode format v1: encoding, decoding and verification.

    bytecode = b"CAVM" | version (1 byte) | canonical msgpack [consts, functions]
    function = [name, nparams, local_names, code, lines]
    code     = instructions: opcode byte, then a big-endian u16 operand if the opcode takes one
    lines    = (u16 pc, u32 source line) pairs, where each source line starts

Loading verifies everything the interpreter and the translation rely on, so they never check it
again: fixed limits (size, functions, constants, instructions, locals, stack), known opcodes,
operands in range and jump targets inside the function (of every instruction, reachable or not),
a consistent operand-stack height at every reachable instruction (no underflow, a static maximum
per function), and no falling off the end. Hostile bytecode is rejected here with a
`bad_bytecode` fault.
"""
import hashlib
import struct
from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache

from contracts.errors import VMFault
from contracts.opcodes import BYTECODE_MAGIC, BYTECODE_VERSION, JUMPS, SPECS, Op
from contracts.values import decode_value, encode_value, is_scalar

MAX_CODE_BYTES = 256 * 1024
MAX_LOCALS = 256
MAX_INSTRUCTIONS = 65535
MAX_FRAME_STACK = 256
# Limits a proposer's bytecode meets before any of it is verified or translated (the default rules
# have 9 functions, 64 constants, the longest 25 bytes):
MAX_FUNCTIONS = 256  # each is verified, and translated into a Python function, on its own
MAX_CONSTS = 1024  # each is checked, and translated into a Python literal where it is used
MAX_CONST_BYTES = 4096  # a literal is pushed without allocating; the compiler's folding stops here too

_HEADER = BYTECODE_MAGIC + bytes([BYTECODE_VERSION])
_LINE = struct.Struct(">HI")


@dataclass(frozen=True, slots=True)
class FunctionCode:
    name: str
    nparams: int
    local_names: tuple[str, ...]
    instrs: tuple[tuple[Op, int], ...]
    lines: tuple[tuple[int, int], ...]
    max_stack: int = 0
    # set by verification: the operand-stack height before each instruction (None: unreachable)
    heights: tuple[int | None, ...] = ()

    def line_at(self, pc: int) -> int | None:
        """Source line of the instruction at pc (None if the bytecode carries no line for it)."""
        i = bisect_right([p for p, _ in self.lines], pc) - 1
        return self.lines[i][1] if i >= 0 else None


@dataclass(frozen=True, slots=True)
class Program:
    consts: tuple
    functions: tuple[FunctionCode, ...]

    def index_of(self, name: str) -> int | None:
        for i, fn in enumerate(self.functions):
            if fn.name == name:
                return i
        return None


def code_hash(code: bytes) -> bytes:
    """sha256 of the bytecode: the contract's identity on chain."""
    return hashlib.sha256(code).digest()


def _encode_instrs(instrs) -> bytes:
    out = bytearray()
    for op, arg in instrs:
        out.append(op)
        if SPECS[op].has_arg:
            out += arg.to_bytes(2, "big")
    return bytes(out)


def encode_program(program: Program) -> bytes:
    """The canonical bytes of a program (the compiler's output)."""
    functions = [[fn.name, fn.nparams, list(fn.local_names), _encode_instrs(fn.instrs),
                  b"".join(_LINE.pack(pc, line) for pc, line in fn.lines)]
                 for fn in program.functions]
    return _HEADER + encode_value([list(program.consts), functions])


def _bad(message: str) -> VMFault:
    return VMFault("bad_bytecode", message)


def const_bytes(value) -> int:
    """The size a text or bytes constant counts against MAX_CONST_BYTES (UTF-8 bytes); 0 for
    the other scalars."""
    if type(value) is str:
        return len(value.encode())
    return len(value) if type(value) is bytes else 0


def _decode_instrs(code: bytes) -> tuple[tuple[Op, int], ...]:
    instrs, i = [], 0
    while i < len(code):
        try:
            op = Op(code[i])
        except ValueError:
            raise _bad(f"unknown opcode 0x{code[i]:02x} at byte {i}") from None
        arg = 0
        if SPECS[op].has_arg:
            if i + 3 > len(code):
                raise _bad("truncated operand")
            arg = int.from_bytes(code[i + 1:i + 3], "big")
            i += 3
        else:
            i += 1
        instrs.append((op, arg))
    if not instrs or len(instrs) > MAX_INSTRUCTIONS:
        raise _bad(f"a function has 1..{MAX_INSTRUCTIONS} instructions")
    return tuple(instrs)


def _decode_lines(blob: bytes, n: int) -> tuple[tuple[int, int], ...]:
    if len(blob) % _LINE.size:
        raise _bad("truncated line table")
    lines = tuple(_LINE.iter_unpack(blob))
    pcs = [pc for pc, _ in lines]
    if pcs != sorted(set(pcs)) or any(pc >= n for pc in pcs):
        raise _bad("line table out of order")
    return lines


def _decode_function(record) -> FunctionCode:
    if type(record) is not list or len(record) != 5:
        raise _bad("a function is [name, nparams, local_names, code, lines]")
    name, nparams, local_names, code, lines = record
    if type(name) is not str or not name.isidentifier():
        raise _bad("function name must be an identifier")
    if type(local_names) is not list or len(local_names) > MAX_LOCALS or \
            any(type(n) is not str for n in local_names):
        raise _bad(f"{name}: local names must be at most {MAX_LOCALS} strings")
    if type(nparams) is not int or not 0 <= nparams <= len(local_names):
        raise _bad(f"{name}: bad parameter count")
    if type(code) is not bytes or type(lines) is not bytes:
        raise _bad(f"{name}: code and line table are bytes")
    instrs = _decode_instrs(code)
    return FunctionCode(name, nparams, tuple(local_names), instrs, _decode_lines(lines, len(instrs)))


def _successors(op: Op, arg: int, pc: int, h: int, pops: int) -> list[tuple[int, int]]:
    """(pc, stack height) pairs an instruction can continue at."""
    if op == Op.JUMP:
        return [(arg, h)]
    if op == Op.RETURN:
        return []
    if op == Op.JUMP_IF_FALSE:
        return [(pc + 1, h - 1), (arg, h - 1)]
    if op in (Op.JUMP_IF_FALSE_OR_POP, Op.JUMP_IF_TRUE_OR_POP):
        return [(pc + 1, h - 1), (arg, h)]
    if op == Op.FOR_ITER:
        return [(pc + 1, h), (arg, h - 1)]
    return [(pc + 1, h - pops + SPECS[op].pushes)]


def _check_operands(fn: FunctionCode, nconsts: int, nfunctions: int) -> None:
    """Every instruction's operand in range, reachable or not: an unreachable jump still starts
    a basic block at its target (`basic_blocks`), which must be a pc of the function."""
    n = len(fn.instrs)
    for op, arg in fn.instrs:
        if op == Op.CALL and arg >= nfunctions:
            raise _bad(f"{fn.name}: call to unknown function {arg}")
        if op == Op.CONST and arg >= nconsts:
            raise _bad(f"{fn.name}: constant {arg} out of range")
        if op in (Op.LOAD, Op.STORE) and arg >= len(fn.local_names):
            raise _bad(f"{fn.name}: local {arg} out of range")
        if op in JUMPS and arg >= n:
            raise _bad(f"{fn.name}: jump target {arg} out of range")


def _verify_function(fn: FunctionCode, nconsts: int, nparams_of: list[int]) -> FunctionCode:
    """fn with its maximum operand-stack height and the height at each instruction, after
    checking the operands of all instructions and the stack of every reachable one."""
    _check_operands(fn, nconsts, len(nparams_of))
    n = len(fn.instrs)
    heights: list[int | None] = [None] * n
    work, max_h = [(0, 0)], 0
    while work:
        pc, h = work.pop()
        if pc >= n:
            raise _bad(f"{fn.name}: execution falls off the end")
        if heights[pc] is not None:
            if heights[pc] != h:
                raise _bad(f"{fn.name}: stack height differs at pc {pc}")
            continue
        heights[pc] = h
        op, arg = fn.instrs[pc]
        pops = SPECS[op].pops
        if op == Op.CALL:
            pops = nparams_of[arg]
        elif op == Op.BUILD_LIST:
            pops = arg
        elif op == Op.BUILD_MAP:
            pops = 2 * arg
        if h < pops:
            raise _bad(f"{fn.name}: stack underflow at pc {pc}")
        max_h = max(max_h, h, h - pops + SPECS[op].pushes)
        if max_h > MAX_FRAME_STACK:
            raise _bad(f"{fn.name}: operand stack deeper than {MAX_FRAME_STACK}")
        work.extend(_successors(op, arg, pc, h, pops))
    return FunctionCode(fn.name, fn.nparams, fn.local_names, fn.instrs, fn.lines, max_h, tuple(heights))


# Instructions after which a new basic block starts (besides every jump target).
_ENDS_BLOCK = JUMPS | {Op.CALL, Op.RETURN}


def basic_blocks(fn: FunctionCode) -> tuple[tuple[int, int, int], ...]:
    """(start, end, fixed gas) of each basic block of fn, in pc order: maximal runs of
    instructions entered only at their first one (pc 0 or a jump target) and left only after
    their last one (a jump, CALL or RETURN, or the next block's start). The VM charges a block's
    fixed gas and steps when it enters the block, so this partition is part of gas semantics."""
    n = len(fn.instrs)
    starts = {0}
    for pc, (op, arg) in enumerate(fn.instrs):
        if op in JUMPS:
            starts.add(arg)
        if op in _ENDS_BLOCK and pc + 1 < n:
            starts.add(pc + 1)
    bounds = sorted(starts) + [n]
    return tuple((a, b, sum(SPECS[op].gas for op, _ in fn.instrs[a:b]))
                 for a, b in zip(bounds, bounds[1:]))


@lru_cache(maxsize=64)
def load_program(code: bytes) -> Program:
    """Decode and verify bytecode (cached by content: the result is immutable)."""
    if type(code) is not bytes or len(code) > MAX_CODE_BYTES:
        raise _bad(f"bytecode must be bytes of at most {MAX_CODE_BYTES}")
    if code[:len(_HEADER)] != _HEADER:
        raise _bad(f"not bytecode version {BYTECODE_VERSION} (bad magic or version)")
    try:
        body = decode_value(code[len(_HEADER):])
    except VMFault as e:
        raise _bad(e.message) from None
    if type(body) is not list or len(body) != 2 or type(body[0]) is not list or \
            type(body[1]) is not list or not body[1]:
        raise _bad("bytecode body is [consts, functions] with at least one function")
    consts, records = body
    if len(records) > MAX_FUNCTIONS or len(consts) > MAX_CONSTS:
        raise _bad(f"at most {MAX_FUNCTIONS} functions and {MAX_CONSTS} constants")
    if not all(is_scalar(c) for c in consts):
        raise _bad("constants are scalars")
    if any(const_bytes(c) > MAX_CONST_BYTES for c in consts):
        raise _bad(f"a text or bytes constant has at most {MAX_CONST_BYTES} bytes")
    functions = [_decode_function(r) for r in records]
    if len({fn.name for fn in functions}) != len(functions):
        raise _bad("duplicate function name")
    nparams_of = [fn.nparams for fn in functions]
    verified = tuple(_verify_function(fn, len(consts), nparams_of) for fn in functions)
    return Program(tuple(consts), verified)
