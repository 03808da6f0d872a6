"""The settings model: every ``LEDGER_*`` setting typed, bounded and described, with what it tells of the store
(its kind, a SQLite path) and whether its identity pepper may serve."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    PositiveFloat,
    PositiveInt,
    SecretBytes,
    SecretStr,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
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
        from ledger.settings.layers import CONFIG, ConfigFile, SecretFiles, config_path

        path = config_path(CONFIG.get())
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
        from ledger.settings.layers import load

        return load({"store": store_url} if store_url else {})

    def without_reference_program(self) -> Settings:
        return self.model_copy(update={"reference_program": False})


def env_name(field: str) -> str:
    """The environment variable of ``field``: ``LEDGER_`` and its name in capitals."""
    return f"{PREFIX}{field.upper()}"


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
