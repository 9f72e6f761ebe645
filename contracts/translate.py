"""The fast engine: verified bytecode translated once into Python functions.

Each contract function becomes one Python function whose operand stack and locals are Python
local variables: the verifier gives every instruction one stack height, so the value at height k
is the variable `s<k>`, and local i is `l<i>`. Within a basic block, a constant or a local pushed
on the stack is not copied to its `s<k>` but written where it is consumed (`x = y + 1` becomes
`l0 = l1 + 1`, with the int check); before a STORE to a local, the block's pending reads of it
are copied out, and everything pending is copied out before control leaves the block. Control
flow is a loop that dispatches on the pc of a jump target (`_b`); code between jump targets runs
straight through. Each basic block starts with the metering of `Machine.enter_block`, inlined: its
fixed gas, then its steps. Everything that computes on values calls the opcode functions of
`handlers.py`, the same ones the interpreter calls; only moves of values and control are written
here, and a few fast paths that compute exactly what those functions compute for the commonest
operands without the call: int `+ - * < <= > >= == !=`, `//` by a positive int, `min`/`max` of ints,
`abs` of an int, `len`, text `+`, text `==` and `!=` (with their scan charge), a map item with a
text key it holds, a list item at a non-negative index in range, `x == None`.

The Python source is derived deterministically from verified bytecode only: fixed templates
filled with integers from the bytecode, `repr` of its scalar constants and of its local names,
compiled with no builtins but `type`, `int`, `str`, `bytes`, `list`, `dict` and `len`. It can
only do what the opcode functions do.

A fault is located afterwards from its traceback: each generated line maps to the (function, pc)
of the instruction it belongs to, and a function's prologue maps to its caller's CALL.
"""
from functools import lru_cache

from contracts.bytecode import basic_blocks, code_hash, load_program
from contracts.errors import VMFault
from contracts.handlers import DONE, VALUE_OPS, build_list, build_map, for_next, overflow
from contracts.opcodes import JUMPS, SPECS, Op
from contracts.values import INT_MAX, INT_MIN

_CONDITIONAL = {Op.JUMP_IF_FALSE: "not ", Op.JUMP_IF_FALSE_OR_POP: "not ",
                Op.JUMP_IF_TRUE_OR_POP: ""}
_INT_COMPARE = {Op.LT: "<", Op.LE: "<=", Op.GT: ">", Op.GE: ">=", Op.EQ: "==", Op.NE: "!="}
_INT_ARITH = {Op.ADD: "+", Op.SUB: "-", Op.MUL: "*"}
# for two ints (b > 0 for //): what op_floordiv, op_min, op_max compute, never out of range
_INT_PURE = {Op.FLOORDIV: "{a} // {b}", Op.MIN: "{b} if {b} < {a} else {a}",
             Op.MAX: "{b} if {b} > {a} else {a}"}
_NO_CONST = object()


def _unbound(name: str) -> VMFault:
    return VMFault("unbound_local", f"'{name}' is read before it is assigned")


class _Unset:
    """The value of a local that may be read before it is assigned (see `_maybe_unbound`)."""


_NAMESPACE = {"U": _Unset, "DONE": DONE, "for_next": for_next, "build_list": build_list,
              "build_map": build_map, "overflow": overflow, "unbound": _unbound,
              "MAX": INT_MAX, "MIN": INT_MIN,
              **{fn.__name__: fn for fn in VALUE_OPS.values()}}


_BUILTINS = {"type": type, "int": int, "str": str, "bytes": bytes, "list": list, "dict": dict,
             "len": len}


class Translated:
    """A contract's translated functions (by function index), the index of each function by
    name, and the map from generated lines to (function index, pc) used to say where a fault
    happened."""

    def __init__(self, functions: tuple, names: dict, filename: str, where: list):
        self.functions = functions
        self.names = names
        self.filename = filename
        self.where = where

    def locate(self, tb) -> tuple[int, int] | None:
        """(function index, pc) of the innermost contract instruction in a traceback."""
        found = None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == self.filename:
                found = self.where[tb.tb_lineno - 1] or found
            tb = tb.tb_next
        return found


# Translating costs about 60 µs and tens of KB per instruction, once per contract: a contract
# bigger than this (20 times the default rules) is not translated but interpreted, which gives
# the same results, only slower.
MAX_TRANSLATED_INSTRUCTIONS = 16_384


@lru_cache(maxsize=64)
def translate(code: bytes) -> Translated | None:
    """The translated functions of verified bytecode (cached by content, like `prepare`), or
    None for a contract of more than MAX_TRANSLATED_INSTRUCTIONS instructions."""
    program = load_program(code)
    if sum(len(fn.instrs) for fn in program.functions) > MAX_TRANSLATED_INSTRUCTIONS:
        return None
    out = _Source()
    for index in range(len(program.functions)):
        _Function(out, program, index).write()
    filename = f"<contract {code_hash(code).hex()}>"
    namespace = dict(_NAMESPACE, __builtins__=_BUILTINS)
    exec(compile("\n".join(out.lines), filename, "exec"), namespace)  # noqa: S102 (see module doc)
    functions = tuple(namespace[f"f{i}"] for i in range(len(program.functions)))
    names = {fn.name: i for i, fn in enumerate(program.functions)}
    return Translated(functions, names, filename, out.where)


class _Source:
    """Lines of generated source, each with the (function, pc) it belongs to (None: a prologue,
    blamed on the caller)."""

    def __init__(self):
        self.lines: list[str] = []
        self.where: list[tuple[int, int] | None] = []
        self.at: tuple[int, int] | None = None

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)
        self.where.append(self.at)


# Visits of the unbound-local dataflow per instruction: a crafted program can make it revisit code
# once per local (instructions x locals); past this budget every LOAD keeps its check instead.
UNBOUND_VISITS_PER_INSTRUCTION = 16


def _maybe_unbound(fn) -> set[int]:
    """pcs of LOADs that may read a local before any assignment on some path (a dataflow of
    definitely-assigned locals, as bitsets); every other LOAD needs no check. The check itself
    is what the interpreter does, so checking more LOADs changes speed, never a result."""
    n = len(fn.instrs)
    everything = (1 << len(fn.local_names)) - 1
    assigned = [everything] * n
    assigned[0] = (1 << fn.nparams) - 1
    work = [0]
    budget = UNBOUND_VISITS_PER_INSTRUCTION * n
    while work:
        budget -= 1
        if budget < 0:
            return {pc for pc, (op, arg) in enumerate(fn.instrs)  # parameters are always bound
                    if op == Op.LOAD and arg >= fn.nparams and fn.heights[pc] is not None}
        pc = work.pop()
        op, arg = fn.instrs[pc]
        out = assigned[pc] | (1 << arg if op == Op.STORE else 0)
        for nxt in _next_pcs(op, arg, pc):
            if nxt < n and fn.heights[nxt] is not None and assigned[nxt] & out != assigned[nxt]:
                assigned[nxt] &= out
                work.append(nxt)
    return {pc for pc, (op, arg) in enumerate(fn.instrs)
            if op == Op.LOAD and fn.heights[pc] is not None and not assigned[pc] >> arg & 1}


def _next_pcs(op: Op, arg: int, pc: int) -> tuple[int, ...]:
    if op == Op.JUMP:
        return (arg,)
    if op == Op.RETURN:
        return ()
    if op in JUMPS:
        return (pc + 1, arg)
    return (pc + 1,)


def _const(value) -> str:
    return repr(value)  # consts are verified scalars: int, str, bytes, bool or None


class _Function:
    """Writes the Python function of one contract function."""

    def __init__(self, out: _Source, program, index: int):
        self.out, self.program, self.index = out, program, index
        self.fn = fn = program.functions[index]
        self.slots = len(fn.local_names) + fn.max_stack
        self.unchecked = _maybe_unbound(fn)
        self.targets = {0} | {arg for pc, (op, arg) in enumerate(fn.instrs)
                              if op in JUMPS and fn.heights[pc] is not None}
        # stack slots pushed by CONST or LOAD and not yet written to their `s<k>`: height ->
        # (Python expression: a constant's repr or a local's name, the constant or _NO_CONST)
        self.pending: dict[int, tuple[str, object]] = {}

    def write(self) -> None:
        fn, out = self.fn, self.out
        params = "".join(f", l{i}" for i in range(fn.nparams))
        out.at = None
        out.emit(0, f"def f{self.index}(m{params}):")
        out.emit(1, f"m.push_frame({self.slots})")
        for local in sorted({fn.instrs[pc][1] for pc in self.unchecked}):
            out.emit(1, f"l{local} = U")
        out.emit(1, "L = m.gas_limit")
        out.emit(1, "S = m.max_steps")
        # a segment: a jump target and the reachable blocks after it up to the next jump target
        segments: list[list] = []
        for block in basic_blocks(fn):
            if fn.heights[block[0]] is not None:
                if block[0] in self.targets:
                    segments.append([])
                segments[-1].append(block)
        if any(op in JUMPS and fn.heights[pc] is not None for pc, (op, _) in enumerate(fn.instrs)):
            out.emit(1, "_b = 0")
            out.emit(1, "while True:")
            self.dispatch(segments, 2)
        else:
            self.segment(segments[0], 1)

    def dispatch(self, segments: list, indent: int) -> None:
        """A binary search on _b over the segments' first pcs."""
        if len(segments) == 1:
            self.segment(segments[0], indent)
            return
        mid = len(segments) // 2
        self.out.at = None
        self.out.emit(indent, f"if _b < {segments[mid][0][0]}:")
        self.dispatch(segments[:mid], indent + 1)
        self.out.at = None
        self.out.emit(indent, "else:")
        self.dispatch(segments[mid:], indent + 1)

    def segment(self, blocks: list, indent: int) -> None:
        out = self.out
        for start, end, gas in blocks:
            out.at = (self.index, start)
            out.emit(indent, f"_g = m.gas_used + {gas}")
            out.emit(indent, "if _g > L: m.out_of_gas()")
            out.emit(indent, "m.gas_used = _g")
            out.emit(indent, f"_n = m.steps + {end - start}")
            out.emit(indent, "if _n > S: m.step_limit()")
            out.emit(indent, "m.steps = _n")
            for pc in range(start, end):
                out.at = (self.index, pc)
                self.instruction(pc, indent)
            self.flush(indent)  # the next block reads its operands from `s<k>`
        end = blocks[-1][1]
        if self.fn.instrs[end - 1][0] not in (Op.JUMP, Op.RETURN):  # into the next segment
            out.emit(indent, f"_b = {end}")
            out.emit(indent, "continue")

    def operand(self, k: int) -> str:
        """The Python expression of stack slot k, taken off the pending operands."""
        pending = self.pending.pop(k, None)
        return f"s{k}" if pending is None else pending[0]

    def const_at(self, k: int, default=None):
        """The constant in stack slot k if a CONST of this block pushed it, else default."""
        pending = self.pending.get(k)
        return default if pending is None or pending[1] is _NO_CONST else pending[1]

    def int_operands(self, h: int) -> tuple[str, str, str, str, bool]:
        """For a binary op at stack height h: its operands a and b, the variable of its result,
        the test that both are ints (none for a constant int b), and whether b is one."""
        b_int = type(self.const_at(h - 1)) is int
        b, a = self.operand(h - 1), self.operand(h - 2)
        both_int = f"type({a}) is int" + ("" if b_int else f" and type({b}) is int")
        return a, b, f"s{h - 2}", both_int, b_int

    def flush(self, indent: int, where=None) -> None:
        """Write pending operands to their `s<k>` (all, or those `where(expression)` holds for)."""
        for k in sorted(self.pending):
            expression = self.pending[k][0]
            if where is None or where(expression):
                self.out.emit(indent, f"s{k} = {expression}")
                del self.pending[k]

    def instruction(self, pc: int, indent: int) -> None:
        """One instruction. Operands pushed by CONST and LOAD are not copied to a stack variable
        but used where they are consumed (a local read later is still the value it had: a STORE
        to it first writes out the pending reads of it); everything pending is written out before
        control leaves the block (`flush`)."""
        fn = self.fn
        op, arg = fn.instrs[pc]
        h = fn.heights[pc]

        def emit(line: str, deeper: int = 0) -> None:
            self.out.emit(indent + deeper, line)

        if op == Op.CONST:
            value = self.program.consts[arg]
            self.pending[h] = (_const(value), value)
        elif op == Op.LOAD:
            if pc in self.unchecked:
                emit(f"if l{arg} is U: raise unbound({fn.local_names[arg]!r})")
            self.pending[h] = (f"l{arg}", _NO_CONST)
        elif op == Op.STORE:
            value = self.operand(h - 1)
            self.flush(indent, lambda expression: expression == f"l{arg}")
            emit(f"l{arg} = {value}")
        elif op == Op.POP:
            self.operand(h - 1)
        elif op == Op.JUMP:
            self.flush(indent)
            emit(f"_b = {arg}")
            emit("continue")
        elif op in _CONDITIONAL:
            if op == Op.JUMP_IF_FALSE:  # pops its operand on both paths
                test = self.operand(h - 1)
                self.flush(indent)
            else:  # the operand stays on the stack where the jump goes
                self.flush(indent)
                test = f"s{h - 1}"
            emit(f"if {_CONDITIONAL[op]}{test}:")
            emit(f"_b = {arg}", 1)
            emit("continue", 1)
        elif op == Op.FOR_ITER:
            self.flush(indent)
            top = f"s{h - 1}"
            emit(f"{top} = for_next({top})")
            emit(f"if {top} is DONE:")
            emit(f"_b = {arg}", 1)
            emit("continue", 1)
        elif op == Op.CALL:
            n = self.program.functions[arg].nparams
            args = "".join(f", {self.operand(k)}" for k in range(h - n, h))
            emit(f"s{h - n} = f{arg}(m{args})")
        elif op == Op.RETURN:
            value = self.operand(h - 1)
            self.pending.clear()
            emit("m.depth -= 1")
            emit(f"m.stack_slots -= {self.slots}")
            emit(f"return {value}")
        elif op in (Op.BUILD_LIST, Op.BUILD_MAP):
            n = arg if op == Op.BUILD_LIST else 2 * arg
            items = ", ".join(self.operand(k) for k in range(h - n, h))
            emit(f"s{h - n} = {'build_list' if op == Op.BUILD_LIST else 'build_map'}(m, [{items}])")
        elif op in (Op.EQ, Op.NE) and self.const_at(h - 1, _NO_CONST) is None:
            # `x == None` (how `x is None` compiles): op_eq is `is` when one side is None
            self.operand(h - 1)
            known = self.const_at(h - 2, _NO_CONST)
            value = self.operand(h - 2)
            if known is not _NO_CONST:  # a constant compared with None: `is` on a literal warns
                value = _const((known is None) == (op == Op.EQ))
            else:
                value = f"{value} is {'' if op == Op.EQ else 'not '}None"
            emit(f"s{h - 2} = {value}")
        elif op in _INT_ARITH or op in _INT_COMPARE:
            # exactly what op_add, op_sub, op_mul, op_lt, op_eq... compute for two ints (and
            # op_add for two str), without the call
            a, b, out, both_int, b_int = self.int_operands(h)
            emit(f"if {both_int}:")
            if op in _INT_ARITH:
                emit(f"{out} = {a} {_INT_ARITH[op]} {b}", 1)
                emit(f"if {out} > MAX or {out} < MIN: raise overflow()", 1)
            else:
                emit(f"{out} = {a} {_INT_COMPARE[op]} {b}", 1)
            if op == Op.ADD and not b_int:
                emit(f"elif type({a}) is str and type({b}) is str:")
                emit(f"m.alloc(8 + len({a}) + len({b}))", 1)
                emit(f"{out} = {a} + {b}", 1)
            elif op in (Op.EQ, Op.NE) and not b_int:  # op_eq's scan of the shorter text
                emit(f"elif type({a}) is str and type({b}) is str:")
                emit(f"_g = m.gas_used + ((len({a}) if len({a}) < len({b}) else len({b})) + 31) // 32", 1)
                emit("if _g > L: m.out_of_gas()", 1)
                emit("m.gas_used = _g", 1)
                emit(f"{out} = {a} {_INT_COMPARE[op]} {b}", 1)
            emit("else:")
            emit(f"{out} = {VALUE_OPS[op].__name__}(m, {a}, {b})", 1)
        elif op in _INT_PURE:
            a, b, out, check, b_int = self.int_operands(h)
            if op == Op.FLOORDIV and not (b_int and int(b) > 0):
                check += f" and {b} > 0"
            emit(f"if {check}:")
            emit(f"{out} = {_INT_PURE[op].format(a=a, b=b)}", 1)
            emit("else:")
            emit(f"{out} = {VALUE_OPS[op].__name__}(m, {a}, {b})", 1)
        elif op in (Op.GET_ITEM, Op.SET_ITEM) and self.const_at(h - 2, _NO_CONST) is not _NO_CONST:
            # a constant is never a map, and `True[k]` or `"s"["k"]` in the source would be a
            # SyntaxWarning (an error under -W error): only the opcode function's call
            key, container = self.operand(h - 1), self.operand(h - 2)
            if op == Op.GET_ITEM:
                emit(f"s{h - 2} = op_get_item(m, {container}, {key})")
            else:
                emit(f"op_set_item(m, {self.operand(h - 3)}, {container}, {key})")
        elif op in (Op.GET_ITEM, Op.SET_ITEM):
            # what op_get_item / op_set_item do for a map and a text key it holds
            known = self.const_at(h - 1, _NO_CONST)
            key, container = self.operand(h - 1), self.operand(h - 2)
            tests = []  # what op_get_item / op_set_item do for a map and a text key it holds,
            if known is _NO_CONST or type(known) is str:  # and for a list and an index in range
                check = "" if type(known) is str else f" and type({key}) is str"
                tests.append(f"type({container}) is dict{check} and {key} in {container}")
            if known is _NO_CONST or type(known) is int and known >= 0:
                check = "" if type(known) is int else f" and type({key}) is int and {key} >= 0"
                tests.append(f"type({container}) is list{check} and {key} < len({container})")
            value = self.operand(h - 3) if op == Op.SET_ITEM else None
            for i, test in enumerate(tests):
                emit(f"{'elif' if i else 'if'} {test}:")
                emit(f"s{h - 2} = {container}[{key}]" if value is None else f"{container}[{key}] = {value}", 1)
            if tests:
                emit("else:")
            call = (f"s{h - 2} = op_get_item(m, {container}, {key})" if value is None
                    else f"op_set_item(m, {value}, {container}, {key})")
            emit(call, 1 if tests else 0)
        elif op == Op.ABS or op == Op.LEN:
            x, out = self.operand(h - 1), f"s{h - 1}"
            if op == Op.ABS:  # abs(MIN) is out of range: op_abs faults
                emit(f"if type({x}) is int and {x} > MIN:")
                emit(f"{out} = {x} if {x} >= 0 else -{x}", 1)
            else:
                emit(f"if type({x}) is list or type({x}) is str or type({x}) is dict or type({x}) is bytes:")
                emit(f"{out} = len({x})", 1)
            emit("else:")
            emit(f"{out} = {VALUE_OPS[op].__name__}(m, {x})", 1)
        else:
            k = SPECS[op].pops
            args = [self.operand(i) for i in range(h - k, h)]
            call = f"{VALUE_OPS[op].__name__}(m{''.join(f', {a}' for a in args)})"
            emit(f"s{h - k} = {call}" if SPECS[op].pushes else call)
