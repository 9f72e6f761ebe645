"""The interpreter: frames, metering, limits, and the `run` entry point.

`run` wraps the host in a `Journal`, runs one public function, and commits the journal only if the
call returned. Gas is consumed in exactly one method, `Machine.charge`: the dispatch loop charges
each instruction's fixed cost there before running it, and handlers charge their dynamic costs
there too. Every limit (gas, steps, call depth, value-stack slots, memory) ends the call with a
typed error and no writes.
"""
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from contracts.bytecode import FunctionCode, Program, load_program
from contracts.errors import OutOfGas, VMError, VMFault
from contracts.handlers import DISPATCH, UNBOUND
from contracts.host import Host, Journal
from contracts.opcodes import GAS_PER_ALLOC_WORD, GAS_PER_SCAN_WORD, SPECS
from contracts.values import import_value


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-call resource limits besides gas. Memory is bytes allocated during the call by the
    value size model; nothing is freed within a call, so it bounds the live bytes from above."""
    max_steps: int = 1_000_000
    max_call_depth: int = 64
    max_stack_slots: int = 4096
    max_memory: int = 4 * 1024 * 1024


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class Result:
    """A completed call. events: (name, data) in emit order; awards: (account, dimension, amount)."""
    return_value: object
    gas_used: int
    events: tuple
    awards: tuple = ()
    steps: int = 0


class TraceStep(NamedTuple):
    """One executed instruction and all the gas it consumed (fixed plus dynamic)."""
    function: str
    pc: int
    op: str
    gas: int


@lru_cache(maxsize=64)
def prepare(code: bytes) -> tuple[Program, tuple]:
    """Decode and verify bytecode (VMFault "bad_bytecode" if it is not valid) and cache it with,
    per function, its instructions as (handler, arg, fixed gas, op). Check a contract with this
    before accepting it on chain."""
    program = load_program(code)
    runtime = tuple(tuple((DISPATCH[op], arg, SPECS[op].gas, op) for op, arg in fn.instrs)
                    for fn in program.functions)
    return program, runtime


class Frame:
    __slots__ = ("fn", "code", "pc", "stack", "locals", "slots")

    def __init__(self, fn: FunctionCode, code: tuple, local_values: list, slots: int):
        self.fn = fn
        self.code = code
        self.pc = 0
        self.stack: list = []
        self.locals = local_values
        self.slots = slots


class Machine:
    """One contract call's execution state. Use `run`; this class is public for tests and tools."""

    def __init__(self, code: bytes, journal: Journal, gas_limit: int,
                 limits: Limits = DEFAULT_LIMITS, trace: list | None = None):
        if type(gas_limit) is not int or gas_limit < 0:
            raise ValueError("gas_limit must be a non-negative int")
        self.program, self.runtime = prepare(code)
        self.consts = self.program.consts
        self.journal = journal
        self.gas_limit = gas_limit
        self.limits = limits
        self.trace = trace
        self.gas_used = 0
        self.steps = 0
        self.memory = 0
        self.stack_slots = 0
        self.frames: list[Frame] = []
        self.frame: Frame | None = None
        self.result = None

    # -- metering: the only place gas is consumed ------------------------------------------------

    def charge(self, amount: int) -> None:
        used = self.gas_used + amount
        if used > self.gas_limit:
            self.gas_used = self.gas_limit
            raise OutOfGas(f"gas limit {self.gas_limit} exceeded")
        self.gas_used = used

    def alloc(self, nbytes: int) -> None:
        """Account for a new value of nbytes: gas per 8-byte word, then the memory limit."""
        self.charge((nbytes + 7) // 8 * GAS_PER_ALLOC_WORD)
        self._count_memory(nbytes)

    def scan(self, nbytes: int) -> None:
        """Charge for comparing or searching nbytes of text."""
        self.charge((nbytes + 31) // 32 * GAS_PER_SCAN_WORD)

    def _count_memory(self, nbytes: int) -> None:
        self.memory += nbytes
        if self.memory > self.limits.max_memory:
            raise VMFault("memory_limit", f"more than {self.limits.max_memory} bytes allocated")

    def import_value(self, value):
        """A private, validated copy of a host value, allocated (and paid for) in this call."""
        copy, size = import_value(value)
        if size:
            self.alloc(size)
        return copy

    # -- frames --------------------------------------------------------------------------------

    def enter(self, index: int, args: list) -> None:
        fn = self.program.functions[index]
        if len(self.frames) >= self.limits.max_call_depth:
            raise VMFault("call_depth_exceeded", f"calls nest at most {self.limits.max_call_depth} deep")
        slots = len(fn.local_names) + fn.max_stack
        if self.stack_slots + slots > self.limits.max_stack_slots:
            raise VMFault("stack_overflow", f"more than {self.limits.max_stack_slots} value-stack slots")
        self.stack_slots += slots
        local_values = args + [UNBOUND] * (len(fn.local_names) - len(args))
        self.frame = Frame(fn, self.runtime[index], local_values, slots)
        self.frames.append(self.frame)

    def leave(self, value) -> None:
        frame = self.frames.pop()
        self.stack_slots -= frame.slots
        if self.frames:
            self.frame = self.frames[-1]
            self.frame.stack.append(value)
        else:
            self.frame = None
            self.result = value

    # -- execution -----------------------------------------------------------------------------

    def call(self, function: str, args: list):
        """Run a public function to completion and return a copy of its return value."""
        index = self.program.index_of(function) if type(function) is str else None
        if index is None or function.startswith("_"):
            raise VMFault("no_such_function", f"no public function {function!r}")
        fn = self.program.functions[index]
        if type(args) not in (list, tuple) or len(args) != fn.nparams:
            raise VMFault("bad_arguments", f"{function} takes {fn.nparams} argument(s)")
        values = []
        for arg in args:
            copy, size = import_value(arg)
            self._count_memory(size)
            values.append(copy)
        self.enter(index, values)
        try:
            self._execute()
        except VMError as e:
            if self.frame is not None:
                e.function = self.frame.fn.name
                e.line = self.frame.fn.line_at(self.frame.pc - 1)
            raise
        return import_value(self.result)[0]

    def _execute(self) -> None:
        charge, trace = self.charge, self.trace
        max_steps, steps = self.limits.max_steps, self.steps
        frame = self.frame
        try:
            while frame is not None:
                pc = frame.pc
                handler, arg, cost, op = frame.code[pc]
                frame.pc = pc + 1
                before = self.gas_used
                charge(cost)
                steps += 1
                if steps > max_steps:
                    raise VMFault("step_limit", f"more than {max_steps} instructions")
                handler(self, frame, arg)
                if trace is not None:
                    trace.append(TraceStep(frame.fn.name, pc, op.name, self.gas_used - before))
                frame = self.frame
        finally:
            self.steps = steps


def run(code: bytes, function: str, args: list, host: Host, gas_limit: int, *,
        limits: Limits = DEFAULT_LIMITS, trace: list | None = None) -> Result:
    """Call `function(*args)` of the contract `code` against `host` with at most gas_limit gas.

    On success the call's writes are applied to host and a Result returned. On `OutOfGas` or
    `VMFault` (whose `gas_used` says what to charge) host is untouched. trace, if given, receives
    a TraceStep per executed instruction.
    """
    journal = Journal(host)
    machine = Machine(code, journal, gas_limit, limits, trace)
    try:
        value = machine.call(function, args)
    except VMError as e:
        e.gas_used = machine.gas_used
        raise
    events, awards = tuple(journal.events), tuple(journal.awards)
    journal.commit()
    return Result(value, machine.gas_used, events, awards, machine.steps)
