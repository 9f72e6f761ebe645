"""Running a contract: `run`, the `Machine` that meters one call, and the reference interpreter.

`run` wraps the host in a `Journal`, runs one public function, and commits the journal only if the
call returned (a host that discards a failed call's writes itself is wrapped in a `WriteThrough`
instead). Two engines execute bytecode with one semantics: translated Python functions
(`translate.py`, used by every plain `run`) and the instruction-at-a-time interpreter below, used
when a trace is asked for, for contracts too big to translate, and, in tests, as the reference
the translation is compared with. Both
call the opcode functions of `handlers.py` and meter through this Machine:

- on entering a basic block (`bytecode.basic_blocks`) the engine charges the block's fixed gas
  and counts its instructions as steps (`Machine.enter_block`, which translated code inlines),
  and opcode functions charge their dynamic costs as they run (`charge`, `alloc`, `scan`);
- every limit (gas, steps, call depth, value-stack slots, memory) ends the call with a typed error
  and no writes.
"""
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from contracts.bytecode import Program, basic_blocks, load_program
from contracts.errors import OutOfGas, VMError, VMFault
from contracts.handlers import DONE, VALUE_OPS, build_list, build_map, for_next
from contracts.host import Host, Journal, WriteThrough
from contracts.opcodes import GAS_PER_ALLOC_WORD, GAS_PER_SCAN_WORD, SPECS, Op
from contracts.translate import translate
from contracts.values import import_value, value_size

MAX_CALL_DEPTH = 200  # translated calls nest as Python calls: keep well inside the recursion limit
UNBOUND = object()    # the interpreter's value of a local not yet assigned


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-call resource limits besides gas. Memory is bytes allocated during the call by the
    value size model; nothing is freed within a call, so it bounds the live bytes from above."""
    max_steps: int = 1_000_000
    max_call_depth: int = 64
    max_stack_slots: int = 4096
    max_memory: int = 4 * 1024 * 1024

    def __post_init__(self):
        if not 0 <= self.max_call_depth <= MAX_CALL_DEPTH:
            raise ValueError(f"max_call_depth must be 0..{MAX_CALL_DEPTH}")


DEFAULT_LIMITS = Limits()


class Result(NamedTuple):
    """A completed call. events: (name, data) in emit order; awards: (account, dimension, amount).
    (A NamedTuple: immutable, and made for every call, so cheaper than a frozen dataclass.)"""
    return_value: object
    gas_used: int
    events: tuple
    awards: tuple = ()
    steps: int = 0


class TraceStep(NamedTuple):
    """One executed instruction and all the gas it accounts for: its fixed cost (charged when its
    basic block was entered) plus what it charged while running."""
    function: str
    pc: int
    op: str
    gas: int


@lru_cache(maxsize=64)
def prepare(code: bytes) -> tuple[Program, tuple]:
    """Decode and verify bytecode (VMFault "bad_bytecode" if it is not valid) and cache it with,
    per function, the interpreter's instructions as (op, arg, opcode function, block), where
    block is (gas, steps) at the first instruction of a basic block and None elsewhere. Check a
    contract with this before accepting it on chain. (Translation happens on its first run.)"""
    program = load_program(code)
    runtime = []
    for fn in program.functions:
        blocks = {start: (gas, end - start) for start, end, gas in basic_blocks(fn)}
        runtime.append(tuple((op, arg, VALUE_OPS.get(op), blocks.get(pc))
                             for pc, (op, arg) in enumerate(fn.instrs)))
    return program, tuple(runtime)


class Frame:
    __slots__ = ("index", "code", "pc", "stack", "locals", "slots")

    def __init__(self, index: int, code: tuple, local_values: list, slots: int):
        self.index = index
        self.code = code
        self.pc = 0
        self.stack: list = []
        self.locals = local_values
        self.slots = slots


class Machine:
    """One contract call's execution state. Use `run`; this class is public for tests and tools.
    Translated code reads and writes the counters below directly (see translate.py)."""

    __slots__ = ("code", "program", "runtime", "journal", "gas_limit", "max_steps", "max_depth",
                 "max_slots", "max_memory", "trace", "gas_used", "steps", "memory", "depth",
                 "stack_slots", "trusted")

    def __init__(self, code: bytes, journal: Journal, gas_limit: int,
                 limits: Limits = DEFAULT_LIMITS, trace: list | None = None,
                 trusted: bool = False):
        if type(gas_limit) is not int or gas_limit < 0:
            raise ValueError("gas_limit must be a non-negative int")
        self.code = code
        self.program, self.runtime = prepare(code)
        self.journal = journal
        self.gas_limit = gas_limit
        self.max_steps = limits.max_steps
        self.max_depth = limits.max_call_depth
        self.max_slots = limits.max_stack_slots
        self.max_memory = limits.max_memory
        self.trace = trace
        self.gas_used = 0
        self.steps = 0
        self.memory = 0
        self.depth = 0
        self.stack_slots = 0
        self.trusted = trusted  # the host says `trusted_values`: see import_value

    # -- metering: where gas is consumed (translated code inlines enter_block) ------------------

    def charge(self, amount: int) -> None:
        used = self.gas_used + amount
        if used > self.gas_limit:
            self.out_of_gas()
        self.gas_used = used

    def out_of_gas(self):
        self.gas_used = self.gas_limit
        raise OutOfGas(f"gas limit {self.gas_limit} exceeded")

    def step_limit(self):
        raise VMFault("step_limit", f"more than {self.max_steps} instructions")

    def enter_block(self, gas: int, steps: int) -> None:
        """A basic block starts: charge its fixed gas, then count its instructions as steps.
        (Translated code inlines exactly this.)"""
        self.charge(gas)
        self.steps += steps
        if self.steps > self.max_steps:
            self.step_limit()

    def alloc(self, nbytes: int) -> None:
        """Account for a new value of nbytes: gas per 8-byte word, then the memory limit.
        (`charge` and `_count_memory` inlined: this runs for most values a call makes.)"""
        used = self.gas_used + (nbytes + 7) // 8 * GAS_PER_ALLOC_WORD
        if used > self.gas_limit:
            self.out_of_gas()
        self.gas_used = used
        self.memory += nbytes
        if self.memory > self.max_memory:
            raise VMFault("memory_limit", f"more than {self.max_memory} bytes allocated")

    def scan(self, nbytes: int) -> None:
        """Charge for comparing or searching nbytes of text."""
        self.charge((nbytes + 31) // 32 * GAS_PER_SCAN_WORD)

    def _count_memory(self, nbytes: int) -> None:
        self.memory += nbytes
        if self.memory > self.max_memory:
            raise VMFault("memory_limit", f"more than {self.max_memory} bytes allocated")

    def import_value(self, value):
        """A private, validated copy of a host value, allocated (and paid for) in this call. The
        values of a host that says `trusted_values` are valid and private already (`Host`): they
        are only paid for, by the same size model."""
        if self.trusted:
            size = value_size(value)
        else:
            value, size = import_value(value)
        if size:
            self.alloc(size)
        return value

    # -- frames (both engines) -----------------------------------------------------------------

    def push_frame(self, slots: int) -> None:
        """A function is entered: check call depth and value-stack slots, then take them."""
        if self.depth >= self.max_depth:
            raise VMFault("call_depth_exceeded", f"calls nest at most {self.max_depth} deep")
        if self.stack_slots + slots > self.max_slots:
            raise VMFault("stack_overflow", f"more than {self.max_slots} value-stack slots")
        self.depth += 1
        self.stack_slots += slots

    # -- execution -----------------------------------------------------------------------------

    def call(self, function: str, args: list):
        """Run a public function to completion and return a copy of its return value."""
        translated = translate(self.code) if self.trace is None else None  # None: interpret
        if type(function) is not str:
            index = None
        elif translated is not None:
            index = translated.names.get(function)
        else:
            index = self.program.index_of(function)
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
        if translated is not None:
            result = self._run_translated(translated, index, values)
        else:
            result = _Interpreter(self).run(index, values)
        return import_value(result)[0]

    def _run_translated(self, translated, index: int, values: list):
        try:
            return translated.functions[index](self, *values)
        except VMError as e:
            where = translated.locate(e.__traceback__)
            if where is not None:
                self._blame(e, *where)
            raise

    def _blame(self, e: VMError, index: int, pc: int) -> None:
        fn = self.program.functions[index]
        e.function, e.line = fn.name, fn.line_at(pc)


class _Interpreter:
    """The reference engine: one instruction at a time, with a TraceStep per instruction when the
    machine has a trace."""

    def __init__(self, m: Machine):
        self.m = m
        self.frames: list[Frame] = []

    def enter(self, index: int, args: list) -> None:
        fn = self.m.program.functions[index]
        slots = len(fn.local_names) + fn.max_stack
        self.m.push_frame(slots)
        local_values = args + [UNBOUND] * (len(fn.local_names) - len(args))
        self.frames.append(Frame(index, self.m.runtime[index], local_values, slots))

    def run(self, index: int, args: list):
        self.enter(index, args)
        try:
            return self._execute()
        except VMError as e:
            frame = self.frames[-1]
            self.m._blame(e, frame.index, frame.pc - 1)
            raise

    def _execute(self):
        m, trace, program = self.m, self.m.trace, self.m.program
        frame = self.frames[-1]
        while True:
            pc = frame.pc
            op, arg, value_op, block = frame.code[pc]
            frame.pc = pc + 1
            before = m.gas_used
            if block is not None:
                m.enter_block(*block)
                before += block[0]
            s = frame.stack
            if value_op is not None:
                spec = SPECS[op]
                args = s[len(s) - spec.pops:]
                del s[len(s) - spec.pops:]
                value = value_op(m, *args)
                if spec.pushes:
                    s.append(value)
            elif op == Op.CONST:
                s.append(program.consts[arg])
            elif op == Op.LOAD:
                value = frame.locals[arg]
                if value is UNBOUND:
                    name = program.functions[frame.index].local_names[arg]
                    raise VMFault("unbound_local", f"'{name}' is read before it is assigned")
                s.append(value)
            elif op == Op.STORE:
                frame.locals[arg] = s.pop()
            elif op == Op.POP:
                s.pop()
            elif op == Op.JUMP:
                frame.pc = arg
            elif op == Op.JUMP_IF_FALSE:
                if not s.pop():
                    frame.pc = arg
            elif op == Op.JUMP_IF_FALSE_OR_POP:
                if s[-1]:
                    s.pop()
                else:
                    frame.pc = arg
            elif op == Op.JUMP_IF_TRUE_OR_POP:
                if s[-1]:
                    frame.pc = arg
                else:
                    s.pop()
            elif op == Op.FOR_ITER:
                item = for_next(s.pop())
                if item is DONE:
                    frame.pc = arg
                else:
                    s.append(item)
            elif op == Op.BUILD_LIST or op == Op.BUILD_MAP:
                n = arg if op == Op.BUILD_LIST else 2 * arg
                items = s[len(s) - n:]
                del s[len(s) - n:]
                s.append(build_list(m, items) if op == Op.BUILD_LIST else build_map(m, items))
            elif op == Op.CALL:
                n = program.functions[arg].nparams
                args = s[len(s) - n:]
                del s[len(s) - n:]
                self.enter(arg, args)
            else:  # RETURN
                value = s.pop()
                self.frames.pop()
                m.depth -= 1
                m.stack_slots -= frame.slots
                if self.frames:
                    self.frames[-1].stack.append(value)
            if trace is not None:
                trace.append(TraceStep(program.functions[frame.index].name, pc, op.name,
                                       SPECS[op].gas + m.gas_used - before))
            if not self.frames:
                return value
            frame = self.frames[-1]


def run(code: bytes, function: str, args: list, host: Host, gas_limit: int, *,
        limits: Limits = DEFAULT_LIMITS, trace: list | None = None) -> Result:
    """Call `function(*args)` of the contract `code` against `host` with at most gas_limit gas.

    On success the call's writes are applied to host and a Result returned. On `OutOfGas` or
    `VMFault` (whose `gas_used` says what to charge) host is untouched, or, for a host that is
    itself all or nothing (`Host.all_or_nothing`), has been written and must discard what the
    call did: such a host gets each write as it is made (`WriteThrough`). trace, if given, receives
    a TraceStep per executed instruction (the call then runs on the interpreter: same result).
    """
    journal = WriteThrough(host) if getattr(host, "all_or_nothing", False) else Journal(host)
    machine = Machine(code, journal, gas_limit, limits, trace, getattr(host, "trusted_values", False))
    try:
        value = machine.call(function, args)
    except VMError as e:
        e.gas_used = machine.gas_used
        raise
    events, awards = tuple(journal.events), tuple(journal.awards)
    journal.commit()
    return Result(value, machine.gas_used, events, awards, machine.steps)
