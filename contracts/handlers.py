"""The semantics of every opcode that computes on values, as one function per opcode.

`VALUE_OPS[op]` is `fn(machine, *operands)`: the operands are the values the instruction pops, in
stack order (deepest first), and the engines push the return value if the instruction pushes one
(`SPECS[op].pushes`; for `append` and the host writes that is None). Both engines — the
interpreter in `vm.py` and the translated code of `translate.py` — call these same functions, so
there is one definition of what an instruction does. What only moves values or control (CONST,
LOAD, STORE, POP, jumps, CALL, RETURN, FOR_ITER, BUILD_LIST, BUILD_MAP) is done by each engine
itself, with `build_list`, `build_map` and `for_next` below for the parts that check or charge.

The engine has already charged the fixed gas of the instruction's basic block; these functions
charge only the dynamic part (allocation, scanning, storage and event bytes) through
`machine.alloc`, `machine.scan` and `machine.charge`. Loaded bytecode is verified, so there is
never a stack underflow or an operand out of range; the types of values are checked here.
"""
from contracts.errors import VMFault
from contracts.host import check_key
from contracts.opcodes import GAS_PER_EVENT_BYTE, GAS_PER_ITEM, GAS_PER_STORAGE_BYTE, Op
from contracts.values import (INT_MAX, INT_MIN, check_int, check_len, decode_own_value,
                              encode_own_value, is_key, sorted_keys)

DONE = object()  # for_next: the loop is over
STORED_BYTE_SIZE = 8  # bytes of the size model per byte of a value read from storage
_TYPE_NAMES = {int: "int", str: "str", bytes: "bytes", bool: "bool", type(None): "None",
               list: "list", dict: "map"}
_ORDERED = (int, str, bytes)


class Iterator:
    """The state of a for loop over a list (live) or a map (its keys, sorted when the loop starts)."""
    __slots__ = ("items", "index")

    def __init__(self, items: list):
        self.items = items
        self.index = 0


def type_error(what: str, *values) -> VMFault:
    names = ", ".join(_TYPE_NAMES.get(type(v), "iterator") for v in values)
    return VMFault("type_error", f"{what} does not apply to ({names})")


def overflow() -> VMFault:
    return VMFault("int_overflow", "integer result outside signed 128-bit range")


def _sort_cost(n: int) -> int:
    return GAS_PER_ITEM * n * max(1, n.bit_length())


def _index(container, index) -> int:
    """A valid non-negative position for a Python-style (possibly negative) index."""
    if type(index) is not int:
        raise type_error("indexing", container, index)
    n = len(container)
    if not -n <= index < n:
        raise VMFault("index_error", f"index {index} out of range for length {n}")
    return index + n if index < 0 else index


# -- arithmetic -------------------------------------------------------------------------------

def _ints(what, a, b):
    if type(a) is not int or type(b) is not int:
        raise type_error(what, a, b)


def op_add(m, a, b):
    t = type(a)
    if t is int and type(b) is int:
        r = a + b
        if r > INT_MAX or r < INT_MIN:
            raise overflow()
        return r
    if t is type(b) and (t is str or t is bytes):
        m.alloc(8 + len(a) + len(b))
        return a + b
    if t is list and type(b) is list:
        check_len(len(a) + len(b))
        m.alloc(8 + 8 * (len(a) + len(b)))
        return a + b
    raise type_error("+", a, b)


def op_sub(m, a, b):
    _ints("-", a, b)
    r = a - b
    if r > INT_MAX or r < INT_MIN:
        raise overflow()
    return r


def op_mul(m, a, b):
    _ints("*", a, b)
    r = a * b
    if r > INT_MAX or r < INT_MIN:
        raise overflow()
    return r


def op_floordiv(m, a, b):
    _ints("//", a, b)
    if b == 0:
        raise VMFault("division_by_zero", "integer division by zero")
    return check_int(a // b)


def op_mod(m, a, b):
    _ints("%", a, b)
    if b == 0:
        raise VMFault("division_by_zero", "integer modulo by zero")
    return a % b


def op_neg(m, a):
    if type(a) is not int:
        raise type_error("unary -", a)
    return check_int(-a)


def op_not(m, a):
    return not a


# -- comparisons ------------------------------------------------------------------------------

def op_eq(m, a, b) -> bool:
    """Strict equality: values of different types are never equal; containers are not compared."""
    t = type(a)
    if t is not type(b):
        return False
    if t is list or t is dict:
        raise type_error("==", a, b)
    if t is str or t is bytes:
        m.scan(min(len(a), len(b)))
    return a == b


def op_ne(m, a, b) -> bool:
    return not op_eq(m, a, b)


def _ordered(m, what, a, b):
    t = type(a)
    if t is not type(b) or t not in _ORDERED:
        raise type_error(what, a, b)
    if t is not int:
        m.scan(min(len(a), len(b)))


def op_lt(m, a, b):
    _ordered(m, "<", a, b)
    return a < b


def op_le(m, a, b):
    _ordered(m, "<=", a, b)
    return a <= b


def op_gt(m, a, b):
    _ordered(m, ">", a, b)
    return a > b


def op_ge(m, a, b):
    _ordered(m, ">=", a, b)
    return a >= b


def op_in(m, item, container) -> bool:
    t = type(container)
    if t is dict:
        return is_key(item) and item in container
    if t is list:
        ti = type(item)
        if ti is list or ti is dict:
            raise type_error("in", item, container)
        text = ti is str or ti is bytes
        m.charge(GAS_PER_ITEM * (1 + (len(item) // 32 if text else 0)) * len(container))
        if text:  # text equals only text of its own type: Python's `in` is exact here
            return item in container
        return any(type(x) is ti and x == item for x in container)
    if (t is str or t is bytes) and type(item) is t:
        m.scan(len(container) + len(item))
        return item in container
    raise type_error("in", item, container)


def op_not_in(m, item, container) -> bool:
    return not op_in(m, item, container)


# -- containers and iteration -----------------------------------------------------------------

def build_list(m, items: list) -> list:
    """BUILD_LIST n: items are the n popped values (a new list the engine no longer holds)."""
    check_len(len(items))
    m.alloc(8 + 8 * len(items))
    return items


def build_map(m, flat: list) -> dict:
    """BUILD_MAP n: flat is the 2n popped values, key, value, key, value..."""
    n = len(flat) // 2
    check_len(n)
    m.alloc(8 + 16 * n)
    d = {}
    for i in range(0, 2 * n, 2):
        if not is_key(flat[i]):
            raise type_error("a map key", flat[i])
        d[flat[i]] = flat[i + 1]
    return d


def op_get_item(m, c, key):
    t = type(c)
    if t is dict:
        if not is_key(key):
            raise type_error("a map key", key)
        if key not in c:
            raise VMFault("key_error", f"no key {key!r}")
        return c[key]
    if t is list or t is bytes:
        return c[_index(c, key)]
    if t is str:
        m.alloc(9)
        return c[_index(c, key)]
    raise type_error("indexing", c, key)


def op_set_item(m, value, c, key) -> None:
    t = type(c)
    if t is dict:
        if not is_key(key):
            raise type_error("a map key", key)
        if key not in c:
            check_len(len(c) + 1)
            m.alloc(16)
        c[key] = value
    elif t is list:
        c[_index(c, key)] = value
    else:
        raise type_error("item assignment", c, key)


def op_del_item(m, c, key) -> None:
    if type(c) is dict:
        if not is_key(key) or key not in c:
            raise VMFault("key_error", f"no key {key!r}")
        del c[key]
    elif type(c) is list:
        del c[_index(c, key)]
    else:
        raise type_error("del", c, key)


def _sorted_keys(m, d: dict) -> list:
    m.charge(_sort_cost(len(d)))
    m.alloc(8 + 8 * len(d))
    return sorted_keys(d)


def op_get_iter(m, v) -> Iterator:
    if type(v) is list:
        return Iterator(v)
    if type(v) is dict:
        return Iterator(_sorted_keys(m, v))
    raise type_error("a for loop", v)


def for_next(it):
    """FOR_ITER: the loop's next item, or DONE when it is over."""
    if type(it) is not Iterator:
        raise type_error("for_iter", it)
    if it.index < len(it.items):
        it.index += 1
        return it.items[it.index - 1]
    return DONE


# -- builtins ---------------------------------------------------------------------------------

def op_len(m, v):
    if type(v) not in (str, bytes, list, dict):
        raise type_error("len", v)
    return len(v)


def op_abs(m, v):
    if type(v) is not int:
        raise type_error("abs", v)
    return check_int(abs(v))


def op_min(m, a, b):
    _ordered(m, "min", a, b)
    return b if b < a else a


def op_max(m, a, b):
    _ordered(m, "max", a, b)
    return b if b > a else a


def op_str(m, v):
    if type(v) is int:
        text = str(v)
        m.alloc(8 + len(text))
        return text
    if type(v) is not str:
        raise type_error("str", v)
    return v


def op_encode(m, v):
    if type(v) is not str:
        raise type_error("encode", v)
    data = v.encode("utf-8")
    m.alloc(8 + len(data))
    return data


def op_append(m, target, value) -> None:
    if type(target) is not list:
        raise type_error("append", target)
    check_len(len(target) + 1)
    m.alloc(8)
    target.append(value)


def op_sorted(m, v):
    if type(v) is dict:
        return _sorted_keys(m, v)
    if type(v) is not list:
        raise type_error("sorted", v)
    kinds = {type(x) for x in v}
    if len(kinds) > 1 or not kinds <= set(_ORDERED):
        raise VMFault("type_error", "sorted needs a list of only ints, only str or only bytes")
    m.charge(_sort_cost(len(v)))
    if kinds and kinds != {int}:
        m.scan(sum(len(x) for x in v))
    m.alloc(8 + 8 * len(v))
    return sorted(v)


# -- host -------------------------------------------------------------------------------------

def _text(v, what):
    if type(v) is not str:
        raise type_error(what, v)
    return v


def op_host_tx(m):
    return m.import_value(m.journal.tx())


def op_host_block(m):
    return m.import_value(m.journal.block())


def op_host_storage_get(m, key):
    """The stored bytes decoded: only the VM encodes them, so they are a valid value and need
    neither the check nor the copy of import_value; they are counted by their length."""
    blob = m.journal.storage_get_encoded(key)  # the journal checks the key
    if blob is None:
        return None
    m.alloc(STORED_BYTE_SIZE * len(blob))
    return decode_own_value(blob)


def op_host_storage_set(m, key, value) -> None:
    check_key(key)
    blob = encode_own_value(value)
    m.charge(GAS_PER_STORAGE_BYTE * (len(key) + len(blob)))
    m.journal.put_encoded(key, blob)


def op_host_storage_delete(m, key) -> None:
    m.journal.storage_delete(check_key(key))


def op_host_account(m, name):
    return m.import_value(m.journal.account(_text(name, "host.account")))


def op_host_post(m, author, permlink):
    _text(permlink, "host.post")
    return m.import_value(m.journal.post(_text(author, "host.post"), permlink))


def _host_int(m, value, what: str) -> int:
    """An integer a host returned (a trusted host's need no check)."""
    if m.trusted or type(value) is int and INT_MIN <= value <= INT_MAX:
        return value
    raise VMFault("bad_host_value", f"{what} is an integer")


def op_host_param(m, name):
    return _host_int(m, m.journal.param(_text(name, "host.param")), "a parameter")


def op_host_now(m):
    return _host_int(m, m.journal.now(), "the time")


def op_host_stake(m, name):
    return _host_int(m, m.journal.stake(_text(name, "host.stake")), "a stake")


def op_host_pool(m, dimension):
    return _host_int(m, m.journal.pool(dimension), "a pool")  # the journal checks the dimension


def op_host_award(m, account, dimension, amount) -> None:
    m.journal.award(account, dimension, amount)


def op_host_emit(m, name, data) -> None:
    if type(data) is not dict:
        raise VMFault("bad_event", "event data is a map")
    blob = encode_own_value(data)
    m.charge(GAS_PER_EVENT_BYTE * len(blob))
    m.journal.emit_encoded(name, blob)


# Every opcode whose semantics is a function of the popped values (see the module docstring).
VALUE_OPS = {op: globals()[f"op_{op.name.lower()}"] for op in Op
             if f"op_{op.name.lower()}" in globals()}
