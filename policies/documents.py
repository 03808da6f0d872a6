"""Policy documents: YAML or JSON text in, a validated ``Policy`` out, and back again."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from yaml.constructor import ConstructorError
from yaml.resolver import BaseResolver

from policies.errors import FieldProblems, PolicyInvalid
from policies.model import Policy

LITTLE_SPROUT = "little_sprout.yaml"

#: Limits of a policy document, checked before its fields are: nesting depth of mappings and lists, values in
#: total (aliases counted at every place they are used), and characters.
MAX_DEPTH = 32
MAX_NODES = 100_000
MAX_CHARS = 1 << 20


def load_policy(text: str) -> Policy:
    """The policy a YAML or JSON document describes; raises ``PolicyInvalid`` naming every field at fault."""
    return policy_from_data(_parse(text))


def policy_from_data(data: Any) -> Policy:
    """The policy a parsed document (a mapping) describes; raises ``PolicyInvalid``."""
    if not isinstance(data, dict):
        raise PolicyInvalid([("", "a policy document is a mapping of fields")])
    try:
        return Policy.model_validate(data)
    except ValidationError as error:
        raise PolicyInvalid(_problems(error)) from None


def dump_policy(policy: Policy) -> str:
    """The policy as a YAML document; ``load_policy(dump_policy(p)) == p``."""
    return yaml.safe_dump(
        policy.model_dump(mode="json", exclude_none=True), sort_keys=False, allow_unicode=True, default_flow_style=False
    )


@cache
def little_sprout() -> Policy:
    """The reference program shipped with the ledger."""
    text = resources.files("policies").joinpath(LITTLE_SPROUT).read_text(encoding="utf-8")
    return load_policy(text)


# --- parsing --------------------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key given twice in one mapping."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise ConstructorError(
                "while reading a mapping", node.start_mark, "found a key that is not a string", key_node.start_mark
            )
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise ConstructorError(
                "while reading a mapping", node.start_mark, f"found the key {key!r} twice", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"found the key {key!r} twice")
        result[key] = value
    return result


def _parse(text: str) -> Any:
    if len(text) > MAX_CHARS:
        raise PolicyInvalid([("", f"a policy document has at most {MAX_CHARS} characters")])
    if text.lstrip().startswith("{"):
        _check_json_depth(text)
        try:
            data = json.loads(text, object_pairs_hook=_json_object)
        except (ValueError, RecursionError) as error:
            raise PolicyInvalid([("", f"not a valid JSON document: {error}")]) from None
    else:
        try:
            _check_yaml_depth(text)
            data = yaml.load(text, Loader=_StrictLoader)
        except yaml.YAMLError as error:
            raise PolicyInvalid([("", f"not a valid YAML document: {error}")]) from None
    _check_tree(data)
    return data


def _too_deep() -> PolicyInvalid:
    return PolicyInvalid([("", f"mappings and lists nest at most {MAX_DEPTH} deep")])


def _check_yaml_depth(text: str) -> None:
    """Nesting depth from the parser's events (the parser is iterative; composing a deep tree is not)."""
    depth = 0
    for event in yaml.parse(text, Loader=_StrictLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise _too_deep()
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _check_json_depth(text: str) -> None:
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise _too_deep()
        elif ch in "]}":
            depth -= 1


def _check_tree(data: Any) -> None:
    """Every key a string; at most MAX_NODES values, counting an aliased value each time it is used."""
    stack = [data]
    nodes = 0
    while stack:
        item = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise PolicyInvalid([("", f"a policy document has at most {MAX_NODES} values")])
        if isinstance(item, dict):
            for key, value in item.items():
                if not isinstance(key, str):
                    raise PolicyInvalid([("", f"every key is a string; found {type(key).__name__} {key!r:.40}")])
                stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)


# --- errors ---------------------------------------------------------------------------------------------------


def _problems(error: ValidationError) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for detail in error.errors():
        base = _path(detail["loc"])
        cause = detail.get("ctx", {}).get("error")
        if isinstance(cause, FieldProblems):
            problems.extend((_join(base, path), message) for path, message in cause.problems)
        else:
            problems.append((base, _message(detail)))
    return problems


def _path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc if part != "[key]")


def _join(base: str, path: str) -> str:
    return f"{base}.{path}" if base and path else base or path


def _message(detail: ErrorDetails) -> str:
    message = detail["msg"]
    prefix = "Value error, "
    return message.removeprefix(prefix)
