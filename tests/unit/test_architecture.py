"""The shape the code keeps, checked from its syntax: who imports whom, pure domain modules, names that say one
thing, records built by keyword. (See the README's "Architecture".)"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "services"
SLICES = ("trigger_ingest", "strategy_engine", "notifier")
DOMAIN = {
    "trigger_ingest": ("domain", "dead_letters"),
    "strategy_engine": ("lifecycle", "policies", "assessments", "documents", "board", "reminders"),
    "notifier": (
        "matching",
        "retries",
        "signing",
        "chat",
        "preferences",
        "notices",
        "mail",
        "redaction",
        "event_data",
        "slots",
    ),
}
"""Modules of pure domain logic: no I/O, and nothing of their service's flows, persistence or transport."""
IO = ("sqlalchemy", "httpx", "aiokafka", "fastapi", "starlette", "asyncio", "services.core.db", "services.core.kafka")
RECORD_FIELDS_MAX = 4
"""A dataclass with more fields than this is keyword-only: positional arguments of that many get mixed up."""


def _modules(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*.py") if ".venv" not in path.parts)


def _name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
    return names


def _within(names: set[str], *prefixes: str) -> set[str]:
    return {name for name in names if any(name == p or name.startswith(f"{p}.") for p in prefixes)}


SERVICE_MODULES = [path for path in _modules(SERVICES) if path.relative_to(SERVICES).parts[0] in SLICES]


@pytest.mark.parametrize("path", SERVICE_MODULES, ids=_name)
def test_a_service_imports_only_itself_core_and_contracts(path: Path) -> None:
    own = path.relative_to(SERVICES).parts[0]
    others = _within(_imports(path), *(f"services.{name}" for name in SLICES if name != own))
    assert not others, f"{_name(path)} imports another service: {sorted(others)}"


@pytest.mark.parametrize("path", _modules(SERVICES / "core") + _modules(SERVICES / "contracts"), ids=_name)
def test_core_and_contracts_import_no_service(path: Path) -> None:
    assert not _within(_imports(path), *(f"services.{name}" for name in SLICES)), _name(path)


@pytest.mark.parametrize(
    ("service", "module"), [(s, m) for s, modules in DOMAIN.items() for m in modules], ids=lambda v: str(v)
)
def test_domain_modules_are_pure(service: str, module: str) -> None:
    path = SERVICES / service / f"{module}.py"
    layers = [f"services.{service}.{layer}" for layer in ("flows", "persistence", "transport", "wiring", "timers")]
    impure = _within(_imports(path), *IO, *layers)
    assert not impure, f"{service}.{module} is domain logic but imports {sorted(impure)}"


@pytest.mark.parametrize("path", SERVICE_MODULES, ids=_name)
def test_layers_point_one_way(path: Path) -> None:
    """transport → flows → domain / persistence: nothing below imports transport or wiring; persistence
    imports no flow."""
    parts = path.relative_to(SERVICES).with_suffix("").parts
    service, layer = parts[0], parts[1] if len(parts) > 1 else ""
    if layer in ("transport", "wiring"):
        return
    above = [f"services.{service}.transport", f"services.{service}.wiring"]
    if layer == "persistence":
        above.append(f"services.{service}.flows")
    upward = _within(_imports(path), *above)
    assert not upward, f"{_name(path)} imports {sorted(upward)} from a layer above it"


def test_each_service_is_wired_in_wiring_and_only_the_composition_root_imports_it() -> None:
    assert not list(SERVICES.rglob("service.py")), "a service's composition lives in its wiring.py"
    assert all((SERVICES / name / "wiring.py").exists() for name in SLICES)
    importers = {
        _name(path)
        for path in _modules(SERVICES)
        if _within(_imports(path), *(f"services.{name}.wiring" for name in SLICES))
    }
    assert importers == {"services.app"}


def test_public_class_names_are_unique_across_services() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for path in _modules(SERVICES):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                where[node.name].append(_name(path))
    assert {name: paths for name, paths in where.items() if len(paths) > 1} == {}


def _dataclasses(path: Path) -> list[tuple[str, int, bool]]:
    """(name, number of fields, keyword-only) of each dataclass defined in `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ClassDef):
            continue
        for decorator in node.decorator_list:
            call = decorator if isinstance(decorator, ast.Call) else None
            target = call.func if call else decorator
            if not (isinstance(target, ast.Name) and target.id == "dataclass"):
                continue
            fields = [
                statement
                for statement in node.body
                if isinstance(statement, ast.AnnAssign) and "ClassVar" not in ast.unparse(statement.annotation)
            ]
            kw_only = call is not None and any(
                k.arg == "kw_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                for k in call.keywords
            )
            found.append((node.name, len(fields), kw_only))
    return found


CODE = [path for folder in ("services", "bench", "tests", "examples") for path in _modules(ROOT / folder)]


@pytest.mark.parametrize("path", CODE, ids=lambda path: str(path.relative_to(ROOT)))
def test_records_of_more_than_four_fields_are_built_by_keyword(path: Path) -> None:
    positional = [name for name, fields, kw_only in _dataclasses(path) if fields > RECORD_FIELDS_MAX and not kw_only]
    assert not positional, f"make {positional} @dataclass(kw_only=True) (more than {RECORD_FIELDS_MAX} fields)"


def test_the_checks_see_the_code() -> None:
    # guards the guards: the globs still find the services, their layers and their records
    assert len(SERVICE_MODULES) >= 30
    assert all((SERVICES / s / f"{m}.py").exists() for s, modules in DOMAIN.items() for m in modules)
    assert sum(fields > RECORD_FIELDS_MAX for path in CODE for _, fields, _ in _dataclasses(path)) >= 10
