"""The instruction set: opcode numbers, operands, stack effects and gas.

Opcode numbers are part of bytecode format version 1 and never change meaning within a version.
Every instruction has a fixed gas cost, charged before it runs; a few also charge per byte
(allocation, storage writes, events, long comparisons) through the same meter.
"""
from dataclasses import dataclass
from enum import IntEnum

BYTECODE_MAGIC = b"CAVM"
BYTECODE_VERSION = 1

# Dynamic costs, charged in addition to an instruction's fixed cost.
GAS_PER_ALLOC_WORD = 1      # per 8 bytes of memory allocated (strings, lists, maps, host results)
GAS_PER_STORAGE_BYTE = 4    # per byte of key + encoded value written to storage
GAS_PER_EVENT_BYTE = 2      # per byte of encoded event data
GAS_PER_SCAN_WORD = 1       # per 32 bytes of str/bytes compared or searched
GAS_PER_ITEM = 1            # per element visited by `in` on a list, per comparison when sorting


class Op(IntEnum):
    CONST = 0x01
    LOAD = 0x02
    STORE = 0x03
    POP = 0x04

    JUMP = 0x10
    JUMP_IF_FALSE = 0x11
    JUMP_IF_FALSE_OR_POP = 0x12
    JUMP_IF_TRUE_OR_POP = 0x13
    CALL = 0x14
    RETURN = 0x15

    ADD = 0x20
    SUB = 0x21
    MUL = 0x22
    FLOORDIV = 0x23
    MOD = 0x24
    NEG = 0x25
    NOT = 0x26

    EQ = 0x30
    NE = 0x31
    LT = 0x32
    LE = 0x33
    GT = 0x34
    GE = 0x35
    IN = 0x36
    NOT_IN = 0x37

    BUILD_LIST = 0x40
    BUILD_MAP = 0x41
    GET_ITEM = 0x42
    SET_ITEM = 0x43
    DEL_ITEM = 0x44
    GET_ITER = 0x45
    FOR_ITER = 0x46

    LEN = 0x50
    ABS = 0x51
    MIN = 0x52
    MAX = 0x53
    STR = 0x54
    ENCODE = 0x55
    APPEND = 0x56
    SORTED = 0x57

    HOST_TX = 0x60
    HOST_BLOCK = 0x61
    HOST_STORAGE_GET = 0x62
    HOST_STORAGE_SET = 0x63
    HOST_STORAGE_DELETE = 0x64
    HOST_ACCOUNT = 0x65
    HOST_POST = 0x66
    HOST_PARAM = 0x67
    HOST_AWARD = 0x68
    HOST_EMIT = 0x69
    HOST_NOW = 0x6A
    HOST_STAKE = 0x6B
    HOST_POOL = 0x6C


@dataclass(frozen=True, slots=True)
class OpSpec:
    """gas: fixed cost; has_arg: a u16 operand follows; pops/pushes: stack effect (None = depends on arg)."""
    gas: int
    has_arg: bool
    pops: int | None
    pushes: int


def _spec(gas, pops, pushes, has_arg=False):
    return OpSpec(gas, has_arg, pops, pushes)


SPECS: dict[Op, OpSpec] = {
    Op.CONST: _spec(1, 0, 1, True),
    Op.LOAD: _spec(1, 0, 1, True),
    Op.STORE: _spec(1, 1, 0, True),
    Op.POP: _spec(1, 1, 0),
    Op.JUMP: _spec(1, 0, 0, True),
    Op.JUMP_IF_FALSE: _spec(2, 1, 0, True),
    Op.JUMP_IF_FALSE_OR_POP: _spec(2, 1, 0, True),   # keeps the value when it jumps
    Op.JUMP_IF_TRUE_OR_POP: _spec(2, 1, 0, True),
    Op.CALL: _spec(10, None, 1, True),               # pops the callee's parameters
    Op.RETURN: _spec(2, 1, 0),
    Op.ADD: _spec(3, 2, 1),
    Op.SUB: _spec(3, 2, 1),
    Op.MUL: _spec(5, 2, 1),
    Op.FLOORDIV: _spec(8, 2, 1),
    Op.MOD: _spec(8, 2, 1),
    Op.NEG: _spec(2, 1, 1),
    Op.NOT: _spec(2, 1, 1),
    Op.EQ: _spec(2, 2, 1),
    Op.NE: _spec(2, 2, 1),
    Op.LT: _spec(2, 2, 1),
    Op.LE: _spec(2, 2, 1),
    Op.GT: _spec(2, 2, 1),
    Op.GE: _spec(2, 2, 1),
    Op.IN: _spec(3, 2, 1),
    Op.NOT_IN: _spec(3, 2, 1),
    Op.BUILD_LIST: _spec(3, None, 1, True),          # pops n
    Op.BUILD_MAP: _spec(3, None, 1, True),           # pops 2n (key, value, key, value...)
    Op.GET_ITEM: _spec(3, 2, 1),
    Op.SET_ITEM: _spec(4, 3, 0),                     # value, container, key
    Op.DEL_ITEM: _spec(4, 2, 0),
    Op.GET_ITER: _spec(3, 1, 1),
    Op.FOR_ITER: _spec(2, 1, 1, True),               # pops the iterator; pushes nothing when it jumps
    Op.LEN: _spec(2, 1, 1),
    Op.ABS: _spec(2, 1, 1),
    Op.MIN: _spec(2, 2, 1),
    Op.MAX: _spec(2, 2, 1),
    Op.STR: _spec(4, 1, 1),
    Op.ENCODE: _spec(4, 1, 1),
    Op.APPEND: _spec(3, 2, 1),
    Op.SORTED: _spec(5, 1, 1),
    Op.HOST_TX: _spec(100, 0, 1),
    Op.HOST_BLOCK: _spec(50, 0, 1),
    Op.HOST_STORAGE_GET: _spec(200, 1, 1),
    Op.HOST_STORAGE_SET: _spec(400, 2, 1),
    Op.HOST_STORAGE_DELETE: _spec(200, 1, 1),
    Op.HOST_ACCOUNT: _spec(200, 1, 1),
    Op.HOST_POST: _spec(200, 2, 1),
    Op.HOST_PARAM: _spec(20, 1, 1),
    Op.HOST_AWARD: _spec(300, 3, 1),
    Op.HOST_EMIT: _spec(200, 2, 1),
    Op.HOST_NOW: _spec(20, 0, 1),
    Op.HOST_STAKE: _spec(40, 1, 1),
    Op.HOST_POOL: _spec(30, 1, 1),
}

GAS_TABLE: dict[str, int] = {op.name: SPECS[op].gas for op in Op}

JUMPS = frozenset({Op.JUMP, Op.JUMP_IF_FALSE, Op.JUMP_IF_FALSE_OR_POP, Op.JUMP_IF_TRUE_OR_POP,
                   Op.FOR_ITER})

# Language-level names: builtin function -> (opcode, arity); host function -> (opcode, arity).
BUILTINS: dict[str, tuple[Op, int]] = {
    "len": (Op.LEN, 1), "abs": (Op.ABS, 1), "min": (Op.MIN, 2), "max": (Op.MAX, 2),
    "str": (Op.STR, 1), "encode": (Op.ENCODE, 1), "append": (Op.APPEND, 2),
    "sorted": (Op.SORTED, 1),
}
HOST_FUNCTIONS: dict[str, tuple[Op, int]] = {
    "tx": (Op.HOST_TX, 0), "block": (Op.HOST_BLOCK, 0),
    "storage_get": (Op.HOST_STORAGE_GET, 1), "storage_set": (Op.HOST_STORAGE_SET, 2),
    "storage_delete": (Op.HOST_STORAGE_DELETE, 1), "account": (Op.HOST_ACCOUNT, 1),
    "post": (Op.HOST_POST, 2), "param": (Op.HOST_PARAM, 1), "award": (Op.HOST_AWARD, 3),
    "emit": (Op.HOST_EMIT, 2), "now": (Op.HOST_NOW, 0), "stake": (Op.HOST_STAKE, 1),
    "pool": (Op.HOST_POOL, 1),
}
