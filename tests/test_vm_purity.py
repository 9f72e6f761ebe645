"""contracts/ stays pure: no store, network, event loop, clock or randomness imports."""
import ast
from pathlib import Path

CONTRACTS = Path(__file__).resolve().parent.parent / "contracts"
FORBIDDEN = {"plyvel", "fastapi", "httpx", "uvicorn", "asyncio", "random", "time", "secrets",
             "datetime", "socket", "threading", "os", "subprocess"}
ALLOWED_EXTERNAL = {"msgpack"}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_contracts_never_import_io_clock_or_randomness():
    files = sorted(CONTRACTS.rglob("*.py"))
    assert len(files) >= 10
    for path in files:
        bad = _imports(path) & FORBIDDEN
        assert not bad, f"{path.relative_to(CONTRACTS)} imports {sorted(bad)}"


def test_only_the_benchmark_reads_a_clock():
    for path in sorted(CONTRACTS.rglob("*.py")):
        if path.name != "bench.py":
            assert "timeit" not in _imports(path), path


def test_third_party_imports_are_only_msgpack():
    import sys
    stdlib = set(sys.stdlib_module_names)
    for path in sorted(CONTRACTS.rglob("*.py")):
        external = {name for name in _imports(path) if name not in stdlib and name != "contracts"}
        assert external <= ALLOWED_EXTERNAL, f"{path.name} imports {sorted(external)}"


def test_the_rules_source_imports_nothing():
    assert _imports(CONTRACTS / "rules" / "default.py") == set()


def test_readme_instruction_table_matches_the_gas_table():
    from contracts.opcodes import SPECS, Op
    rows = {}
    for line in (CONTRACTS / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`") and cells[1].startswith("0x"):
            rows[cells[0].strip("`")] = (int(cells[1], 16), cells[2] == "u16", int(cells[3]))
    assert rows == {op.name: (op.value, SPECS[op].has_arg, SPECS[op].gas) for op in Op}
