"""Same inputs, same outputs: across independent VM instances, against a reference evaluator, and
against native Python for programs where the language and Python agree."""
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import DictHost, VMError, VMFault, compile_source, run
from contracts.bytecode import load_program
from contracts.vm import prepare

INT_MIN, INT_MAX = -(1 << 127), (1 << 127) - 1

WORKLOAD = '''
def _describe(v):
    if v is None:
        return "none"
    if v == True or v == False:
        return "bool"
    if v == "" or v == b"":
        return "empty"
    if len(v) == 0:
        return "empty"
    return "other"

def main(items, seed):
    counts = {}
    total = seed
    for x in items:
        kind = _describe(x)
        if kind in counts:
            counts[kind] += 1
        else:
            counts[kind] = 1
        if kind == "other" and len(x) > 1:
            total = total * 3 + len(str(len(x)))
    order = []
    for k in counts:
        append(order, k)
        host.storage_set(encode("count:" + k), counts[k])
    host.emit("summary", {"order": order, "total": total})
    if total % 7 == 3:
        host.award("alice", "behaviour", total % 1000)
    return [order, total, sorted(counts)]
'''

_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(INT_MIN, INT_MAX),
                     st.text(max_size=8), st.binary(max_size=8))
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=4)),
    max_leaves=12)
_ITEMS = st.one_of(st.none(), st.booleans(), st.text(max_size=8), st.binary(max_size=8),
                   st.lists(_VALUES, max_size=4), st.dictionaries(st.text(max_size=4), _VALUES, max_size=4))


def _fresh_run(source, args):
    """Compile and run from scratch: no caches shared with any other run."""
    prepare.cache_clear()
    load_program.cache_clear()
    host = DictHost()
    host.add_account("alice")
    try:
        result = run(compile_source(source), "main", args, host, 500_000)
    except VMError as e:
        return ("error", e.code, e.gas_used, host.snapshot())
    return ("ok", result, host.snapshot())


@settings(max_examples=60, deadline=None)
@given(st.lists(_ITEMS, max_size=8), st.integers(-10 ** 30, 10 ** 30))
def test_two_independent_instances_agree(items, seed):
    assert _fresh_run(WORKLOAD, [items, seed]) == _fresh_run(WORKLOAD, [items, seed])


# -- reference evaluator for integer expressions ---------------------------------------------------

class _Fault(Exception):
    def __init__(self, code):
        self.code = code


def _checked(v):
    if not INT_MIN <= v <= INT_MAX:
        raise _Fault("int_overflow")
    return v


def _reference(tree, a, b):
    """Evaluate the expression tree with the VM's rules, written independently of the VM."""
    kind = tree[0]
    if kind == "lit":
        return tree[1]
    if kind == "var":
        return a if tree[1] == "a" else b
    if kind == "neg":
        return _checked(-_reference(tree[1], a, b))
    if kind == "if":
        return _reference(tree[2], a, b) if _reference(tree[1], a, b) > 0 else _reference(tree[3], a, b)
    left, right = _reference(tree[2], a, b), _reference(tree[3], a, b)
    op = tree[1]
    if op in ("//", "%") and right == 0:
        raise _Fault("division_by_zero")
    if op == "//":
        return _checked(left // right)
    if op == "%":
        return left % right
    if op == "<":
        return int(left < right)
    return _checked({"+": left + right, "-": left - right, "*": left * right}[op])


def _source(tree):
    kind = tree[0]
    if kind == "lit":
        return f"({tree[1]})"
    if kind == "var":
        return tree[1]
    if kind == "neg":
        return f"(-{_source(tree[1])})"
    if kind == "if":
        return f"({_source(tree[2])} if {_source(tree[1])} > 0 else {_source(tree[3])})"
    if tree[1] == "<":
        return f"(1 if {_source(tree[2])} < {_source(tree[3])} else 0)"
    return f"({_source(tree[2])} {tree[1]} {_source(tree[3])})"


_TREES = st.recursive(
    st.one_of(st.tuples(st.just("lit"), st.one_of(st.integers(-1000, 1000),
                                                 st.integers(INT_MIN, INT_MAX))),
              st.tuples(st.just("var"), st.sampled_from(["a", "b"]))),
    lambda inner: st.one_of(
        st.tuples(st.just("neg"), inner),
        st.tuples(st.just("bin"), st.sampled_from(["+", "-", "*", "//", "%", "<"]), inner, inner),
        st.tuples(st.just("if"), inner, inner, inner)),
    max_leaves=10)


@settings(max_examples=150, deadline=None)
@given(_TREES, st.integers(INT_MIN, INT_MAX), st.integers(-100, 100))
def test_integer_expressions_match_the_reference(tree, a, b):
    code = compile_source(f"def main(a, b):\n    return {_source(tree)}\n")
    try:
        expected = ("ok", _reference(tree, a, b))
    except _Fault as f:
        expected = ("fault", f.code)
    try:
        got = ("ok", run(code, "main", [a, b], DictHost(), 10 ** 6).return_value)
    except VMFault as e:
        got = ("fault", e.code)
    assert got == expected


# -- native Python agrees where the language is plain Python ----------------------------------------

NATIVE = '''
def _collatz(n):
    steps = 0
    while n != 1:
        if n % 2 == 0:
            n = n // 2
        else:
            n = 3 * n + 1
        steps += 1
    return steps

def main(n, words):
    out = {}
    for i in range(1, n):
        out[i] = _collatz(i)
    seen = []
    for w in sorted(words):
        if w not in seen and len(w) > 1:
            append(seen, w)
    best = 0
    for k in out:
        best = max(best, out[k])
    return [best, seen, out]
'''


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.lists(st.text(alphabet="abc", max_size=3), max_size=6))
def test_vm_matches_native_python(n, words):
    scope = {"append": lambda xs, v: xs.append(v)}
    exec(NATIVE, scope)
    expected = scope["main"](n, list(words))
    assert run(compile_source(NATIVE), "main", [n, words], DictHost(), 10 ** 7).return_value == expected


_SEED_PROBE = '''
from contracts import DictHost, compile_source, run
from contracts.rules import default_rules_hash
host = DictHost()
host.add_account("alice")
items = ["x" * n for n in range(12)] + [{"k%d" % n: n for n in range(30)}, b"", None, True]
result = run(compile_source(WORKLOAD), "main", [items, 7], host, 500_000)
print(default_rules_hash().hex(), result, sorted(host.storage.items()), host.events)
'''


def test_results_do_not_depend_on_the_hash_seed():
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    outputs = set()
    for seed in ("1", "2", "random"):
        probe = f"WORKLOAD = {WORKLOAD!r}\n{_SEED_PROBE}"
        done = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True,
                              text=True, env={"PYTHONHASHSEED": seed, "PATH": ""}, check=True)
        outputs.add(done.stdout)
    assert len(outputs) == 1 and next(iter(outputs)).strip()
