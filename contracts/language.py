"""The contract language: which Python constructs it has, and the checks shared by the compiler.

A contract is Python source restricted to: module-level constants and `def` functions;
if/elif/else, while, for over range() or over a list / a map's sorted keys, break, continue,
return, assignment and augmented assignment to names and subscripts, del of subscripts;
int arithmetic + - * // % (floor semantics), comparisons, `is None`, and/or/not, conditional
expressions, list and dict literals, subscripts, and calls to contract functions, builtins and
host.<function>. Everything else is a CompileError naming the construct and its line.
"""
import ast
import operator

from contracts.bytecode import MAX_CONST_BYTES, const_bytes
from contracts.errors import CompileError
from contracts.opcodes import BUILTINS, Op
from contracts.values import INT_MAX, INT_MIN

BINOPS = {ast.Add: Op.ADD, ast.Sub: Op.SUB, ast.Mult: Op.MUL, ast.FloorDiv: Op.FLOORDIV,
          ast.Mod: Op.MOD}
_FOLDS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
          ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
COMPARES = {ast.Eq: Op.EQ, ast.NotEq: Op.NE, ast.Lt: Op.LT, ast.LtE: Op.LE, ast.Gt: Op.GT,
            ast.GtE: Op.GE, ast.In: Op.IN, ast.NotIn: Op.NOT_IN}
REJECTED = {
    "Attribute": "attribute access is not allowed (only host.<function>(...) calls)",
    "Lambda": "lambda is not allowed",
    "ListComp": "comprehensions are not allowed; use a for loop",
    "DictComp": "comprehensions are not allowed; use a for loop",
    "SetComp": "comprehensions are not allowed; use a for loop",
    "GeneratorExp": "generators are not allowed; use a for loop",
    "Tuple": "tuples are not allowed; use a list",
    "Set": "sets are not allowed",
    "JoinedStr": "f-strings are not allowed; use + and str()",
    "NamedExpr": "':=' is not allowed",
    "Starred": "'*' unpacking is not allowed",
    "Slice": "slices are not allowed",
    "Await": "async code is not allowed",
    "Yield": "generators are not allowed",
    "YieldFrom": "generators are not allowed",
    "Import": "imports are not allowed",
    "ImportFrom": "imports are not allowed",
    "ClassDef": "classes are not allowed",
    "Try": "try is not allowed",
    "TryStar": "try is not allowed",
    "Raise": "raise is not allowed",
    "With": "with is not allowed",
    "Global": "global is not allowed",
    "Nonlocal": "nonlocal is not allowed",
    "Assert": "assert is not allowed",
    "AnnAssign": "annotated assignment is not allowed; write 'name = value'",
    "Match": "match is not allowed",
    "FunctionDef": "functions may only be defined at module level",
    "AsyncFunctionDef": "async functions are not allowed",
    "AsyncFor": "async code is not allowed",
    "AsyncWith": "async code is not allowed",
}
RESERVED = frozenset(BUILTINS) | {"host", "range"}


def fail(node: ast.AST, message: str) -> CompileError:
    return CompileError(message, getattr(node, "lineno", None))


def rejected(node: ast.AST) -> CompileError:
    name = type(node).__name__
    return fail(node, REJECTED.get(name, f"{name} is not part of the contract language"))


def check_literal(node: ast.Constant):
    """The literal's value if the VM has it: no floats, ints within 128 bits, UTF-8 text."""
    v = node.value
    if type(v) is str and not v.isascii():
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise fail(node, "text is not valid UTF-8") from None
    if type(v) is int and not INT_MIN <= v <= INT_MAX:
        raise fail(node, "integer literal outside signed 128-bit range")
    if type(v) not in (int, bool, str, bytes, type(None)):
        kind = "floats are" if type(v) in (float, complex) else f"{type(v).__name__} is"
        raise fail(node, f"{kind} not allowed")
    return v


def fold(node: ast.AST, constants: dict):
    """The value of a constant expression: literals, earlier constants, + - * // % on them."""
    if isinstance(node, ast.Constant):
        return check_literal(node)
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        v = fold(node.operand, constants)
        if type(v) is int and INT_MIN <= -v <= INT_MAX:
            return -v
    if isinstance(node, ast.BinOp) and type(node.op) in _FOLDS:
        a, b = fold(node.left, constants), fold(node.right, constants)
        if type(a) is int and type(b) is int:
            if b == 0 and isinstance(node.op, ast.FloorDiv | ast.Mod):
                raise fail(node, "division by zero in a constant")
            v = _FOLDS[type(node.op)](a, b)
            if INT_MIN <= v <= INT_MAX:
                return v
        if isinstance(node.op, ast.Add) and type(a) is type(b) and type(a) in (str, bytes):
            # checked before the join: a few lines of doubling would otherwise fold to gigabytes
            if const_bytes(a) + const_bytes(b) > MAX_CONST_BYTES:
                raise fail(node, f"a constant has at most {MAX_CONST_BYTES} bytes")
            return a + b
    raise fail(node, "a constant must be a literal expression (numbers, strings, + - * // %)")
