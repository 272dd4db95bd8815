"""docs/architecture.md: "No service imports another". Services meet on the bus and in the
shared core (`ridepulse/`); an import across would couple their deployments and their failures."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("ingest", "matching", "eta", "pricing", "dashboard")


def imported_packages(path: Path) -> set[str]:
    """The top-level packages a module imports (relative imports stay in their package)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.partition(".")[0])
    return found


def test_no_service_imports_another() -> None:
    crossings = sorted(
        f"{path.relative_to(ROOT)} imports {other}"
        for service in SERVICES
        for path in (ROOT / service).rglob("*.py")
        for other in imported_packages(path) & set(SERVICES) - {service}
    )
    assert crossings == []


def test_the_core_imports_no_service() -> None:
    """The other direction: `ridepulse/` is what every service builds on, never the reverse
    (the launcher starts services by their entry points' names, not by importing them)."""
    crossings = sorted(
        f"{path.relative_to(ROOT)} imports {other}"
        for path in (ROOT / "ridepulse").rglob("*.py")
        for other in imported_packages(path) & set(SERVICES)
    )
    assert crossings == []
