"""Code generation for one contract function: statements and expressions to instructions.

Locals are numbered parameters first, then in order of first assignment; hidden loop counters
and iterators get `$n` slots that are reused once their loop ends. Jumps are patched through
labels when the function is complete.
"""
import ast

from contracts.bytecode import MAX_INSTRUCTIONS, MAX_LOCALS, FunctionCode
from contracts.errors import CompileError
from contracts.language import BINOPS, COMPARES, RESERVED, check_literal, fail, fold, rejected
from contracts.opcodes import BUILTINS, HOST_FUNCTIONS, Op
from contracts.values import INT_MAX, INT_MIN


class _Label:
    __slots__ = ("pc",)

    def __init__(self):
        self.pc = None


class FunctionCompiler:
    """Code generation for one function; `module` is the compiler's Module (names, constants)."""

    def __init__(self, module, node: ast.FunctionDef):
        self.m = module
        self.node = node
        self.code: list[list] = []
        self.lines: list[list[int]] = []
        self.locals: dict[str, int] = {}
        self.free_temps: list[int] = []
        self.loops: list[tuple[_Label, _Label]] = []
        self._check_signature()
        for arg in node.args.args:
            self._declare_local(arg, arg.arg)
        for sub in ast.walk(node):
            target = sub.target if isinstance(sub, ast.AugAssign | ast.For) else None
            targets = sub.targets if isinstance(sub, ast.Assign) else [target]
            for t in targets:
                if isinstance(t, ast.Name) and t.id not in self.locals:
                    self._declare_local(t, t.id)

    def _check_signature(self) -> None:
        node, args = self.node, self.node.args
        if node.decorator_list:
            raise fail(node, "decorators are not allowed")
        if args.vararg or args.kwarg or args.kwonlyargs or args.posonlyargs or args.defaults:
            raise fail(node, "parameters are plain names: no defaults, *args, **kwargs or '/'")

    def _declare_local(self, node: ast.AST, name: str) -> None:
        if name in RESERVED or name in self.m.functions or name in self.m.constants:
            raise fail(node, f"cannot assign to '{name}': it names a builtin, function or constant")
        self.locals[name] = len(self.locals)

    def compile(self) -> FunctionCode:
        self.block(self.node.body)
        if not isinstance(self.node.body[-1], ast.Return):
            self.emit(Op.CONST, self.m.const(None))
            self.emit(Op.RETURN)
        if len(self.locals) > MAX_LOCALS:
            raise fail(self.node, f"more than {MAX_LOCALS} local variables")
        if len(self.code) > MAX_INSTRUCTIONS:
            raise fail(self.node, f"more than {MAX_INSTRUCTIONS} instructions; split the function")
        instrs = []
        for op, arg in self.code:
            arg = arg.pc if isinstance(arg, _Label) else arg
            if not 0 <= arg <= 0xFFFF:
                raise fail(self.node, "an operand exceeds 65535 (too many constants or functions)")
            instrs.append((op, arg))
        lines = tuple((pc, line) for pc, line in self.lines if pc < len(instrs))
        names = tuple(self.locals)
        return FunctionCode(self.node.name, len(self.node.args.args), names, tuple(instrs), lines)

    # -- emission helpers --------------------------------------------------------------------

    def emit(self, op: Op, arg=0) -> None:
        self.code.append([op, arg])

    def mark(self, label: _Label) -> None:
        label.pc = len(self.code)

    def temp(self) -> int:
        if self.free_temps:
            return self.free_temps.pop()
        index = len(self.locals)
        self.locals[f"${index}"] = index
        return index

    def _at_line(self, node: ast.stmt) -> None:
        pc = len(self.code)
        if self.lines and self.lines[-1][0] == pc:
            self.lines[-1][1] = node.lineno
        elif not self.lines or self.lines[-1][1] != node.lineno:
            self.lines.append([pc, node.lineno])

    # -- statements --------------------------------------------------------------------------

    def block(self, stmts: list[ast.stmt]) -> None:
        for stmt in stmts:
            self._at_line(stmt)
            handler = getattr(self, f"stmt_{type(stmt).__name__}", None)
            if handler is None:
                raise rejected(stmt)
            handler(stmt)

    def stmt_Expr(self, node: ast.Expr) -> None:
        if isinstance(node.value, ast.Constant) and type(node.value.value) is str:
            return  # a docstring or string comment
        self.expr(node.value)
        self.emit(Op.POP)

    def stmt_Pass(self, node: ast.Pass) -> None:
        pass

    def stmt_Return(self, node: ast.Return) -> None:
        if node.value is None:
            self.emit(Op.CONST, self.m.const(None))
        else:
            self.expr(node.value)
        self.emit(Op.RETURN)

    def stmt_Assign(self, node: ast.Assign) -> None:
        if len(node.targets) != 1:
            raise fail(node, "chained assignment is not allowed")
        self.expr(node.value)
        self.store(node.targets[0])

    def store(self, target: ast.expr) -> None:
        """Store the value on top of the stack into a name or a subscript."""
        if isinstance(target, ast.Name):
            self.emit(Op.STORE, self.locals[target.id])
        elif isinstance(target, ast.Subscript):
            self.expr(target.value)
            self.expr(self._index(target))
            self.emit(Op.SET_ITEM)
        else:
            raise fail(target, "can only assign to a name or a subscript")

    def stmt_AugAssign(self, node: ast.AugAssign) -> None:
        op = self._binop(node)
        target = node.target
        if isinstance(target, ast.Name):
            self.emit(Op.LOAD, self.locals[target.id])
            self.expr(node.value)
            self.emit(op)
            self.emit(Op.STORE, self.locals[target.id])
        elif isinstance(target, ast.Subscript):
            container, key = self.temp(), self.temp()
            self.expr(target.value)
            self.emit(Op.STORE, container)
            self.expr(self._index(target))
            self.emit(Op.STORE, key)
            for load in (container, key):
                self.emit(Op.LOAD, load)
            self.emit(Op.GET_ITEM)
            self.expr(node.value)
            self.emit(op)
            for load in (container, key):
                self.emit(Op.LOAD, load)
            self.emit(Op.SET_ITEM)
            self.free_temps += [key, container]
        else:
            raise fail(target, "can only assign to a name or a subscript")

    def stmt_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            if not isinstance(target, ast.Subscript):
                raise fail(target, "del only removes map keys or list items: del x[key]")
            self.expr(target.value)
            self.expr(self._index(target))
            self.emit(Op.DEL_ITEM)

    def stmt_If(self, node: ast.If) -> None:
        orelse, end = _Label(), _Label()
        self.expr(node.test)
        self.emit(Op.JUMP_IF_FALSE, orelse)
        self.block(node.body)
        if node.orelse:
            self.emit(Op.JUMP, end)
        self.mark(orelse)
        self.block(node.orelse)
        self.mark(end)

    def stmt_While(self, node: ast.While) -> None:
        if node.orelse:
            raise fail(node, "while ... else is not allowed")
        top, end = _Label(), _Label()
        self.mark(top)
        if not (isinstance(node.test, ast.Constant) and node.test.value is True):
            self.expr(node.test)
            self.emit(Op.JUMP_IF_FALSE, end)
        self._loop_body(node.body, top, end)

    def _loop_body(self, body, top: _Label, end: _Label) -> None:
        self.loops.append((top, end))
        self.block(body)
        self.loops.pop()
        self.emit(Op.JUMP, top)
        self.mark(end)

    def stmt_For(self, node: ast.For) -> None:
        if node.orelse:
            raise fail(node, "for ... else is not allowed")
        if not isinstance(node.target, ast.Name):
            raise fail(node.target, "a for loop assigns one name")
        it = node.iter
        if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range":
            self._for_range(node, it)
        else:
            self._for_each(node)

    def _for_range(self, node: ast.For, call: ast.Call) -> None:
        """range() loops count in hidden locals: no iterator object, Python's semantics."""
        if call.keywords or not 1 <= len(call.args) <= 3:
            raise fail(call, "range takes 1 to 3 positional arguments")
        step = self._literal_int(call.args[2]) if len(call.args) == 3 else 1
        if not step:
            raise fail(call, "range's step must be a non-zero integer constant")
        bounds = call.args[:2] if len(call.args) > 1 else [ast.Constant(0), call.args[0]]
        current, stop = self.temp(), self.temp()
        for bound, slot in zip(bounds, (current, stop)):
            self.expr(bound)
            if self._literal_int(bound) is None:
                self.emit(Op.CONST, self.m.const(0))
                self.emit(Op.ADD)  # faults unless the bound is an int, as range() would
            self.emit(Op.STORE, slot)
        top, end = _Label(), _Label()
        self.mark(top)
        self.emit(Op.LOAD, current)
        self.emit(Op.LOAD, stop)
        self.emit(Op.LT if step > 0 else Op.GT)
        self.emit(Op.JUMP_IF_FALSE, end)
        self.emit(Op.LOAD, current)
        self.emit(Op.STORE, self.locals[node.target.id])
        self.emit(Op.LOAD, current)
        self.emit(Op.CONST, self.m.const(step))
        self.emit(Op.ADD)
        self.emit(Op.STORE, current)
        self._loop_body(node.body, top, end)
        self.free_temps += [stop, current]

    def _for_each(self, node: ast.For) -> None:
        """Loops over a list's items or a map's keys in sorted order."""
        iterator = self.temp()
        self.expr(node.iter)
        self.emit(Op.GET_ITER)
        self.emit(Op.STORE, iterator)
        top, end = _Label(), _Label()
        self.mark(top)
        self.emit(Op.LOAD, iterator)
        self.emit(Op.FOR_ITER, end)
        self.emit(Op.STORE, self.locals[node.target.id])
        self._loop_body(node.body, top, end)
        self.free_temps.append(iterator)

    def stmt_Break(self, node: ast.Break) -> None:
        if not self.loops:
            raise fail(node, "break outside a loop")
        self.emit(Op.JUMP, self.loops[-1][1])

    def stmt_Continue(self, node: ast.Continue) -> None:
        if not self.loops:
            raise fail(node, "continue outside a loop")
        self.emit(Op.JUMP, self.loops[-1][0])

    # -- expressions -------------------------------------------------------------------------

    def expr(self, node: ast.expr) -> None:
        handler = getattr(self, f"expr_{type(node).__name__}", None)
        if handler is None:
            raise rejected(node)
        handler(node)

    def expr_Constant(self, node: ast.Constant) -> None:
        self.emit(Op.CONST, self.m.const(check_literal(node)))

    def expr_Name(self, node: ast.Name) -> None:
        name = node.id
        if name in self.locals:
            self.emit(Op.LOAD, self.locals[name])
        elif name in self.m.constants:
            self.emit(Op.CONST, self.m.const(self.m.constants[name]))
        elif name in self.m.functions or name in RESERVED:
            raise fail(node, f"'{name}' can only be called")
        else:
            raise fail(node, f"unknown name '{name}'")

    def _binop(self, node) -> Op:
        op = BINOPS.get(type(node.op))
        if op is None:
            hint = "; use // (no floats)" if isinstance(node.op, ast.Div) else ""
            raise fail(node, f"operator {type(node.op).__name__} is not allowed{hint}")
        return op

    def expr_BinOp(self, node: ast.BinOp) -> None:
        op = self._binop(node)
        self.expr(node.left)
        self.expr(node.right)
        self.emit(op)

    def _literal_int(self, node: ast.expr) -> int | None:
        """node's value if it is a constant int expression (literals and constants), else None."""
        names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        if names & set(self.locals):
            return None
        try:
            value = fold(node, self.m.constants)
        except CompileError:
            return None
        return value if type(value) is int else None

    def expr_UnaryOp(self, node: ast.UnaryOp) -> None:
        if isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant) and \
                type(node.operand.value) is int:
            value = -node.operand.value
            if not INT_MIN <= value <= INT_MAX:
                raise fail(node, "integer literal outside signed 128-bit range")
            self.emit(Op.CONST, self.m.const(value))
            return
        ops = {ast.USub: Op.NEG, ast.Not: Op.NOT}
        if type(node.op) not in ops:
            raise fail(node, f"unary {type(node.op).__name__} is not allowed")
        self.expr(node.operand)
        self.emit(ops[type(node.op)])

    def expr_BoolOp(self, node: ast.BoolOp) -> None:
        jump = Op.JUMP_IF_FALSE_OR_POP if isinstance(node.op, ast.And) else Op.JUMP_IF_TRUE_OR_POP
        end = _Label()
        for value in node.values[:-1]:
            self.expr(value)
            self.emit(jump, end)
        self.expr(node.values[-1])
        self.mark(end)

    def expr_Compare(self, node: ast.Compare) -> None:
        if len(node.ops) != 1:
            raise fail(node, "chained comparisons are not allowed; use 'and'")
        op, right = node.ops[0], node.comparators[0]
        if isinstance(op, ast.Is | ast.IsNot):
            if not any(isinstance(n, ast.Constant) and n.value is None for n in (node.left, right)):
                raise fail(node, "'is' only compares with None")
            code = Op.EQ if isinstance(op, ast.Is) else Op.NE
        else:
            code = COMPARES[type(op)]
        self.expr(node.left)
        self.expr(right)
        self.emit(code)

    def expr_IfExp(self, node: ast.IfExp) -> None:
        orelse, end = _Label(), _Label()
        self.expr(node.test)
        self.emit(Op.JUMP_IF_FALSE, orelse)
        self.expr(node.body)
        self.emit(Op.JUMP, end)
        self.mark(orelse)
        self.expr(node.orelse)
        self.mark(end)

    def expr_List(self, node: ast.List) -> None:
        for element in node.elts:
            self.expr(element)
        self.emit(Op.BUILD_LIST, len(node.elts))

    def expr_Dict(self, node: ast.Dict) -> None:
        for key, value in zip(node.keys, node.values):
            if key is None:
                raise fail(node, "'**' unpacking is not allowed")
            self.expr(key)
            self.expr(value)
        self.emit(Op.BUILD_MAP, len(node.keys))

    def _index(self, node: ast.Subscript) -> ast.expr:
        if isinstance(node.slice, ast.Slice | ast.Tuple):
            raise rejected(node.slice)
        return node.slice

    def expr_Subscript(self, node: ast.Subscript) -> None:
        self.expr(node.value)
        self.expr(self._index(node))
        self.emit(Op.GET_ITEM)

    def expr_Call(self, node: ast.Call) -> None:
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise fail(node, "calls take positional arguments only")
        op, arity, arg, what = self._callee(node.func)
        if len(node.args) != arity:
            raise fail(node, f"{what} takes {arity} argument(s), {len(node.args)} given")
        for a in node.args:
            self.expr(a)
        self.emit(op, arg)

    def _callee(self, func: ast.expr) -> tuple[Op, int, int, str]:
        if isinstance(func, ast.Attribute):
            if isinstance(func.value, ast.Name) and func.value.id == "host" and \
                    func.attr in HOST_FUNCTIONS:
                op, arity = HOST_FUNCTIONS[func.attr]
                return op, arity, 0, f"host.{func.attr}"
            raise fail(func, "only host.<function>(...) calls may use '.'; "
                              f"host functions are {', '.join(HOST_FUNCTIONS)}")
        if not isinstance(func, ast.Name):
            raise fail(func, "a call must name a function")
        name = func.id
        if name in self.m.functions:
            index = list(self.m.functions).index(name)
            return Op.CALL, len(self.m.functions[name].args.args), index, name
        if name in BUILTINS:
            op, arity = BUILTINS[name]
            return op, arity, 0, name
        if name == "range":
            raise fail(func, "range() is only allowed as the iterable of a for loop")
        raise fail(func, f"unknown function '{name}'")
