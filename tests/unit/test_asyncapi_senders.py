"""The AsyncAPI document names who sends what, and that is read from the code, not from a second
hand-written list: what each service's code can emit through the ride store's steps, through
`make`, as raw stream fields, and whether they run a heartbeat.

A service's code is what its entry point function reaches by name, across first-party modules
(the ride store and the bus included); a ride step counts where a store's method is called on
something named a store."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

from ridepulse.contracts.asyncapi import (
    ENVELOPE_SCHEMA,
    HEARTBEAT,
    HEARTBEATING,
    SENDS,
    build_asyncapi,
)
from ridepulse.contracts.registry import REGISTRY
from ridepulse.rides.state import DRIVER_TRANSITIONS, TRANSITIONS
from ridepulse.services import ENTRY_POINTS, SERVICE_NAMES

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = ("ridepulse", "ingest", "matching", "eta", "pricing", "dashboard")
EVENT_TYPES = {t for t, _ in REGISTRY}
LUA_EVENT_TYPE = re.compile(r"'type',\s*'([a-z_.]+)'")


def _path(module: str) -> Path | None:
    base = ROOT / module.replace(".", "/")
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def _top_level(tree: ast.Module) -> dict[str, list[ast.stmt]]:
    """Each name a module defines at top level → the statements defining it."""
    names: dict[str, list[ast.stmt]] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.setdefault(node.name, []).append(node)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        names.setdefault(name.id, []).append(node)
    return names


def _imported(tree: ast.Module) -> dict[str, tuple[str, str | None]]:
    """Each first-party name a module imports → (module, name in it; None: the whole module)."""
    found: dict[str, tuple[str, str | None]] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                whole = f"{node.module}.{alias.name}"
                target = (whole, None) if _path(whole) else (node.module, alias.name)
                found[alias.asname or alias.name] = target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                found[alias.asname or alias.name.split(".")[0]] = (alias.name, None)
    return {k: v for k, v in found.items() if v[0].split(".")[0] in FIRST_PARTY and _path(v[0])}


def service_code(service: str) -> list[ast.AST]:
    """The definitions a service can run: from its entry point function, every top-level
    definition reached by name, across first-party modules (a module shared by two services
    counts, for each, only the parts it reaches)."""
    entry, function = ENTRY_POINTS[service].split(":")
    reached: list[ast.AST] = []
    seen: set[tuple[str, str | None]] = set()
    todo: list[tuple[str, str | None]] = [(entry, function)]
    while todo:
        module, name = todo.pop()
        path = _path(module)
        if (module, name) in seen or path is None:
            continue
        seen.add((module, name))
        tree = _tree(path)
        defined, imported = _top_level(tree), _imported(tree)
        nodes: list[ast.AST] = [tree] if name is None else list(defined.get(name, []))
        reached += nodes
        used = {n.id for node in nodes for n in ast.walk(node) if isinstance(n, ast.Name)}
        todo += [(module, n) for n in sorted(used & defined.keys()) if n != name]
        todo += [imported[n] for n in sorted(used & imported.keys())]
    return reached


def _lua_event_types(script: str) -> set[str]:
    path = ROOT / "ridepulse" / "rides" / f"{script}.lua"
    return set(LUA_EVENT_TYPE.findall(path.read_text(encoding="utf-8"))) & EVENT_TYPES


@cache
def store_step_events() -> dict[str, frozenset[str]]:
    """Each public RideStore method → the event types it can append: the transition rows it
    names (their `event_type`), driver status rows, and types a script writes literally."""
    tree = _tree(ROOT / "ridepulse" / "rides" / "store.py")
    (store,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "RideStore"]
    steps: dict[str, frozenset[str]] = {}
    for method in store.body:
        if not isinstance(method, ast.AsyncFunctionDef) or method.name.startswith("_"):
            continue
        emitted: set[str] = set()
        for node in ast.walk(method):
            if isinstance(node, ast.Constant) and node.value in TRANSITIONS:
                emitted.add(TRANSITIONS[node.value].event_type)
            elif isinstance(node, ast.Name) and node.id == "DRIVER_TRANSITIONS":
                emitted |= {row.event_type for row in DRIVER_TRANSITIONS.values()}
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "scripts"
            ):
                emitted |= _lua_event_types(node.attr)
        if emitted:
            steps[method.name] = frozenset(emitted)
    return steps


def emitted_by(service: str) -> set[str]:
    """Every event type the service's code can append to a stream."""
    steps = store_step_events()
    emitted: set[str] = set()
    for code in service_code(service):
        for node in ast.walk(code):
            if isinstance(node, ast.Call):
                func = node.func
                if (
                    isinstance(func, ast.Attribute)
                    and func.attr in steps
                    and "store" in ast.unparse(func.value)
                ):
                    emitted |= steps[func.attr]
                elif isinstance(func, ast.Name) and func.id == "make" and node.args:
                    first = node.args[0]
                    if isinstance(first, ast.Constant) and first.value in EVENT_TYPES:
                        emitted.add(first.value)
                elif isinstance(func, ast.Name) and func.id == "Heartbeat":
                    emitted.add(HEARTBEAT)
            elif isinstance(node, ast.Dict):  # raw stream fields: {b"type": b"driver.location"}
                for key, value in zip(node.keys, node.values, strict=True):
                    if (
                        isinstance(key, ast.Constant)
                        and key.value == b"type"
                        and isinstance(value, ast.Constant)
                        and isinstance(value.value, bytes)
                        and value.value.decode() in EVENT_TYPES
                    ):
                        emitted.add(value.value.decode())
    return emitted


def test_the_derivation_sees_each_kind_of_write() -> None:
    """Guards the test below against a walker that finds nothing (and so agrees with nothing)."""
    steps = store_step_events()
    assert steps["lose_driver"] == {"ride.unmatched", "ride.cancelled"}
    assert steps["evict_drivers"] == {"driver.status"}  # XADD inside evict_drivers.lua
    assert steps["cancel"] == {"ride.cancelled", "ride.unmatched"}
    assert "driver.location" in emitted_by("ingest")  # raw fields, the telemetry batcher
    assert "surge.updated" in emitted_by("pricing")  # make()
    assert "driver.status" in emitted_by("janitor")  # through silent_drivers, then the store


def test_documented_senders_are_what_each_services_code_emits() -> None:
    for service in SERVICE_NAMES:
        documented = set(SENDS.get(service, ())) | (
            {HEARTBEAT} if service in HEARTBEATING else set()
        )
        assert emitted_by(service) == documented, (
            f"{service}'s code emits {sorted(emitted_by(service))}, the AsyncAPI catalogue says "
            f"{sorted(documented)}: update SENDS or HEARTBEATING in ridepulse/contracts/asyncapi.py"
        )


def test_every_send_operation_is_a_documented_sender() -> None:
    operations = build_asyncapi()["operations"]
    senders = {op["tags"][0]["name"] for op in operations.values() if op["action"] == "send"}
    assert "janitor.send.rides" in operations
    assert "dashboard" not in senders, "the dashboard writes nothing: its user has no XADD"


def test_the_envelope_subject_names_every_entity_an_event_is_about() -> None:
    """Subjects are `<entity>/<id>`: every prefix the code writes is in the description."""
    written: set[str] = {"ride/", "driver/"}  # the ride steps' and the driver steps' subjects
    for service in SERVICE_NAMES:
        for code in service_code(service):
            for node in ast.walk(code):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id == "make"
                    and len(node.args) > 1
                    and isinstance(node.args[1], ast.JoinedStr)
                    and isinstance(head := node.args[1].values[0], ast.Constant)
                ):
                    written.add(str(head.value))
    description = ENVELOPE_SCHEMA["properties"]["subject"]["description"]
    assert {"market/", "service/"} <= written
    missing = [p for p in sorted(written) if f"`{p}<" not in description]
    assert not missing, f"subjects {missing} are not in the Envelope's subject description"
