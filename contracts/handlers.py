"""One function per opcode, and the dispatch table.

Each handler is `handler(machine, frame, arg)`. The machine has already charged the opcode's fixed
gas; handlers charge only the dynamic part (allocation, scanning, storage and event bytes) through
`machine.alloc`, `machine.scan` and `machine.charge`. Loaded bytecode is verified, so handlers
never see a stack underflow or an operand out of range; they do check the types of values.
"""
from contracts.errors import VMFault
from contracts.host import check_key
from contracts.opcodes import GAS_PER_EVENT_BYTE, GAS_PER_ITEM, GAS_PER_STORAGE_BYTE, Op
from contracts.values import (INT_MAX, INT_MIN, check_int, check_len, encode_value, is_key,
                              sorted_keys)

UNBOUND = object()
_TYPE_NAMES = {int: "int", str: "str", bytes: "bytes", bool: "bool", type(None): "None",
               list: "list", dict: "map"}
_ORDERED = (int, str, bytes)


class Iterator:
    """The state of a for loop over a list (live) or a map (its keys, sorted when the loop starts)."""
    __slots__ = ("items", "index")

    def __init__(self, items: list):
        self.items = items
        self.index = 0


def _type_error(what: str, *values) -> VMFault:
    names = ", ".join(_TYPE_NAMES.get(type(v), "iterator") for v in values)
    return VMFault("type_error", f"{what} does not apply to ({names})")


def _overflow() -> VMFault:
    return VMFault("int_overflow", "integer result outside signed 128-bit range")


def _sort_cost(n: int) -> int:
    return GAS_PER_ITEM * n * max(1, n.bit_length())


def _index(container, index) -> int:
    """A valid non-negative position for a Python-style (possibly negative) index."""
    if type(index) is not int:
        raise _type_error("indexing", container, index)
    n = len(container)
    if not -n <= index < n:
        raise VMFault("index_error", f"index {index} out of range for length {n}")
    return index + n if index < 0 else index


# -- stack, locals, control ---------------------------------------------------------------------

def op_const(m, f, arg):
    f.stack.append(m.consts[arg])


def op_load(m, f, arg):
    value = f.locals[arg]
    if value is UNBOUND:
        raise VMFault("unbound_local", f"'{f.fn.local_names[arg]}' is read before it is assigned")
    f.stack.append(value)


def op_store(m, f, arg):
    f.locals[arg] = f.stack.pop()


def op_pop(m, f, arg):
    f.stack.pop()


def op_jump(m, f, arg):
    f.pc = arg


def op_jump_if_false(m, f, arg):
    if not f.stack.pop():
        f.pc = arg


def op_jump_if_false_or_pop(m, f, arg):
    if f.stack[-1]:
        f.stack.pop()
    else:
        f.pc = arg


def op_jump_if_true_or_pop(m, f, arg):
    if f.stack[-1]:
        f.pc = arg
    else:
        f.stack.pop()


def op_call(m, f, arg):
    n = m.program.functions[arg].nparams
    args = f.stack[len(f.stack) - n:]
    del f.stack[len(f.stack) - n:]
    m.enter(arg, args)


def op_return(m, f, arg):
    m.leave(f.stack.pop())


# -- arithmetic -------------------------------------------------------------------------------

def _int_pair(f, what):
    b = f.stack.pop()
    a = f.stack[-1]
    if type(a) is not int or type(b) is not int:
        raise _type_error(what, a, b)
    return a, b


def op_add(m, f, arg):
    s = f.stack
    b = s.pop()
    a = s[-1]
    t = type(a)
    if t is int and type(b) is int:
        r = a + b
        if r > INT_MAX or r < INT_MIN:
            raise _overflow()
        s[-1] = r
    elif t is type(b) and (t is str or t is bytes):
        m.alloc(8 + len(a) + len(b))
        s[-1] = a + b
    elif t is list and type(b) is list:
        check_len(len(a) + len(b))
        m.alloc(8 + 8 * (len(a) + len(b)))
        s[-1] = a + b
    else:
        raise _type_error("+", a, b)


def op_sub(m, f, arg):
    a, b = _int_pair(f, "-")
    r = a - b
    if r > INT_MAX or r < INT_MIN:
        raise _overflow()
    f.stack[-1] = r


def op_mul(m, f, arg):
    a, b = _int_pair(f, "*")
    r = a * b
    if r > INT_MAX or r < INT_MIN:
        raise _overflow()
    f.stack[-1] = r


def op_floordiv(m, f, arg):
    a, b = _int_pair(f, "//")
    if b == 0:
        raise VMFault("division_by_zero", "integer division by zero")
    f.stack[-1] = check_int(a // b)


def op_mod(m, f, arg):
    a, b = _int_pair(f, "%")
    if b == 0:
        raise VMFault("division_by_zero", "integer modulo by zero")
    f.stack[-1] = a % b


def op_neg(m, f, arg):
    a = f.stack[-1]
    if type(a) is not int:
        raise _type_error("unary -", a)
    f.stack[-1] = check_int(-a)


def op_not(m, f, arg):
    f.stack[-1] = not f.stack[-1]


# -- comparisons ------------------------------------------------------------------------------

def _equal(m, a, b) -> bool:
    """Strict equality: values of different types are never equal; containers are not compared."""
    t = type(a)
    if t is not type(b):
        return False
    if t is list or t is dict:
        raise _type_error("==", a, b)
    if t is str or t is bytes:
        m.scan(min(len(a), len(b)))
    return a == b


def _ordered_pair(m, f, what):
    b = f.stack.pop()
    a = f.stack[-1]
    t = type(a)
    if t is not type(b) or t not in _ORDERED:
        raise _type_error(what, a, b)
    if t is not int:
        m.scan(min(len(a), len(b)))
    return a, b


def op_eq(m, f, arg):
    b = f.stack.pop()
    f.stack[-1] = _equal(m, f.stack[-1], b)


def op_ne(m, f, arg):
    b = f.stack.pop()
    f.stack[-1] = not _equal(m, f.stack[-1], b)


def op_lt(m, f, arg):
    a, b = _ordered_pair(m, f, "<")
    f.stack[-1] = a < b


def op_le(m, f, arg):
    a, b = _ordered_pair(m, f, "<=")
    f.stack[-1] = a <= b


def op_gt(m, f, arg):
    a, b = _ordered_pair(m, f, ">")
    f.stack[-1] = a > b


def op_ge(m, f, arg):
    a, b = _ordered_pair(m, f, ">=")
    f.stack[-1] = a >= b


def _contains(m, item, container) -> bool:
    t = type(container)
    if t is dict:
        return is_key(item) and item in container
    if t is list:
        ti = type(item)
        if ti is list or ti is dict:
            raise _type_error("in", item, container)
        per_item = 1 + (len(item) // 32 if ti is str or ti is bytes else 0)
        m.charge(GAS_PER_ITEM * per_item * len(container))
        return any(type(x) is ti and x == item for x in container)
    if (t is str or t is bytes) and type(item) is t:
        m.scan(len(container) + len(item))
        return item in container
    raise _type_error("in", item, container)


def op_in(m, f, arg):
    container = f.stack.pop()
    f.stack[-1] = _contains(m, f.stack[-1], container)


def op_not_in(m, f, arg):
    container = f.stack.pop()
    f.stack[-1] = not _contains(m, f.stack[-1], container)


# -- containers and iteration -----------------------------------------------------------------

def op_build_list(m, f, arg):
    check_len(arg)
    m.alloc(8 + 8 * arg)
    s = f.stack
    items = s[len(s) - arg:]
    del s[len(s) - arg:]
    s.append(items)


def op_build_map(m, f, arg):
    check_len(arg)
    m.alloc(8 + 16 * arg)
    s = f.stack
    flat = s[len(s) - 2 * arg:]
    del s[len(s) - 2 * arg:]
    d = {}
    for i in range(0, 2 * arg, 2):
        if not is_key(flat[i]):
            raise _type_error("a map key", flat[i])
        d[flat[i]] = flat[i + 1]
    s.append(d)


def op_get_item(m, f, arg):
    key = f.stack.pop()
    c = f.stack[-1]
    t = type(c)
    if t is dict:
        if not is_key(key):
            raise _type_error("a map key", key)
        if key not in c:
            raise VMFault("key_error", f"no key {key!r}")
        f.stack[-1] = c[key]
    elif t is list or t is bytes:
        f.stack[-1] = c[_index(c, key)]
    elif t is str:
        m.alloc(9)
        f.stack[-1] = c[_index(c, key)]
    else:
        raise _type_error("indexing", c, key)


def op_set_item(m, f, arg):
    s = f.stack
    key = s.pop()
    c = s.pop()
    value = s.pop()
    t = type(c)
    if t is dict:
        if not is_key(key):
            raise _type_error("a map key", key)
        if key not in c:
            check_len(len(c) + 1)
            m.alloc(16)
        c[key] = value
    elif t is list:
        c[_index(c, key)] = value
    else:
        raise _type_error("item assignment", c, key)


def op_del_item(m, f, arg):
    key = f.stack.pop()
    c = f.stack.pop()
    if type(c) is dict:
        if not is_key(key) or key not in c:
            raise VMFault("key_error", f"no key {key!r}")
        del c[key]
    elif type(c) is list:
        del c[_index(c, key)]
    else:
        raise _type_error("del", c, key)


def _sorted_keys(m, d: dict) -> list:
    m.charge(_sort_cost(len(d)))
    m.alloc(8 + 8 * len(d))
    return sorted_keys(d)


def op_get_iter(m, f, arg):
    v = f.stack[-1]
    if type(v) is list:
        f.stack[-1] = Iterator(v)
    elif type(v) is dict:
        f.stack[-1] = Iterator(_sorted_keys(m, v))
    else:
        raise _type_error("a for loop", v)


def op_for_iter(m, f, arg):
    it = f.stack.pop()
    if type(it) is not Iterator:
        raise _type_error("for_iter", it)
    if it.index < len(it.items):
        f.stack.append(it.items[it.index])
        it.index += 1
    else:
        f.pc = arg


# -- builtins ---------------------------------------------------------------------------------

def op_len(m, f, arg):
    v = f.stack[-1]
    if type(v) not in (str, bytes, list, dict):
        raise _type_error("len", v)
    f.stack[-1] = len(v)


def op_abs(m, f, arg):
    v = f.stack[-1]
    if type(v) is not int:
        raise _type_error("abs", v)
    f.stack[-1] = check_int(abs(v))


def op_min(m, f, arg):
    a, b = _ordered_pair(m, f, "min")
    f.stack[-1] = b if b < a else a


def op_max(m, f, arg):
    a, b = _ordered_pair(m, f, "max")
    f.stack[-1] = b if b > a else a


def op_str(m, f, arg):
    v = f.stack[-1]
    if type(v) is int:
        text = str(v)
        m.alloc(8 + len(text))
        f.stack[-1] = text
    elif type(v) is not str:
        raise _type_error("str", v)


def op_encode(m, f, arg):
    v = f.stack[-1]
    if type(v) is not str:
        raise _type_error("encode", v)
    data = v.encode("utf-8")
    m.alloc(8 + len(data))
    f.stack[-1] = data


def op_append(m, f, arg):
    value = f.stack.pop()
    target = f.stack[-1]
    if type(target) is not list:
        raise _type_error("append", target)
    check_len(len(target) + 1)
    m.alloc(8)
    target.append(value)
    f.stack[-1] = None


def op_sorted(m, f, arg):
    v = f.stack[-1]
    if type(v) is dict:
        f.stack[-1] = _sorted_keys(m, v)
        return
    if type(v) is not list:
        raise _type_error("sorted", v)
    kinds = {type(x) for x in v}
    if len(kinds) > 1 or not kinds <= set(_ORDERED):
        raise VMFault("type_error", "sorted needs a list of only ints, only str or only bytes")
    m.charge(_sort_cost(len(v)))
    if kinds and kinds != {int}:
        m.scan(sum(len(x) for x in v))
    m.alloc(8 + 8 * len(v))
    f.stack[-1] = sorted(v)


# -- host -------------------------------------------------------------------------------------

def _text(v, what):
    if type(v) is not str:
        raise _type_error(what, v)
    return v


def op_host_tx(m, f, arg):
    f.stack.append(m.import_value(m.journal.tx()))


def op_host_block(m, f, arg):
    f.stack.append(m.import_value(m.journal.block()))


def op_host_storage_get(m, f, arg):
    f.stack[-1] = m.import_value(m.journal.storage_get(check_key(f.stack[-1])))


def op_host_storage_set(m, f, arg):
    value = f.stack.pop()
    key = check_key(f.stack[-1])
    blob = encode_value(value)
    m.charge(GAS_PER_STORAGE_BYTE * (len(key) + len(blob)))
    m.journal.put_encoded(key, blob)
    f.stack[-1] = None


def op_host_storage_delete(m, f, arg):
    m.journal.storage_delete(check_key(f.stack[-1]))
    f.stack[-1] = None


def op_host_account(m, f, arg):
    f.stack[-1] = m.import_value(m.journal.account(_text(f.stack[-1], "host.account")))


def op_host_post(m, f, arg):
    permlink = _text(f.stack.pop(), "host.post")
    author = _text(f.stack[-1], "host.post")
    f.stack[-1] = m.import_value(m.journal.post(author, permlink))


def op_host_param(m, f, arg):
    value = m.journal.param(_text(f.stack[-1], "host.param"))
    if type(value) is not int or not INT_MIN <= value <= INT_MAX:
        raise VMFault("bad_host_value", "a parameter is an integer")
    f.stack[-1] = value


def op_host_award(m, f, arg):
    amount = f.stack.pop()
    dimension = f.stack.pop()
    m.journal.award(f.stack[-1], dimension, amount)
    f.stack[-1] = None


def op_host_emit(m, f, arg):
    data = f.stack.pop()
    if type(data) is not dict:
        raise VMFault("bad_event", "event data is a map")
    blob = encode_value(data)
    m.charge(GAS_PER_EVENT_BYTE * len(blob))
    m.journal.emit_encoded(f.stack[-1], blob)
    f.stack[-1] = None


DISPATCH = {op: globals()[f"op_{op.name.lower()}"] for op in Op}
