"""The VM's values and their canonical bytes.

Values are int (signed 128-bit), bytes, str, bool, None, lists and maps with int/bytes/str keys.
`bool` is never an int here (1 == True is false in the VM), so type checks use `type(v) is int`.
Maps are plain dicts, but nothing ever iterates them in insertion order: every walk goes through
`sorted_keys`, which orders ints < bytes < str and each by value.

Memory is accounted with a fixed size model: 8 bytes of header per object plus the
payload of strings, 8 bytes per list slot and 16 per map entry. It is approximate but identical on
every node, which is what metering needs.
"""
import msgpack

from contracts.errors import VMFault

INT_MIN = -(1 << 127)
INT_MAX = (1 << 127) - 1
MAX_DEPTH = 32
MAX_CONTAINER_LEN = 4096
BIG_INT_EXT = 1

_MSGPACK_MIN = -(1 << 63)
_MSGPACK_MAX = (1 << 64) - 1
_KEY_RANK = {int: 0, bytes: 1, str: 2}
_ONE_KEY_TYPE = (frozenset({str}), frozenset({int}), frozenset({bytes}))  # most common first
_PACKER = msgpack.Packer(use_bin_type=True)  # reused: building one per call costs more than packing
_SCALARS = frozenset({int, str, bytes, bool, type(None)})
_KEY_TYPES = frozenset(_KEY_RANK)
_VALUE_TYPES = _SCALARS | {list, dict}
_CONTAINERS = frozenset({list, dict})


def is_key(v) -> bool:
    """True if v may be a map key (int, bytes or str; never bool)."""
    return type(v) in _KEY_RANK


def is_scalar(v) -> bool:
    return type(v) in _SCALARS


def key_order(k):
    """Sort key giving the one canonical order of map keys: ints, then bytes, then str."""
    return (_KEY_RANK[type(k)], k)


def sorted_keys(d: dict) -> list:
    return sorted(d, key=key_order)


def check_int(v: int) -> int:
    """v itself, or an `int_overflow` fault outside signed 128 bits."""
    if INT_MIN <= v <= INT_MAX:
        return v
    raise VMFault("int_overflow", "integer result outside signed 128-bit range")


def check_text(s: str) -> str:
    """s itself, or a `bad_value` fault if it cannot be UTF-8 (lone surrogates)."""
    if s.isascii():
        return s
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise VMFault("bad_value", "text is not valid UTF-8") from None
    return s


def check_len(n: int) -> None:
    if n > MAX_CONTAINER_LEN:
        raise VMFault("container_too_long", f"{n} elements, the limit is {MAX_CONTAINER_LEN}")


def _bad(v) -> VMFault:
    return VMFault("bad_value", f"{type(v).__name__} is not a VM value")


def import_value(v, depth: int = 0) -> tuple[object, int]:
    """A private copy of a value coming from outside (host, arguments) and its total alloc size.

    Tuples become lists. Anything that is not a VM value is a fault: `bad_value`, `int_overflow`,
    `value_too_deep` or `container_too_long`. The copy keeps the maps' insertion order (nothing
    in the VM walks a map in that order), which spares a sort per map; only when the value is
    invalid is it walked again in canonical key order, so that which fault is raised does not
    depend on insertion order either.
    """
    try:
        return _import(v, depth)
    except VMFault:
        _raise_first_fault(v, depth)
        raise


def _import(v, depth: int) -> tuple[object, int]:
    if depth > MAX_DEPTH:
        raise VMFault("value_too_deep", f"values nest at most {MAX_DEPTH} deep")
    t = type(v)
    if t is dict:  # first: the bulk of what hosts return are maps of scalars
        n = len(v)
        if n > MAX_CONTAINER_LEN:
            check_len(n)
        # a shallow copy; items that need no call are checked inline, as long as they may nest
        # one level deeper; the others are replaced by their copies
        out, size, inline = v.copy(), 8 + 16 * n, depth < MAX_DEPTH
        for k, item in v.items():
            tk = type(k)
            if tk is str or tk is bytes:
                size += 8 + len(k)
            elif tk is not int:
                raise VMFault("bad_value", f"map key of type {tk.__name__}")
            ti = type(item)
            if ti is str:
                if inline and item.isascii():
                    size += 8 + len(item)
                    continue
            elif ti is int:
                if inline and INT_MIN <= item <= INT_MAX:
                    continue
            elif ti is bytes:
                if inline:
                    size += 8 + len(item)
                    continue
            elif (ti is bool or item is None) and inline:
                continue
            out[k], m = _import(item, depth + 1)
            size += m
        return out, size
    if t is int:
        return check_int(v), 0
    if t is bool or v is None:
        return v, 0
    if t is str:
        return check_text(v), 8 + len(v)
    if t is bytes:
        return v, 8 + len(v)
    if t is not list and t is not tuple:
        raise _bad(v)
    check_len(len(v))
    out, size, inline = list(v), 8 + 8 * len(v), depth < MAX_DEPTH
    for place, item in enumerate(v):
        ti = type(item)
        if inline and (ti is str and item.isascii() or ti is bytes):
            size += 8 + len(item)
        elif not (inline and (ti is int and INT_MIN <= item <= INT_MAX or ti is bool
                              or item is None)):
            out[place], m = _import(item, depth + 1)
            size += m
    return out, size


def value_size(v) -> int:
    """The size model of a value known to be valid (what import_value reports, without its checks
    or its copy): how the VM pays for the values of a host that says `trusted_values`."""
    t = type(v)
    if t is dict:
        size = 8 + 16 * len(v) + sum(8 + len(k) for k in v if type(k) is not int)
        items = v.values()
    elif t is list:
        size, items = 8 + 8 * len(v), v
    elif t is str or t is bytes:
        return 8 + len(v)
    else:
        return 0
    for item in items:
        ti = type(item)
        if ti is str or ti is bytes:
            size += 8 + len(item)
        elif ti is dict or ti is list:
            size += value_size(item)
    return size


def copy_value(v):
    """A copy of a valid value that shares no list or map with it (scalars are immutable): what a
    host that says `trusted_values` hands out of a value it keeps."""
    t = type(v)
    if t is dict:
        return {k: copy_value(x) if type(x) is dict or type(x) is list else x for k, x in v.items()}
    if t is list:
        return [copy_value(x) if type(x) is dict or type(x) is list else x for x in v]
    return v


def _raise_first_fault(v, depth: int) -> None:
    """Raise the fault of an invalid value that a walk in canonical order meets first."""
    if depth > MAX_DEPTH:
        raise VMFault("value_too_deep", f"values nest at most {MAX_DEPTH} deep")
    t = type(v)
    if t is int:
        check_int(v)
    elif t is str:
        check_text(v)
    elif t is list or t is tuple:
        check_len(len(v))
        for item in v:
            _raise_first_fault(item, depth + 1)
    elif t is dict:
        check_len(len(v))
        for k in sorted_keys(_checked_keys(v)):
            _raise_first_fault(v[k], depth + 1)
    elif not (t is bool or t is bytes or v is None):
        raise _bad(v)


def _checked_keys(d: dict) -> dict:
    for k in d:
        if not is_key(k):
            raise VMFault("bad_value", f"map key of type {type(k).__name__}")
    return d


def _keys_in_order(d: dict) -> list:
    """d's keys in the canonical order; a `bad_value` fault for a key that is not a map key."""
    for kind in _ONE_KEY_TYPE:
        if kind.issuperset(map(type, d)):
            return sorted(d)  # keys of one type: their natural order is the canonical one
    return sorted_keys(_checked_keys(d))


def _packable(v, depth: int):
    """v rebuilt for msgpack: maps in canonical key order, big ints as extension 1. (Items that
    msgpack encodes as they are — ASCII text, bytes, bool, None, 64-bit ints — are handled
    inline, as in import_value.)"""
    if depth > MAX_DEPTH:
        raise VMFault("value_too_deep", f"values nest at most {MAX_DEPTH} deep")
    t = type(v)
    if t is int:
        check_int(v)
        if _MSGPACK_MIN <= v <= _MSGPACK_MAX:
            return v
        return msgpack.ExtType(BIG_INT_EXT, v.to_bytes(16, "big", signed=True))
    if t is str:
        return check_text(v)
    if t is bool or t is bytes or v is None:
        return v
    inline = depth < MAX_DEPTH
    if t is list or t is tuple:
        check_len(len(v))
        out = []
        for item in v:
            ti = type(item)
            if not (inline and (ti is str and item.isascii() or ti is bytes or ti is bool or item is None
                                or ti is int and _MSGPACK_MIN <= item <= _MSGPACK_MAX)):
                item = _packable(item, depth + 1)
            out.append(item)
        return out
    if t is dict:
        check_len(len(v))
        out = {}
        for k in _keys_in_order(v):
            key = k
            if not (inline and (type(k) is str and k.isascii() or type(k) is bytes
                                or type(k) is int and _MSGPACK_MIN <= k <= _MSGPACK_MAX)):
                key = _packable(k, depth + 1)
            item = v[k]
            ti = type(item)
            if not (inline and (ti is str and item.isascii() or ti is bytes or ti is bool or item is None
                                or ti is int and _MSGPACK_MIN <= item <= _MSGPACK_MAX)):
                item = _packable(item, depth + 1)
            out[key] = item
        return out
    raise _bad(v)




def _ordered(v, depth: int):
    """v, or a copy with map keys in canonical order, if msgpack's own encoding of that is
    canonical given that it raises for what it cannot pack as it is (integers outside 64 bits,
    text that is not UTF-8): v holds only VM types, nests at most MAX_DEPTH deep, no list or map
    is too long, and each map's keys are of one type. Else None (`_packable` then decides).
    Checked with set and sort operations that run in C, recursing only into containers, so a
    typical stored value needs no Python step per item."""
    t = type(v)
    if t is dict:
        key_types = set(map(type, v))
        if len(key_types) > 1 or not key_types <= _KEY_TYPES:
            return None
        if not _is_sorted(v):  # one key type: its natural order is the canonical one
            v = dict(sorted(v.items()))  # keys are distinct: values are never compared
        items = v.values()
    elif t is list:
        items = v
    else:
        return v if t in _SCALARS else None
    types = set(map(type, items))
    if depth >= MAX_DEPTH or len(v) > MAX_CONTAINER_LEN or not types <= _VALUE_TYPES:
        return None
    if types.isdisjoint(_CONTAINERS):
        return v
    return _order_children(v, _ordered, depth)


def _order_children(v, order, depth: int):
    """v with each list or map in it put through `order` one level down: v itself if none
    changed, a copy if some did, None if one cannot be encoded as it is."""
    changed = {}
    for k, x in (v.items() if type(v) is dict else enumerate(v)):
        if type(x) is list or type(x) is dict:
            y = order(x, depth + 1)
            if y is None:
                return None
            if y is not x:
                changed[k] = y
    if changed:
        v = dict(v) if type(v) is dict else list(v)
        for k, y in changed.items():
            v[k] = y
    return v


def _is_sorted(d: dict) -> bool:
    keys = list(d)
    return keys == sorted(keys)


def _own_ordered(v, depth: int):
    """`_ordered` for a list or map the VM made (see `encode_own_value`): only the key order of
    its maps and its depth are checked. Keys of more than one type make `sorted` raise: None."""
    if depth >= MAX_DEPTH:
        return None
    if type(v) is dict:
        keys = list(v)
        try:
            if keys != sorted(keys):
                v = dict(sorted(v.items()))
        except TypeError:
            return None
        items = v.values()
    else:
        items = v
    if _CONTAINERS.isdisjoint(map(type, items)):
        return v
    return _order_children(v, _own_ordered, depth)


def encode_own_value(v) -> bytes:
    """`encode_value` of a value made in a VM call (what it stores and emits). Every value there
    is a VM value — operations, host reads and storage reads all check or were checked — and no
    list or map is too long, so of what `encode_value` checks per item only map key order and
    depth are left. What msgpack cannot pack as it is (a big integer; an iterator, which hostile
    bytecode can push) goes to `encode_value`, which decides: same bytes, same faults."""
    fast = _own_ordered(v, 0) if type(v) is dict or type(v) is list else v
    if fast is not None:
        try:
            return _PACKER.pack(fast)
        except (OverflowError, UnicodeEncodeError, TypeError):
            pass
    return encode_value(v)


def encode_value(v) -> bytes:
    """Canonical msgpack bytes of a VM value (how storage values and events are stored)."""
    fast = _ordered(v, 0)
    if fast is not None:
        try:
            return _PACKER.pack(fast)
        except (OverflowError, UnicodeEncodeError):
            pass  # a big integer (an extension), or a fault the walk below reports
    return _PACKER.pack(_packable(v, 0))


def _ext_hook(code: int, data: bytes):
    if code != BIG_INT_EXT or len(data) != 16:
        raise ValueError(f"unknown msgpack extension {code}")
    return int.from_bytes(data, "big", signed=True)


def decode_own_value(blob: bytes):
    """A value that this host itself stored with `encode_value`: decoded without re-checking
    that the bytes are canonical (they are, by construction), which halves the cost of a read.
    The VM still validates everything it reads from a host."""
    return msgpack.unpackb(blob, raw=False, strict_map_key=False, use_list=True,
                           ext_hook=_ext_hook, timestamp=0)


def decode_value(blob: bytes):
    """The value encoded by `encode_value`; `bad_value` for anything else, non-canonical bytes included."""
    try:
        v = msgpack.unpackb(blob, raw=False, strict_map_key=False, use_list=True,
                            ext_hook=_ext_hook, timestamp=0)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as e:
        raise VMFault("bad_value", f"undecodable value: {type(e).__name__}") from None
    if encode_value(v) != blob:
        raise VMFault("bad_value", "value bytes are not canonical")
    return v
