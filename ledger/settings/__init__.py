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

The model and what it knows of stores is :mod:`ledger.settings.model`; the layers under the environment (the
secrets' files, the config file) and :func:`load` are :mod:`ledger.settings.layers`.
"""

from ledger.settings.layers import (
    ConfigFile,
    SecretFiles,
    config_path,
    exposed_secrets,
    load,
    read_config,
    sources,
)
from ledger.settings.model import (
    CONFIG_VARIABLE,
    DEFAULT_LISTEN,
    DEFAULT_READ_MODELS,
    DEFAULT_STORE,
    DEV_PEPPER,
    FLAGS,
    KNOWN_SCHEMES,
    PREFIX,
    SECRET_FIELDS,
    STORE_FORMS,
    Settings,
    SettingsError,
    dev_pepper_refusal,
    env_name,
    sqlite_path,
    store_kind,
)

__all__ = [
    "CONFIG_VARIABLE",
    "DEFAULT_LISTEN",
    "DEFAULT_READ_MODELS",
    "DEFAULT_STORE",
    "DEV_PEPPER",
    "FLAGS",
    "KNOWN_SCHEMES",
    "PREFIX",
    "SECRET_FIELDS",
    "STORE_FORMS",
    "ConfigFile",
    "SecretFiles",
    "Settings",
    "SettingsError",
    "config_path",
    "dev_pepper_refusal",
    "env_name",
    "exposed_secrets",
    "load",
    "read_config",
    "sources",
    "sqlite_path",
    "store_kind",
]
