"""`service/` uses the delivery library through its face only: `from webhooks import ...`,
never a module inside it, so the library can move its internals without breaking the service."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


SUBMODULES = {path.stem for path in (ROOT / "webhooks").glob("*.py")} - {"__init__"}


def submodule_imports(source: str) -> list[str]:
    """The `webhooks.*` modules `source` imports, at any depth of the file and in any form."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.startswith("webhooks.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            if node.module.startswith("webhooks."):
                found.append(node.module)
            elif node.module == "webhooks":
                found += [f"webhooks.{a.name}" for a in node.names if a.name in SUBMODULES]
    return found


def test_the_check_sees_a_submodule_import_in_every_form() -> None:
    source = (
        "import webhooks.guard\nfrom webhooks.store import Delivery\nfrom webhooks import guard"
    )
    assert submodule_imports(source) == ["webhooks.guard", "webhooks.store", "webhooks.guard"]
    assert submodule_imports("from webhooks import Engine, GuardRefused") == []


def test_no_module_under_service_imports_a_webhooks_submodule() -> None:
    offenders = {
        str(path.relative_to(ROOT)): imported
        for path in sorted((ROOT / "service").rglob("*.py"))
        if (imported := submodule_imports(path.read_text()))
    }
    assert offenders == {}
