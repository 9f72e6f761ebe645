"""state/ and contracts/ are pure: no I/O libraries, no clock, no randomness (CONVENTIONS.md §1).
consensus/ reads no clock or randomness either: time comes in as arguments."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "state": {"plyvel", "fastapi", "httpx", "uvicorn", "asyncio", "random", "time", "socket", "os", "secrets"},
    "contracts": {"plyvel", "fastapi", "httpx", "uvicorn", "asyncio", "random", "time", "socket", "os", "secrets"},
    "consensus": {"plyvel", "fastapi", "httpx", "uvicorn", "asyncio", "random", "time", "socket", "secrets"},
}


def imported_modules(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_pure_packages_import_no_io_clock_or_randomness(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package}/ has no modules"
    offenders = {str(f.relative_to(ROOT)): sorted(imported_modules(f) & FORBIDDEN[package]) for f in files}
    assert {f: m for f, m in offenders.items() if m} == {}
