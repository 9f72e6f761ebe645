"""Compiler from the contract language (a small Python subset) to bytecode.

The source is parsed with `ast` and every node outside the subset is a `CompileError` with its
line. The output depends only on the source text: functions, locals and constants are numbered in
source order, so the same source always gives the same bytes (and the same `code_hash`).

Module level: a docstring, function definitions and constants (`NAME = <literal expression>`,
folded at compile time). Names starting with `_` are helpers the chain cannot call directly.
"""
import ast

from contracts.bytecode import Program, encode_program, load_program
from contracts.codegen import FunctionCompiler
from contracts.errors import CompileError, VMFault
from contracts.language import REJECTED, RESERVED, fail, fold, rejected


class Module:
    """What every function compiler needs to know about the module."""

    def __init__(self, tree: ast.Module):
        self.constants: dict[str, object] = {}
        self.functions: dict[str, ast.FunctionDef] = {}
        self.consts: list = []
        self._const_index: dict[tuple, int] = {}
        for stmt in tree.body:
            if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and \
                    type(stmt.value.value) is str:
                continue
            if isinstance(stmt, ast.FunctionDef):
                self._declare(stmt, stmt.name)
                self.functions[stmt.name] = stmt
            elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and \
                    isinstance(stmt.targets[0], ast.Name):
                self._declare(stmt, stmt.targets[0].id)
                self.constants[stmt.targets[0].id] = fold(stmt.value, self.constants)
            elif type(stmt).__name__ in REJECTED:
                raise rejected(stmt)
            else:
                raise fail(stmt, "only function definitions and constants are allowed at module level")
        if not self.functions:
            raise CompileError("a contract defines at least one function", 1)

    def _declare(self, node: ast.AST, name: str) -> None:
        if name in RESERVED:
            raise fail(node, f"'{name}' is reserved")
        if name in self.constants or name in self.functions:
            raise fail(node, f"'{name}' is defined twice")

    def const(self, value) -> int:
        key = (type(value).__name__, value)
        if key not in self._const_index:
            self._const_index[key] = len(self.consts)
            self.consts.append(value)
        return self._const_index[key]


def compile_program(source: str) -> Program:
    """Source text -> Program (not yet verified; `compile_source` gives its bytes)."""
    try:
        tree = ast.parse(source, mode="exec")
    except SyntaxError as e:
        raise CompileError(f"syntax error: {e.msg}", e.lineno) from None
    module = Module(tree)
    functions = tuple(FunctionCompiler(module, fn).compile() for fn in module.functions.values())
    return Program(tuple(module.consts), functions)


def compile_source(source: str) -> bytes:
    """Contract source -> bytecode. Deterministic: the same source always gives the same bytes.

    The output is loaded once as the VM would, so a program beyond a bytecode limit (constants,
    locals, operand-stack depth, size) is a CompileError here rather than a fault at run time.
    A constant folded beyond MAX_CONST_BYTES (a few lines of doubling would fold to gigabytes) and
    source nested deeper than Python's parser or this compiler can recurse are CompileErrors too.
    """
    try:
        code = encode_program(compile_program(source))
        load_program(code)
    except VMFault as e:
        raise CompileError(f"program exceeds a VM limit: {e.message}") from None
    except RecursionError:
        raise CompileError("the source nests too deeply to compile") from None
    return code
