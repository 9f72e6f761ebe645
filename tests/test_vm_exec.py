"""Semantics of the contract language: arithmetic, values, control flow, calls, host functions."""
import pytest

from contracts import DictHost, VMFault, compile_source, run

INT_MAX = (1 << 127) - 1
INT_MIN = -(1 << 127)


def call(source, function="main", args=(), host=None, gas=1_000_000):
    return run(compile_source(source), function, list(args), host or DictHost(), gas).return_value


def expr(text, *args):
    """Value of one expression over parameters a, b."""
    return call(f"def main(a, b):\n    return {text}\n", args=args or (0, 0))


@pytest.mark.parametrize("text, args, expected", [
    ("a // b", (-7, 2), -4), ("a % b", (-7, 2), 1), ("a // b", (7, -2), -4),
    ("a % b", (7, -2), -1), ("a // b", (-7, -2), 3), ("a % b", (-7, -2), -1),
    ("a * b - 3", (6, 7), 39), ("-a", (5, 0), -5), ("abs(a)", (-5, 0), 5),
    ("min(a, b)", (3, -2), -2), ("max(a, b)", ("ab", "b"), "b"),
    ("a + b", ("ab", "cd"), "abcd"), ("a + b", (b"a", b"b"), b"ab"), ("a + b", ([1], [2]), [1, 2]),
    ("a == b", (1, True), False), ("a == b", (0, None), False), ("a == b", (None, None), True),
    ("a != b", ("x", "x"), False), ("a < b", (b"a", b"b"), True), ("a >= b", ("b", "a"), True),
    ("a or b", (0, 5), 5), ("a and b", (3, 0), 0), ("a or b", ("", []), []),
    ("not a", ([], 0), True), ("a if b else 9", (1, 0), 9),
    ("a in b", (2, [1, 2]), True), ("a in b", (True, [1]), False), ("a not in b", ("k", {"k": 1}), False),
    ("a in b", ("bc", "abcd"), True), ("a in b", (None, {"k": 1}), False),
    ("a[b]", ([1, 2, 3], -1), 3), ("a[b]", ({"x": 7}, "x"), 7), ("a[b]", ("hey", 1), "e"),
    ("a[b]", (b"\x05\x06", 0), 5), ("len(a)", ({1: 2, 3: 4}, 0), 2), ("len(a)", ("héllo", 0), 5),
    ("str(a)", (-42, 0), "-42"), ("encode(a)", ("é", 0), b"\xc3\xa9"),
    ("sorted(a)", ({"b": 1, 2: 0, b"z": 1, "a": 1, -1: 0}, 0), [-1, 2, b"z", "a", "b"]),
    ("sorted(a)", ([3, -1, 2], 0), [-1, 2, 3]),
    ("a * b", (INT_MAX, 1), INT_MAX), ("a - b", (INT_MIN + 1, 1), INT_MIN),
])
def test_expressions_follow_python_where_defined(text, args, expected):
    result = expr(text, *args)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize("text, args, code", [
    ("a + b", (INT_MAX, 1), "int_overflow"), ("a * b", (1 << 64, 1 << 64), "int_overflow"),
    ("a - b", (INT_MIN, 1), "int_overflow"), ("-a", (INT_MIN, 0), "int_overflow"),
    ("abs(a)", (INT_MIN, 0), "int_overflow"), ("a // b", (INT_MIN, -1), "int_overflow"),
    ("a // b", (1, 0), "division_by_zero"), ("a % b", (1, 0), "division_by_zero"),
    ("a + b", (1, "x"), "type_error"), ("a + b", (True, 1), "type_error"),
    ("a < b", (1, "x"), "type_error"), ("a < b", (None, None), "type_error"),
    ("a == b", ([1], [1]), "type_error"), ("a == b", ({}, {}), "type_error"),
    ("a in b", ([1], [[1]]), "type_error"), ("a in b", (1, 5), "type_error"),
    ("a[b]", ([1], 1), "index_error"), ("a[b]", ({"x": 1}, "y"), "key_error"),
    ("a[b]", ({"x": 1}, [1]), "type_error"), ("a[b]", ([1], True), "type_error"),
    ("a[b]", (5, 0), "type_error"), ("len(a)", (5, 0), "type_error"), ("str(a)", (b"x", 0), "type_error"),
    ("sorted(a)", ([1, "x"], 0), "type_error"), ("min(a, b)", (1, "x"), "type_error"),
    ("{a: 1}", ([1], 0), "type_error"), ("{a: 1}", (True, 0), "type_error"),
])
def test_faults_have_typed_codes(text, args, code):
    with pytest.raises(VMFault) as info:
        expr(text, *args)
    assert info.value.code == code


def test_fault_reports_function_and_line():
    source = "def main(a):\n    b = 1\n    return _helper(a)\n\ndef _helper(x):\n    return x // 0\n"
    with pytest.raises(VMFault) as info:
        call(source, args=[1])
    assert (info.value.function, info.value.line) == ("_helper", 6)
    assert "division_by_zero" in str(info.value) and "line 6" in str(info.value)


def test_maps_iterate_in_sorted_key_order_never_insertion_order():
    source = '''
def main():
    d = {"b": 1, "a": 2}
    d[3] = 0
    d[b"k"] = 0
    d[-5] = 0
    keys = []
    for k in d:
        append(keys, k)
    return keys
'''
    assert call(source) == [-5, 3, b"k", "a", "b"]


def test_control_flow_loops_and_calls():
    source = '''
def _fib(n):
    if n < 2:
        return n
    return _fib(n - 1) + _fib(n - 2)

def main():
    out = []
    for i in range(10, 0, -3):
        append(out, i)
    append(out, i)
    n = 0
    while True:
        n += 1
        if n % 2 == 0:
            continue
        if n > 7:
            break
    append(out, n)
    xs = [1, 2]
    for x in xs:
        if x < 4:
            append(xs, x + 2)
    append(out, xs)
    m = {"k": [0]}
    m["k"][0] += 5
    m["n"] = 1
    del m["n"]
    append(out, m)
    append(out, _fib(15))
    for j in range(0):
        pass
    return out
'''
    assert call(source) == [10, 7, 4, 1, 1, 9, [1, 2, 3, 4, 5], {"k": [5]}, 610]


def test_locals_must_be_assigned_before_use():
    with pytest.raises(VMFault) as info:
        call("def main(a):\n    if a:\n        x = 1\n    return x\n", args=[0])
    assert info.value.code == "unbound_local"


def test_range_bounds_must_be_ints():
    with pytest.raises(VMFault) as info:
        call("def main(a):\n    for i in range(a):\n        pass\n", args=["3"])
    assert info.value.code == "type_error"


def test_entry_points_are_public_functions_with_matching_arguments():
    code = compile_source("def main(a):\n    return a\n\ndef _private():\n    return 1\n")
    for function, args, fault in [("_private", [], "no_such_function"),
                                  ("missing", [], "no_such_function"),
                                  ("main", [], "bad_arguments"),
                                  ("main", [1.5], "bad_value"),
                                  ("main", [{True: 1}], "bad_value")]:
        with pytest.raises(VMFault) as info:
            run(code, function, args, DictHost(), 1000)
        assert info.value.code == fault
    assert run(code, "main", [(1, 2)], DictHost(), 1000).return_value == [1, 2]


def test_arguments_and_host_values_are_copied():
    host = DictHost(params={"p": 3})
    host.set_tx("post", "alice", {"tags": ["a"]})
    source = '''
def main(arg):
    append(arg, 2)
    tx = host.tx()
    append(tx["body"]["tags"], "b")
    return [arg, tx["body"]["tags"], host.param("p")]
'''
    arg = [1]
    assert call(source, args=[arg], host=host) == [[1, 2], ["a", "b"], 3]
    assert arg == [1] and host.current_tx["body"]["tags"] == ["a"]


def test_host_reads():
    host = DictHost(params={"n": 7})
    host.add_account("alice", stake=5)
    host.add_post("alice", "hi", is_event=True, created_at=99)
    host.set_block(3, 1234, slot=9)
    host.set_tx("vote", "alice", {"post": "alice/hi", "weight": 100}, tx_id=b"\x01" * 32)
    source = '''
def main():
    tx = host.tx()
    return [tx["kind"], tx["sender"], tx["id"], host.block(), host.account("alice")["stake"],
            host.account("nobody"), host.post("alice", "hi")["created_at"], host.post("a", "b"),
            host.param("n")]
'''
    assert call(source, host=host) == ["vote", "alice", b"\x01" * 32,
                                       {"height": 3, "slot": 9, "timestamp": 1234}, 5, None, 99,
                                       None, 7]


def test_storage_round_trip_with_big_integers_and_nested_values():
    host = DictHost()
    value = {"big": INT_MIN, "list": [INT_MAX, b"\x00", None, True, {"n": -1}], 7: "seven"}
    source = '''
def put(v):
    host.storage_set(b"k", v)
    host.storage_delete(b"gone")
    return host.storage_get(b"k")

def get():
    return [host.storage_get(b"k"), host.storage_get(b"missing")]
'''
    code = compile_source(source)
    assert run(code, "put", [value], host, 100_000).return_value == value
    assert run(code, "get", [], host, 100_000).return_value == [value, None]


@pytest.mark.parametrize("body, fault", [
    ('host.award("alice", "karma", 1)', "bad_award"),
    ('host.award("alice", "content", -1)', "bad_award"),
    ('host.award("alice", "content", True)', "bad_award"),
    ('host.award("nobody", "content", 1)', "unknown_account"),
    ('host.param("missing")', "unknown_param"),
    ('host.storage_set("text key", 1)', "bad_storage_key"),
    ('host.storage_set(b"", 1)', "bad_storage_key"),
    ('host.storage_get(b"' + "k" * 300 + '")', "bad_storage_key"),
    ('host.emit("e", [1])', "bad_event"),
    ('host.emit("", {})', "bad_event"),
    ('host.account(1)', "type_error"),
])
def test_host_calls_validate_their_arguments(body, fault):
    host = DictHost(params={"p": 1})
    host.add_account("alice")
    with pytest.raises(VMFault) as info:
        call(f"def main():\n    return {body}\n", host=host)
    assert info.value.code == fault


def test_awards_and_events_are_applied_on_success():
    host = DictHost(pools={"content": 10, "behaviour": 100, "relationship": 0})
    host.add_account("alice")
    source = '''
def main():
    host.award("alice", "content", 25)
    host.award("alice", "behaviour", 5)
    host.emit("paid", {"to": "alice"})
    return 1
'''
    result = run(compile_source(source), "main", [], host, 100_000)
    assert result.awards == (("alice", "content", 25), ("alice", "behaviour", 5))
    assert result.events == (("paid", {"to": "alice"}),)
    assert host.awards == [("alice", "content", 10), ("alice", "behaviour", 5)]  # pool-capped
    assert host.accounts["alice"]["content"] == 10 and host.pools["content"] == 0
    assert host.events == [("paid", {"to": "alice"})]
