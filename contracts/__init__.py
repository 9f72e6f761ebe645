"""The contract VM: the chain's community-asset rules as metered, deterministic bytecode.

Contracts are written in a small Python subset, compiled to versioned bytecode (identified by
`code_hash`) and run against a `Host`. Guarantees: the same code, arguments and host state give
the same result, gas and writes on every node (integers only, no floats, clock, randomness or
I/O beyond the host API, maps iterated in sorted key order); every call is bounded by gas, steps,
call depth, value-stack slots and memory; a call that fails leaves no writes behind.
"""
from contracts.bytecode import code_hash
from contracts.compiler import compile_source
from contracts.disasm import disassemble
from contracts.errors import CompileError, OutOfGas, VMError, VMFault
from contracts.host import DIMENSIONS, DictHost, Host, Journal
from contracts.values import decode_own_value, decode_value, encode_value
from contracts.vm import DEFAULT_LIMITS, Limits, Result, TraceStep, prepare, run

__all__ = ["code_hash", "compile_source", "disassemble", "CompileError", "OutOfGas", "VMError",
           "VMFault", "DIMENSIONS", "DictHost", "Host", "Journal", "decode_own_value", "decode_value",
           "encode_value", "DEFAULT_LIMITS", "Limits", "Result", "TraceStep", "prepare", "run"]
