"""Which payload schema changes break readers (DESIGN §3): a new version may only add optional
fields; removing, retyping or newly requiring a field makes a new type.

Both directions count, because streams hold old and new events side by side: old readers meet
new events, and new readers meet old events. So a change must keep every event valid under both
schemas; only an optional field added to an object that tolerates unknown fields does."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

Schema = Mapping[str, Any]

# Keywords that restrict which values are valid; a change to any of them, either way, breaks a
# reader on one side (tightened: old events rejected; loosened: old readers reject new events).
CONSTRAINTS = (
    "const",
    "enum",
    "format",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "uniqueItems",
)
ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$comment", "deprecated"})


def breaking_changes(old_schema: Schema, new_schema: Schema) -> list[str]:
    """Reasons the new schema would break a reader of the old one (or the reverse); [] if none.

    Understands what pydantic emits: local `$ref`s into `$defs`, `anyOf` with `null` for
    optional fields, nested objects and arrays."""
    return _Diff(old_schema, new_schema).compare(old_schema, new_schema, "")


class _Diff:
    def __init__(self, old_root: Schema, new_root: Schema) -> None:
        self.roots = (old_root, new_root)
        self.open_refs: set[tuple[str, str]] = set()  # the pairs being compared, for recursion

    def compare(self, old: Schema, new: Schema, path: str) -> list[str]:
        refs = (old.get("$ref", ""), new.get("$ref", ""))
        if refs in self.open_refs:  # a recursive model: its fields are being compared already
            return []
        if any(refs):
            self.open_refs.add(refs)
        try:
            old, new = _resolve(self.roots[0], old), _resolve(self.roots[1], new)
            return self._compare_resolved(old, new, path)
        finally:
            self.open_refs.discard(refs)

    def _compare_resolved(self, old: Schema, new: Schema, path: str) -> list[str]:
        old_nullable, old_branches = _branches(old)
        new_nullable, new_branches = _branches(new)
        problems = []
        if old_nullable != new_nullable:
            change = "may now be null" if new_nullable else "may no longer be null"
            problems.append(f"{_where(path)} {change}")
        if len(old_branches) == 1 and len(new_branches) == 1:
            old_one, new_one = old_branches[0], new_branches[0]
            if old_one is old and new_one is new:
                return problems + self._compare_one(old, new, path)
            return problems + self.compare(old_one, new_one, path)  # an optional field's type
        before = {_canonical(self.roots[0], b) for b in old_branches}
        after = {_canonical(self.roots[1], b) for b in new_branches}
        if before != after:
            problems.append(
                f"{_where(path)} type changed from {_kinds(old_branches)} to {_kinds(new_branches)}"
            )
        return problems

    def _compare_one(self, old: Schema, new: Schema, path: str) -> list[str]:
        old_kind, new_kind = _kind(old), _kind(new)
        if old_kind != new_kind:
            return [f"{_where(path)} type changed from {old_kind} to {new_kind}"]
        problems = [
            f"{_where(path)} {word} changed from {old.get(word)!r} to {new.get(word)!r}"
            for word in CONSTRAINTS
            if old.get(word) != new.get(word)
        ]
        if old_kind == "object":
            problems += self._compare_object(old, new, path)
        elif old_kind == "array":
            problems += self.compare(old.get("items", {}), new.get("items", {}), f"{path}[]")
        return problems

    def _compare_object(self, old: Schema, new: Schema, path: str) -> list[str]:
        old_fields, new_fields = old.get("properties", {}), new.get("properties", {})
        old_required, new_required = set(old.get("required", ())), set(new.get("required", ()))
        problems = []
        for name, old_field in old_fields.items():
            where = f"{path}.{name}" if path else name
            if name not in new_fields:
                problems.append(f"field '{where}' removed")
                continue
            problems += self.compare(old_field, new_fields[name], where)
            if name in old_required and name not in new_required:
                problems.append(f"field '{where}' is no longer required")
            elif name in new_required and name not in old_required:
                problems.append(f"field '{where}' became required")
        old_extra = old.get("additionalProperties", True)
        new_extra = new.get("additionalProperties", True)
        for name in sorted(new_fields.keys() - old_fields.keys()):
            where = f"{path}.{name}" if path else name
            if name in new_required:
                problems.append(f"new required field '{where}'")
            elif old_extra is False:
                problems.append(f"new field '{where}' where old readers reject unknown fields")
        if isinstance(old_extra, Mapping) and isinstance(new_extra, Mapping):
            problems += self.compare(old_extra, new_extra, f"{path}.*" if path else "*")
        elif old_extra != new_extra:
            problems.append(
                f"{_where(path)} unknown fields: additionalProperties changed "
                f"from {old_extra!r} to {new_extra!r}"
            )
        return problems


def _where(path: str) -> str:
    return f"field '{path}'" if path else "payload"


def _pointer(root: Schema, ref: str) -> Schema:
    if not ref.startswith("#/"):
        raise ValueError(f"only local references are supported, got {ref!r}")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    if not isinstance(node, Mapping):
        raise ValueError(f"{ref!r} does not point at a schema")
    return node


def _resolve(root: Schema, node: Schema) -> Schema:
    """Follow `$ref` (siblings override the target) and unwrap a lone `allOf`."""
    while True:
        if "$ref" in node:
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            node = {**_pointer(root, node["$ref"]), **siblings}
        elif len(node.get("allOf", ())) == 1:
            siblings = {k: v for k, v in node.items() if k != "allOf"}
            node = {**node["allOf"][0], **siblings}
        else:
            return node


def _branches(node: Schema) -> tuple[bool, list[Schema]]:
    """(accepts null, the non-null alternatives) of `anyOf`/`oneOf` or a list of types."""
    for word in ("anyOf", "oneOf"):
        if word in node:
            rest = {k: v for k, v in node.items() if k != word and k not in ANNOTATIONS}
            options: list[Schema] = [{**rest, **option} for option in node[word]]
            others = [o for o in options if o.get("type") != "null"]
            return len(others) < len(options), others
    if isinstance(node.get("type"), list):
        types = node["type"]
        typed: list[Schema] = [{**node, "type": t} for t in types if t != "null"]
        return "null" in types, typed
    return node.get("type") == "null", [node] if node.get("type") != "null" else []


def _kind(node: Schema) -> str:
    if isinstance(node.get("type"), str):
        return str(node["type"])
    if "properties" in node:
        return "object"
    if "items" in node:
        return "array"
    values = node.get("enum", [node["const"]] if "const" in node else [])
    names = {bool: "boolean", int: "integer", float: "number", str: "string"}
    kinds = sorted({names.get(type(v), "value") for v in values})
    return "|".join(kinds) if kinds else "any"


def _kinds(branches: list[Schema]) -> str:
    return " | ".join(sorted(_kind(b) for b in branches)) or "null"


def _canonical(root: Schema, node: Schema, depth: int = 0) -> str:
    """A schema's meaning as text: references inlined, annotations dropped (for unions)."""
    return json.dumps(_strip(root, node, depth), sort_keys=True)


def _strip(root: Schema, node: Any, depth: int) -> Any:
    if depth > 20:  # deep enough to tell unions apart; recursive models stop here
        return "..."
    if isinstance(node, list):
        return [_strip(root, v, depth + 1) for v in node]
    if not isinstance(node, Mapping):
        return node
    stripped: dict[str, Any] = {}
    for word, value in _resolve(root, node).items():
        if word in ANNOTATIONS:
            continue
        if word in ("properties", "patternProperties"):  # keys here are field names, not keywords
            stripped[word] = {name: _strip(root, v, depth + 1) for name, v in value.items()}
        else:
            stripped[word] = _strip(root, value, depth + 1)
    return stripped
