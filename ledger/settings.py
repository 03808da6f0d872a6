"""Configuration: one model of every ``LEDGER_*`` setting, read from the command line, the environment, files
and an optional config file.

:class:`Settings` is a pydantic-settings model: each field is the environment variable ``LEDGER_<FIELD>`` (the
store is ``LEDGER_STORE``), typed and bounded, with its default and a description (``ledger config`` prints
them with where each value came from; the README's configuration table lists them). Each secret
(:data:`SECRET_FIELDS`) may instead be given as ``LEDGER_<FIELD>_FILE``, the path of a file holding the value (a
trailing newline is dropped), as Docker and Kubernetes mount secrets; giving both is an error. Secrets are
``SecretStr`` / ``SecretBytes``: they print as ``**********``.

The config file (``--config FILE`` for every command, or ``LEDGER_CONFIG``) is TOML whose keys are the field
names (``store = "sqlite:///var/ledger.db"``, ``pool_size = 16``), read by pydantic-settings' own TOML source. It
is the lowest layer but the default, so a deployment's file holds the defaults of its site and the environment
still wins. Precedence, highest first: a command-line flag, the environment (``LEDGER_<FIELD>``), a secret's
``LEDGER_<FIELD>_FILE``, the config file, the default. A key the model does not know is an error naming it (and
the closest name); so is a named file that is missing, unreadable or not TOML. A config file may hold secrets,
but then it must be readable by its owner alone (no group or other read bit): otherwise every command refuses
it, unless the settings say ``sandbox`` (a throwaway store).

:func:`load` turns any mistake into ``SystemExit`` with a message naming the variable (or flag, or the config
file and its key) and the problem.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import stat
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    PositiveFloat,
    PositiveInt,
    SecretBytes,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_STORE = "sqlite:///var/ledger.db"
DEFAULT_READ_MODELS = "sqlite:///var/read-models.db"
DEFAULT_LISTEN = "127.0.0.1:50051"
PREFIX = "LEDGER_"
CONFIG_VARIABLE = "LEDGER_CONFIG"
"""The environment variable naming the config file (``--config`` wins over it)."""
KNOWN_SCHEMES = ("postgresql", "postgres", "kurrentdb", "esdb", "kdb")

DEV_PEPPER = b"little-sprout-dev-pepper"
"""The identity pepper's default: public, so fit only for a sandbox (``ledger serve`` refuses it elsewhere)."""

SECRET_FIELDS = ("store", "read_models", "identity_pepper", "feed_nats")
"""Fields that may carry a secret (a pepper, a password in a URL): never printed, also read from ``*_FILE``."""

FLAGS: Mapping[str, str] = {
    "store": "--store", "listen": "--listen", "shutdown_drain_seconds": "--drain-seconds",
    "metrics_listen": "--metrics-listen", "feed_nats": "--feed-nats", "tls_cert": "--tls-cert", "tls_key": "--tls-key",
    "tls_client_ca": "--tls-client-ca", "rate_limit": "--rate-limit", "failed_auth_limit": "--failed-auth-limit",
    "admin_key_file": "--admin-key-file", "processes": "--processes", "reference_program": "--no-reference-program",
    "sandbox": "--sandbox", "http_listen": "--http-listen", "http_cors_origins": "--http-cors-origins",
    "webhooks": "--webhooks",
}  # fmt: skip
"""The command-line flag of each field that has one (``ledger serve``; ``--store`` for every command)."""


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the variable or flag."""


class Settings(BaseSettings):
    """Every setting of the server and the ``ledger`` commands (environment variable: ``LEDGER_`` + the name)."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_ignore_empty=True, extra="forbid", frozen=True, validate_default=True,
        case_sensitive=False,
    )  # fmt: skip

    store: SecretStr = Field(
        SecretStr(DEFAULT_STORE),
        description="event store URL: sqlite:///path, postgresql://user:password@host:port/db, "
        "kurrentdb://host:2113?Tls=false or memory:// (a secret: a PostgreSQL URL may hold a password)",
    )
    read_models: SecretStr = Field(
        SecretStr(DEFAULT_READ_MODELS),
        description="where a KurrentDB store keeps its read models: sqlite:///path or postgresql://...",
    )
    identity_pepper: SecretBytes = Field(
        SecretBytes(DEV_PEPPER),
        description="secret mixed into every identity digest (card numbers, phones); the default is public: "
        "`ledger serve` refuses it on a durable store without --sandbox. Never change it for an existing store",
    )
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = Field(
        "FULL", description="SQLite durability (PRAGMA synchronous); FULL survives a power cut"
    )
    pool_size: PositiveInt = Field(8, description="PostgreSQL connections per server process")
    write_queue: PositiveInt = Field(
        1_000,
        description="requests that may wait for the writer; one more: RESOURCE_EXHAUSTED (WRITE_QUEUE_FULL)",
    )
    call_timeout: PositiveFloat = Field(
        30.0, description="seconds a call may take at most (a client's shorter deadline wins)"
    )
    max_streams: PositiveInt = Field(
        16, description="ReplayMember/VerifyProgram streams open at once per process"
    )
    max_streams_per_key: PositiveInt = Field(4, description="streams open at once per API key")
    max_worker_wait: PositiveFloat = Field(
        2.0,
        description="seconds a call may wait for a free worker thread; longer: RESOURCE_EXHAUSTED (SERVER_BUSY)",
    )
    listen: str = Field(
        DEFAULT_LISTEN, pattern=r"^.+:[0-9]{1,5}$",
        description="host:port `ledger serve` listens on (port 0: any free one); `ledger health` asks its port",
    )  # fmt: skip
    shutdown_drain_seconds: float = Field(
        0.0, ge=0, le=300,
        description="on SIGTERM, seconds of answering health NOT_SERVING while still taking calls, before closing",
    )  # fmt: skip
    metrics_listen: str | None = Field(
        None, pattern=r"^.+:[0-9]{1,5}$", description="host:port to serve Prometheus metrics on (unset: none)"
    )
    http_listen: str | None = Field(
        None, pattern=r"^.+:[0-9]{1,5}$",
        description="host:port to serve the API as JSON over HTTP on (the Connect protocol; unset: none)",
    )  # fmt: skip
    http_read_seconds: PositiveFloat = Field(
        10.0, description="seconds an HTTP request (line, headers, body) may take to arrive; an idle connection is "
        "closed after as long",
    )
    http_max_connections: PositiveInt = Field(
        64, description="HTTP connections served at once; one more is answered 429 (resource_exhausted) and closed"
    )
    http_cors_origins: str | None = Field(
        None,
        description="comma-separated origins (https://mall.example.com) whose web pages may call the HTTP API; "
        "'*' any; unset: none",
    )
    feed_nats: SecretStr | None = Field(
        None,
        description="NATS JetStream URL to publish the event feed to (unset: no feed; may hold credentials)",
    )
    webhooks: bool = Field(
        False,
        description="deliver the webhook subscriptions (`ledger webhooks`) from this server, one replica at a time",
    )
    webhook_timeout: PositiveFloat = Field(
        10.0, le=120, description="seconds a webhook delivery may take to connect, and for each read and write"
    )
    webhook_max_attempts: int = Field(
        10, ge=1, le=50, description="attempts per event before it goes on the subscription's dead-letter list"
    )
    tls_cert: Path | None = Field(
        None, description="PEM certificate (chain) to serve TLS with; needs LEDGER_TLS_KEY"
    )
    tls_key: Path | None = Field(None, description="PEM private key of LEDGER_TLS_CERT")
    tls_client_ca: Path | None = Field(
        None, description="PEM CA whose client certificates are required (mutual TLS)"
    )
    rate_limit: str = Field(
        "1000:2000",
        description="calls per second of one API key per process, PER_SECOND[:BURST]; 0: no limit",
    )
    failed_auth_limit: str = Field(
        "10:100",
        description="failed key checks per second of one peer address, PER_SECOND[:BURST]; 0: no limit",
    )
    log_format: Literal["json", "console"] | None = Field(
        None, description="json or console (unset: console on a terminal, JSON otherwise)"
    )
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        "info", description="lowest level logged"
    )
    admin_key_file: Path | None = Field(
        None,
        description="where a fresh store's first admin key is written (unset: admin.key beside a SQLite store)",
    )
    sandbox: bool = Field(
        False,
        description="a throwaway store: allows the public development identity pepper (warned in the log)",
    )
    processes: PositiveInt = Field(1, description="server processes sharing the port and the store")
    reference_program: bool = Field(
        True, description="create the reference program 'little_sprout' when missing"
    )

    @field_validator("sqlite_synchronous", "log_format", "log_level", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            return text.upper() if text.upper() in ("OFF", "NORMAL", "FULL", "EXTRA") else text.lower()
        return value

    @field_validator("http_cors_origins")
    @classmethod
    def _origins(cls, value: str | None) -> str | None:
        if value is None:
            return None
        for origin in (o.strip() for o in value.split(",")):
            if origin != "*" and not re.fullmatch(r"https?://[^/\s?#]+", origin):
                raise ValueError(f"{origin!r} is not an origin: give scheme://host[:port] without a path, or '*'")
        return value

    @property
    def cors_origins(self) -> tuple[str, ...]:
        return tuple(o.strip() for o in self.http_cors_origins.split(",")) if self.http_cors_origins else ()

    @field_validator("store", "read_models")
    @classmethod
    def _store_url(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        scheme = url.split(":", 1)[0].lower()
        known = url == "memory://" or url.startswith("sqlite:///") or scheme in KNOWN_SCHEMES
        if not known:  # the URL itself is not repeated: it may hold a password
            raise ValueError(f"unsupported store URL: {STORE_FORMS}")
        return value

    @field_validator("rate_limit", "failed_auth_limit")
    @classmethod
    def _limit(cls, value: str) -> str:
        rate_text, _, burst_text = value.strip().partition(":")
        try:
            rate = float(rate_text)
            burst = float(burst_text) if burst_text else max(1.0, 2 * rate)
        except ValueError:
            raise ValueError("give PER_SECOND[:BURST], e.g. 100:200, or 0 for no limit") from None
        if not (math.isfinite(rate) and math.isfinite(burst)) or rate < 0 or (rate > 0 and burst < 1):
            raise ValueError("the rate must be 0 or more and the burst at least 1")
        return value.strip()

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:  # fmt: skip
        path = config_path(_CONFIG.get())
        layers = (init_settings, env_settings, SecretFiles(settings_cls))  # highest first
        return layers if path is None else (*layers, ConfigFile(settings_cls, path))

    def __init__(self, **values: Any) -> None:
        # The names other code has always passed: store_url, pepper, synchronous.
        for old, new in (
            ("store_url", "store"),
            ("pepper", "identity_pepper"),
            ("synchronous", "sqlite_synchronous"),
        ):
            if old in values:
                values[new] = values.pop(old)
        super().__init__(**values)

    # -- what the rest of the ledger reads -------------------------------------------------------------------------

    @property
    def store_url(self) -> str:
        return self.store.get_secret_value()

    @property
    def read_models_url(self) -> str:
        return self.read_models.get_secret_value()

    @property
    def pepper(self) -> bytes:
        return self.identity_pepper.get_secret_value()

    @property
    def synchronous(self) -> str:
        return self.sqlite_synchronous

    @property
    def dev_pepper(self) -> bool:
        """The identity pepper is the public default."""
        return self.pepper == DEV_PEPPER

    @classmethod
    def from_env(cls, store_url: str | None = None) -> Settings:
        """The environment's settings (``store_url``, when given, as ``--store``); exits on a mistake."""
        return load({"store": store_url} if store_url else {})

    def without_reference_program(self) -> Settings:
        return self.model_copy(update={"reference_program": False})


def env_name(field: str) -> str:
    return f"{PREFIX}{field.upper()}"


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


_CONFIG: ContextVar[str | None] = ContextVar("ledger_config_file", default=None)
"""The ``--config`` path :func:`load` was given, while it builds the settings (None: ``LEDGER_CONFIG`` decides)."""


def config_path(flag: str | None = None) -> str | None:
    """The config file to read: ``--config``'s path, else ``LEDGER_CONFIG``'s, else None (no file)."""
    path = (flag or os.environ.get(CONFIG_VARIABLE, "")).strip()
    return path or None


@contextmanager
def _config_flag(path: str | None) -> Iterator[None]:
    token = _CONFIG.set(path)
    try:
        yield
    finally:
        _CONFIG.reset(token)


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
    config file (``config``: ``--config``'s path; None: ``LEDGER_CONFIG``'s, if set).

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


def dev_pepper_refusal(settings: Settings) -> str | None:
    """Why ``ledger serve`` must not start with these settings' pepper, or None when it may."""
    if not settings.dev_pepper or settings.sandbox or store_kind(settings.store_url) == "memory":
        return None
    return (
        "LEDGER_IDENTITY_PEPPER is the public development pepper, so anyone could link identity digests to card "
        "numbers and phones. Set a secret one before the store's first start (e.g. `python -c 'import secrets; "
        "print(secrets.token_hex(32))'` into LEDGER_IDENTITY_PEPPER or a file named by LEDGER_IDENTITY_PEPPER_FILE), "
        "or pass --sandbox (LEDGER_SANDBOX=1) for a throwaway store"
    )


STORE_FORMS = "use sqlite:///path, postgresql://..., kurrentdb://... or memory://"


def store_kind(store_url: str) -> str:
    """``sqlite``, ``postgresql``, ``kurrentdb`` or ``memory``; exits with a clear message for anything else."""
    scheme = store_url.split(":", 1)[0].lower()
    if store_url == "memory://":
        return "memory"
    if scheme == "sqlite" and store_url.startswith("sqlite:///"):
        return "sqlite"
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    if scheme in ("kurrentdb", "esdb", "kdb"):
        return "kurrentdb"
    raise SystemExit(f"unsupported LEDGER_STORE: {STORE_FORMS}")


def sqlite_path(store_url: str) -> str:
    if store_kind(store_url) != "sqlite":
        raise SystemExit(f"{store_url!r} is not a sqlite:///path store")
    return store_url.removeprefix("sqlite:///")
