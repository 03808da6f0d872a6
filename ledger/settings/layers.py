"""Where settings come from besides the flags and the environment, and reading them all: the secrets'
``LEDGER_<FIELD>_FILE`` files, the TOML config file, :func:`load` (one line per mistake) and :func:`sources`
(where each value came from)."""

from __future__ import annotations

import difflib
import os
import stat
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, TomlConfigSettingsSource

from ledger.settings.model import (
    CONFIG_VARIABLE,
    FLAGS,
    PREFIX,
    SECRET_FIELDS,
    Settings,
    SettingsError,
    env_name,
)


class SecretFiles(PydanticBaseSettingsSource):
    """``LEDGER_<SECRET>_FILE``: the secret is the content of that file, trailing newline dropped."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in SECRET_FIELDS:
            variable = env_name(name)
            path = os.environ.get(f"{variable}_FILE")
            if not path:
                continue
            if os.environ.get(variable):
                raise SettingsError(
                    f"{variable} and {variable}_FILE are both set: give the value one way only"
                )
            try:
                content = Path(path).read_bytes().rstrip(b"\r\n")
            except OSError as exc:
                raise SettingsError(f"{variable}_FILE: cannot read {path}: {exc.strerror}") from None
            if not content:
                raise SettingsError(f"{variable}_FILE: {path} is empty")
            values[name] = content if name == "identity_pepper" else content.decode("utf-8", "replace")
        return values


CONFIG: ContextVar[str | None] = ContextVar("ledger_config_file", default=None)
"""The ``--config`` path :func:`load` was given, while it builds the settings (None: ``LEDGERCONFIG`` decides)."""


def config_path(flag: str | None = None) -> str | None:
    """The config file to read: ``--config``'s path, else ``LEDGERCONFIG``'s, else None (no file)."""
    path = (flag or os.environ.get(CONFIG_VARIABLE, "")).strip()
    return path or None


@contextmanager
def _config_flag(path: str | None) -> Iterator[None]:
    token = CONFIG.set(path)
    try:
        yield
    finally:
        CONFIG.reset(token)


def read_config(path: str) -> dict[str, Any]:
    """The config file's keys and values; :class:`SettingsError` (naming the file, and any unknown key with the
    closest known name) when it cannot be read, is not TOML, or holds a key that is no setting."""
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise SettingsError(f"config file {path}: cannot read it: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}") from None
    known = list(Settings.model_fields)
    for key in data:
        if key not in Settings.model_fields:
            guess = key.lower().removeprefix(PREFIX.lower())
            close = difflib.get_close_matches(guess, known, n=1, cutoff=0.6)
            names = ", ".join(known)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (the keys are the settings' names: {names})"
            raise SettingsError(f"config file {path}: unknown key {key!r}{hint}")
    return data


class ConfigFile(TomlConfigSettingsSource):
    """The TOML config file as a layer under the environment and the secrets' files (its own reading, so every
    mistake in it is one line naming the file)."""

    def __init__(self, settings_cls: type[BaseSettings], path: str) -> None:
        self.path = path
        super().__init__(settings_cls, toml_file=Path(path))

    def _read_files(self, files: Any, deep_merge: bool = False) -> dict[str, Any]:
        return read_config(self.path)


def _holds_secret(name: str, value: Any) -> bool:
    """Whether a config file's value of ``name`` is a secret in fact: the pepper always, a URL when it carries a
    password (``user:password@`` or ``?password=``)."""
    if name == "identity_pepper":
        return True
    if name not in SECRET_FIELDS or not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
        return parts.password is not None or "password=" in parts.query.lower()
    except ValueError:
        return True  # not a URL we can read: keep it secret


def exposed_secrets(path: str) -> str | None:
    """Why the config file at ``path`` must not be used outside a sandbox (it holds a secret and others can read
    it), or None."""
    secret = [k for k, v in read_config(path).items() if _holds_secret(k, v)]
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None
    if not secret or not mode & 0o044:
        return None
    return (
        f"config file {path} holds a secret ({', '.join(secret)}) but is readable by group or others (mode "
        f"{mode:04o}): chmod 600 it, or give the secret as {env_name(secret[0])}_FILE"
    )


def load(flags: Mapping[str, Any] | None = None, config: str | None = None) -> Settings:
    """The settings from ``flags`` (field name to a flag's value; None: not given), the environment, files and the
    config file (``config``: ``--config``'s path; None: ``LEDGERCONFIG``'s, if set).

    Exits with one line per problem, each naming the variable (or flag, or the config file's key) and what is
    wrong, never the value of a secret."""
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    path = config_path(config)
    try:
        with _config_flag(path):
            settings = Settings(**given)
        refusal = exposed_secrets(path) if path is not None and not settings.sandbox else None
    except SettingsError as exc:
        raise SystemExit(f"ledger: configuration: {exc}") from None
    except ValidationError as exc:
        found = sources(flags, path)
        lines = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            if field in given and field in FLAGS:
                where = FLAGS[field]
            elif found.get(field, "").startswith("config file"):
                where = f"config file {path}, key {field}"
            else:
                where = env_name(field)
            shown = "" if field in SECRET_FIELDS or "input" not in error else f" (got {error['input']!r})"
            lines.append(f"{where}: {error['msg'].removeprefix('Value error, ')}{shown}")
        raise SystemExit("ledger: configuration:\n  " + "\n  ".join(lines)) from None
    if refusal is not None:
        raise SystemExit(f"ledger: configuration: {refusal}")
    return settings


def sources(flags: Mapping[str, Any] | None = None, config: str | None = None) -> dict[str, str]:
    """Where each field's value comes from: ``flag``, ``environment``, ``file`` (a secret's ``_FILE``), ``config
    file (PATH)`` or ``default``; ``config`` as for :func:`load`."""
    given = {k for k, v in (flags or {}).items() if v is not None}
    path = config_path(config)
    try:
        in_file = set(read_config(path)) if path is not None else set()
    except SettingsError:
        in_file = set()
    found = {}
    for name in Settings.model_fields:
        variable = env_name(name)
        if name in given:
            found[name] = "flag"
        elif os.environ.get(variable):
            found[name] = "environment"
        elif name in SECRET_FIELDS and os.environ.get(f"{variable}_FILE"):
            found[name] = "file"
        elif name in in_file:
            found[name] = f"config file ({path})"
        else:
            found[name] = "default"
    return found
