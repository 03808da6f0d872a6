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
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text, object_pairs_hook=_json_object)
        except ValueError as error:
            raise PolicyInvalid([("", f"not a valid JSON document: {error}")]) from None
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as error:
        raise PolicyInvalid([("", f"not a valid YAML document: {error}")]) from None


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
