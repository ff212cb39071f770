"""The apps depend one way (DESIGN.md section 1): thor <- identity <- brokers <- market <- accounts; analytics on
market, brokers and thor, never on accounts; market (the instrument master) on brokers and thor only. Only wiring may import anything. Read from the source, so a new
import against the grain fails here before it becomes a cycle."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAY_IMPORT = {
    "thor": set(),
    "identity": {"thor"},
    "brokers": {"thor", "identity"},
    "market": {"thor", "brokers"},
    "accounts": {"thor", "identity", "brokers", "market"},
    "analytics": {"thor", "brokers", "market"},
}
WIRING = {"urls.py", "routing.py", "asgi.py", "wsgi.py", "celery.py"}


def imported_apps(path: Path) -> set[tuple[int, str]]:
    found: set[tuple[int, str]] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        found.update((node.lineno, name.split(".")[0]) for name in names)
    return found


def app_modules(app: str):
    for path in sorted((ROOT / app).rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        if "tests" in parts or "migrations" in parts or path.name in WIRING:
            continue
        yield path


@pytest.mark.parametrize("app", sorted(MAY_IMPORT))
def test_an_app_imports_only_the_apps_below_it(app):
    against = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in app_modules(app)
        for line, name in imported_apps(path)
        if name in MAY_IMPORT and name != app and name not in MAY_IMPORT[app]
    ]

    assert not against, "\n".join(against)


def test_the_check_sees_an_import_against_the_grain(tmp_path):
    module = tmp_path / "services.py"
    module.write_text("from accounts.models import Order\nimport brokers.services\n")

    assert imported_apps(module) == {(1, "accounts"), (2, "brokers")}
