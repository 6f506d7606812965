"""Loading mapping files: YAML with line numbers, shipped files, user overrides.

A mapping file is plain YAML (see ``mappings/salesforce.yaml``). Every mapping node remembers the
file and line it came from, so the compiler's errors name ``file:line``. A user's override file
(``sources.<name>.mapping`` in ltc.yaml) is merged over the shipped file of the source's kind:

* ``objects.<Obj>.fields.<field>``: added or replaced; ``null`` removes a shipped field.
* any other key of an object (``entity``, ``when``, ``children``...) replaces the shipped one.
* a new object is added; ``objects.<Obj>: null`` drops a shipped object.
* top-level keys (``timezone``) replace the shipped ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from canonical.errors import ConfigError, yaml_problem, yaml_text

SHIPPED_DIR = Path(__file__).parent


class MappingError(ConfigError):
    """A mapping file that cannot be used; the message names file and line."""


class Node(dict[Any, Any]):
    """A YAML mapping that remembers where it and each of its keys were written."""

    file: str = "?"
    line: int = 0
    key_lines: dict[Any, int]
    key_files: dict[Any, str]  # keys merged in from an override file

    def where(self, key: Any = None) -> str:
        if key is None or key not in self.key_lines:
            return f"{self.file}:{self.line}"
        return f"{self.key_files.get(key, self.file)}:{self.key_lines[key]}"

    def take(self, other: Node, key: Any) -> None:
        """Record that ``key`` now comes from ``other`` (an override)."""
        self.key_lines[key] = other.key_lines.get(key, other.line)
        self.key_files[key] = other.key_files.get(key, other.file)


_BASE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when installed


def _loader(file: str) -> Any:
    class Loader(_BASE_LOADER):
        pass

    def construct_mapping(loader: Any, node: yaml.MappingNode) -> Node:
        loader.flatten_mapping(node)
        out = Node()
        out.file, out.line, out.key_lines, out.key_files = file, node.start_mark.line + 1, {}, {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in out:
                raise MappingError(f"{file}:{key_node.start_mark.line + 1}: duplicate key {key!r}")
            out[key] = loader.construct_object(value_node, deep=True)
            out.key_lines[key] = key_node.start_mark.line + 1
        return out

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return Loader


TOP_LEVEL_KEYS = frozenset({"objects", "timezone", "kind", "note"})


def load_file(path: str | Path) -> Node:
    """Parse a mapping file. A path that names something else (``/etc/passwd``, a binary, a
    directory) is refused without quoting any of its content: an error message is no way to read
    files the operator did not mean to show."""
    p = Path(path)
    if not p.exists():
        raise MappingError(f"mapping file {p} does not exist")
    not_mapping = MappingError(f"{p}: not a mapping file (a YAML mapping whose top-level keys are among "
                               f"{', '.join(sorted(TOP_LEVEL_KEYS))}; see mappings/salesforce.yaml)")
    try:
        text = yaml_text(p)
    except ValueError as exc:  # not UTF-8: a mapping saved in another encoding is said so, anything else is not one
        raw = p.read_bytes()
        raise (MappingError(str(exc)) if b"objects:" in raw or b"timezone:" in raw else not_mapping) from None
    except OSError as exc:
        raise MappingError(f"mapping file {p} cannot be read ({exc.strerror or type(exc).__name__})") from None
    looks_like_one = "objects:" in text or "timezone:" in text
    try:
        data = yaml.load(text, Loader=_loader(str(p)))
    except (yaml.YAMLError, MappingError) as exc:
        if not looks_like_one:
            raise not_mapping from None
        raise (exc if isinstance(exc, MappingError) else MappingError(yaml_problem(p, exc))) from None
    if not isinstance(data, Node) or not set(data) <= TOP_LEVEL_KEYS:
        raise not_mapping
    return data


def shipped_path(kind: str) -> Path:
    return SHIPPED_DIR / f"{kind}.yaml"


def shipped_kinds() -> list[str]:
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml"))


def _copy(node: Node) -> Node:
    out = Node(node)
    out.file, out.line = node.file, node.line
    out.key_lines, out.key_files = dict(node.key_lines), dict(node.key_files)
    return out


def merge(base: Node, override: Node) -> Node:
    """The shipped mapping with the user's override applied (rules in the module docstring)."""
    out = _copy(base)
    for key, value in override.items():
        if key != "objects":
            out[key] = value
            out.take(override, key)
            continue
        if not isinstance(value, Node):
            raise MappingError(f"{override.where(key)}: `objects` must be a mapping of source objects")
        objects = _copy(base["objects"]) if isinstance(base.get("objects"), Node) else _copy(value)
        for obj, spec in value.items():
            objects.take(value, obj)
            if spec is None:
                objects.pop(obj, None)
            elif isinstance(spec, Node) and isinstance(objects.get(obj), Node):
                objects[obj] = _merge_object(objects[obj], spec)
            else:
                objects[obj] = spec
        out["objects"] = objects
        out.take(override, "objects")
    return out


def _merge_object(base: Node, override: Node) -> Node:
    out = _copy(base)
    for key, value in override.items():
        out.take(override, key)
        if key == "fields" and isinstance(value, Node) and isinstance(base.get("fields"), Node):
            fields = _copy(base["fields"])
            for name, fspec in value.items():
                fields.take(value, name)
                if fspec is None:
                    fields.pop(name, None)
                else:
                    fields[name] = fspec
            out["fields"] = fields
        else:
            out[key] = value
    return out


def load_mapping(kind: str, override: str | Path | None = None) -> Node:
    """The shipped mapping of ``kind`` (or none, if ``override`` is a complete mapping) merged with ``override``."""
    path = shipped_path(kind)
    base: Node | None = load_file(path) if path.exists() else None
    if override is None:
        if base is None:
            raise MappingError(
                f"no shipped mapping for source kind {kind!r} (shipped: {', '.join(shipped_kinds())}); "
                "give one with sources.<name>.mapping in ltc.yaml"
            )
        return base
    extra = load_file(override)
    return extra if base is None else merge(base, extra)


def node_of(value: Any, where: str) -> Any:
    """Plain dicts and lists (a mapping built in code, not read from YAML) as :class:`Node` trees whose
    places all read ``where``, so errors about them say where they came from."""
    if isinstance(value, dict):
        out = Node({k: node_of(v, where) for k, v in value.items()})
        out.file, out.line, out.key_lines, out.key_files = where, 0, {}, {}
        return out
    if isinstance(value, list):
        return [node_of(v, where) for v in value]
    return value
