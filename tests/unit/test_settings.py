"""The settings model: every ``LEDGER_*`` variable typed and bounded, secrets from files, flags over the
environment, where each value came from, and ``ledger config``, which never shows a secret."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger import settings as configuration
from ledger.entrypoints import cli, config_cli
from ledger.settings import DEV_PEPPER, Settings, load, sources

ROOT = Path(__file__).resolve().parents[2]
PEPPER = "f3a9c1d27be84e5a9d0c6b1e2f4a7c8d"
PASSWORD = "hunter2-not-in-any-output"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``LEDGER_*`` variable of the machine running the tests leaks in."""
    import os

    for name in list(os.environ):
        if name.startswith("LEDGER_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("variable", "value", "complaint"),
    [
        ("LEDGER_POOL_SIZE", "0", "greater than 0"),
        ("LEDGER_POOL_SIZE", "many", "valid integer"),
        ("LEDGER_WRITE_QUEUE", "-5", "greater than 0"),
        ("LEDGER_CALL_TIMEOUT", "0", "greater than 0"),
        ("LEDGER_MAX_STREAMS", "1.5", "valid integer"),
        ("LEDGER_MAX_WORKER_WAIT", "soon", "valid number"),
        ("LEDGER_SQLITE_SYNCHRONOUS", "SOMETIMES", "'OFF', 'NORMAL', 'FULL' or 'EXTRA'"),
        ("LEDGER_LOG_LEVEL", "loud", "'debug', 'info'"),
        ("LEDGER_LOG_FORMAT", "xml", "'json' or 'console'"),
        ("LEDGER_SHUTDOWN_DRAIN_SECONDS", "301", "less than or equal to 300"),
        ("LEDGER_LISTEN", "no-port", "pattern"),
        ("LEDGER_METRICS_LISTEN", "9100", "pattern"),
        ("LEDGER_RATE_LIMIT", "fast", "PER_SECOND[:BURST]"),
        ("LEDGER_FAILED_AUTH_LIMIT", "5:0", "burst at least 1"),
        ("LEDGER_PROCESSES", "0", "greater than 0"),
        ("LEDGER_SANDBOX", "perhaps", "valid boolean"),
        ("LEDGER_STORE", "mysql://db", "unsupported store URL"),
        ("LEDGER_READ_MODELS", "redis://x", "unsupported store URL"),
    ],
)
def test_a_bad_value_stops_with_the_variable_named(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, complaint: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as stopped:
        load()
    message = str(stopped.value)
    assert f"{variable}: " in message and complaint in message, message
    assert "Traceback" not in message


def test_defaults_are_the_documented_ones() -> None:
    s = load()
    assert (s.store_url, s.read_models_url, s.pepper, s.synchronous, s.pool_size, s.listen) == (
        "sqlite:///var/ledger.db", "sqlite:///var/read-models.db", DEV_PEPPER, "FULL", 8, "127.0.0.1:50051"
    )  # fmt: skip
    assert (s.shutdown_drain_seconds, s.rate_limit, s.failed_auth_limit, s.sandbox, s.processes) == (
        0.0, "1000:2000", "10:100", False, 1
    )  # fmt: skip
    assert set(sources().values()) == {"default"}


def test_the_old_constructor_names_still_work() -> None:
    s = Settings(store_url="memory://", pepper=b"p", synchronous="OFF", reference_program=False)
    assert (s.store_url, s.pepper, s.synchronous, s.reference_program) == ("memory://", b"p", "OFF", False)


def test_a_secret_from_a_file_drops_the_trailing_newline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "pepper").write_text(PEPPER + "\n")
    (tmp_path / "store").write_text(f"postgresql://ledger:{PASSWORD}@db/ledger\r\n")
    monkeypatch.setenv("LEDGER_IDENTITY_PEPPER_FILE", str(tmp_path / "pepper"))
    monkeypatch.setenv("LEDGER_STORE_FILE", str(tmp_path / "store"))
    s = load()
    assert s.pepper == PEPPER.encode()
    assert s.store_url == f"postgresql://ledger:{PASSWORD}@db/ledger"
    assert sources()["identity_pepper"] == "file" and sources()["store"] == "file"
    assert PEPPER not in repr(s) and PASSWORD not in repr(s) and PASSWORD not in str(s.model_dump())


def test_a_secret_given_twice_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "pepper").write_text(PEPPER)
    monkeypatch.setenv("LEDGER_IDENTITY_PEPPER_FILE", str(tmp_path / "pepper"))
    monkeypatch.setenv("LEDGER_IDENTITY_PEPPER", "another")
    with pytest.raises(
        SystemExit, match="LEDGER_IDENTITY_PEPPER and LEDGER_IDENTITY_PEPPER_FILE are both set"
    ):
        load()


def test_a_missing_or_empty_secret_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LEDGER_IDENTITY_PEPPER_FILE", str(tmp_path / "absent"))
    with pytest.raises(SystemExit, match="LEDGER_IDENTITY_PEPPER_FILE: cannot read"):
        load()
    (tmp_path / "empty").write_text("\n")
    monkeypatch.setenv("LEDGER_IDENTITY_PEPPER_FILE", str(tmp_path / "empty"))
    with pytest.raises(SystemExit, match=r"LEDGER_IDENTITY_PEPPER_FILE: .* is empty"):
        load()


def test_a_bad_secret_is_not_repeated_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGER_STORE", f"mysql://root:{PASSWORD}@db")
    with pytest.raises(SystemExit) as stopped:
        load()
    assert "LEDGER_STORE" in str(stopped.value) and PASSWORD not in str(stopped.value)


def test_a_flag_overrides_the_environment_and_is_named_when_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGER_LISTEN", "0.0.0.0:7000")
    monkeypatch.setenv("LEDGER_SHUTDOWN_DRAIN_SECONDS", "5")
    flags = cli._flags(cli._parser().parse_args(["serve", "--listen", "127.0.0.1:7001"]))
    s = load(flags)
    assert (s.listen, s.shutdown_drain_seconds) == ("127.0.0.1:7001", 5.0)
    assert (sources(flags)["listen"], sources(flags)["shutdown_drain_seconds"]) == ("flag", "environment")
    with pytest.raises(SystemExit, match=r"--drain-seconds: .*less than or equal to 300"):
        load(cli._flags(cli._parser().parse_args(["serve", "--drain-seconds", "900"])))
    with pytest.raises(SystemExit, match=r"--processes: .*greater than 0"):
        load(cli._flags(cli._parser().parse_args(["serve", "--processes", "0"])))


def test_the_development_pepper_is_refused_outside_a_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    assert configuration.dev_pepper_refusal(load({"store": "sqlite:///x/ledger.db"})) is not None
    assert configuration.dev_pepper_refusal(load({"store": "postgresql://db/ledger"})) is not None
    assert configuration.dev_pepper_refusal(load({"store": "memory://"})) is None
    assert configuration.dev_pepper_refusal(load({"store": "sqlite:///x/ledger.db", "sandbox": True})) is None
    monkeypatch.setenv("LEDGER_IDENTITY_PEPPER", PEPPER)
    assert configuration.dev_pepper_refusal(load({"store": "sqlite:///x/ledger.db"})) is None


def _config(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    args = cli._parser().parse_args([*argv])
    code = config_cli.run(args, cli._flags(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_ledger_config_shows_sources_and_never_a_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pepper").write_text(PEPPER + "\n")
    monkeypatch.setenv("LEDGER_IDENTITY_PEPPER_FILE", str(tmp_path / "pepper"))
    monkeypatch.setenv("LEDGER_FEED_NATS", f"nats://feed:{PASSWORD}@nats:4222")
    monkeypatch.setenv("LEDGER_POOL_SIZE", "12")
    code, out, err = _config(capsys, "--store", f"postgresql://ledger:{PASSWORD}@db/ledger", "config")
    assert code == 0
    shown = json.loads(out)
    assert shown["LEDGER_STORE"] == {
        "value": "**********",
        "source": "flag",
        "description": shown["LEDGER_STORE"]["description"],
    }
    assert (shown["LEDGER_IDENTITY_PEPPER"]["value"], shown["LEDGER_IDENTITY_PEPPER"]["source"]) == (
        "**********",
        "file",
    )
    assert (shown["LEDGER_FEED_NATS"]["value"], shown["LEDGER_FEED_NATS"]["source"]) == (
        "**********",
        "environment",
    )
    assert (shown["LEDGER_POOL_SIZE"]["value"], shown["LEDGER_POOL_SIZE"]["source"]) == (12, "environment")
    assert (shown["LEDGER_LISTEN"]["value"], shown["LEDGER_LISTEN"]["source"]) == (
        "127.0.0.1:50051",
        "default",
    )
    assert set(shown) == {configuration.env_name(name) for name in Settings.model_fields}
    code, out_env, err_env = _config(
        capsys, "--store", f"postgresql://ledger:{PASSWORD}@db/ledger", "config", "--format", "env"
    )
    assert code == 0
    assert "LEDGER_POOL_SIZE=12  # environment" in out_env.splitlines()
    assert "LEDGER_IDENTITY_PEPPER='**********'  # file" in out_env.splitlines()
    for text in (out, err, out_env, err_env):
        for secret in (PEPPER, PASSWORD, PEPPER[:6], PASSWORD[:6]):
            assert secret not in text


def test_ledger_config_check(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LEDGER_IDENTITY_PEPPER", PEPPER)
    assert _config(capsys, "config", "--check")[0] == 0
    monkeypatch.setenv("LEDGER_WRITE_QUEUE", "0")
    code, out, err = _config(capsys, "config", "--check")
    assert code == 1 and "LEDGER_WRITE_QUEUE" in err and out == ""
    monkeypatch.delenv("LEDGER_WRITE_QUEUE")
    monkeypatch.delenv("LEDGER_IDENTITY_PEPPER")
    code, _, err = _config(capsys, "config", "--check")
    assert code == 1 and "development pepper" in err
    assert _config(capsys, "config", "--check", "--sandbox")[0] == 0
    assert _config(capsys, "--store", "memory://", "config", "--check")[0] == 0


def test_every_field_has_a_description() -> None:
    assert all(field.description for field in Settings.model_fields.values())


# -- the config file (--config FILE, LEDGER_CONFIG) ----------------------------------------------------------


def _file(tmp_path: Path, text: str, mode: int = 0o600, name: str = "ledger.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    return str(path)


def test_the_config_file_is_read_and_each_layer_above_it_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = _file(
        tmp_path,
        'pool_size = 16\nwrite_queue = 500\ncall_timeout = 12.5\nlisten = "0.0.0.0:6000"\n'
        f'identity_pepper = "{PEPPER}"\nlog_level = "WARNING"\n',
    )
    s = load(config=config)
    assert (s.pool_size, s.write_queue, s.call_timeout, s.listen, s.pepper, s.log_level) == (
        16, 500, 12.5, "0.0.0.0:6000", PEPPER.encode(), "warning"
    )  # fmt: skip
    assert s.max_streams == 16  # not in the file: the default
    # a secret's _FILE over the config file, the environment over both, a flag over everything
    (tmp_path / "pepper").write_text("pepper-from-its-own-file\n")
    monkeypatch.setenv("LEDGER_IDENTITY_PEPPER_FILE", str(tmp_path / "pepper"))
    monkeypatch.setenv("LEDGER_WRITE_QUEUE", "700")
    monkeypatch.setenv("LEDGER_LISTEN", "0.0.0.0:7000")
    flags = cli._flags(cli._parser().parse_args(["--config", config, "serve", "--listen", "127.0.0.1:7001"]))
    s = load(flags, config)
    assert (s.pool_size, s.write_queue, s.listen, s.pepper) == (
        16, 700, "127.0.0.1:7001", b"pepper-from-its-own-file"
    )  # fmt: skip
    found = sources(flags, config)
    assert found["pool_size"] == f"config file ({config})"
    assert (found["write_queue"], found["listen"], found["identity_pepper"]) == (
        "environment",
        "flag",
        "file",
    )
    assert found["max_streams"] == "default"


def test_ledger_config_names_the_file_from_the_environment_and_the_flag_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from_env = _file(tmp_path, "pool_size = 3\n", name="env.toml")
    from_flag = _file(tmp_path, "pool_size = 4\n", name="flag.toml")
    monkeypatch.setenv("LEDGER_CONFIG", from_env)
    assert (load().pool_size, sources()["pool_size"]) == (3, f"config file ({from_env})")
    assert (load(config=from_flag).pool_size, sources(config=from_flag)["pool_size"]) == (
        4, f"config file ({from_flag})"
    )  # fmt: skip
    assert Settings().pool_size == 3  # built directly, the settings read LEDGER_CONFIG's file as well


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ('stor = "memory://"\n', "unknown key 'stor' (did you mean 'store'?)"),
        ("LEDGER_POOL_SIZE = 3\n", "unknown key 'LEDGER_POOL_SIZE' (did you mean 'pool_size'?)"),
        ("colour = 'blue'\n", "unknown key 'colour' (the keys are the settings' names: store, "),
        ("pool_size = = 3\n", "is not valid TOML: "),
        ("[pool_size\n", "is not valid TOML: "),
    ],
)
def test_a_bad_config_file_is_one_line_naming_it(tmp_path: Path, text: str, complaint: str) -> None:
    config = _file(tmp_path, text)
    with pytest.raises(SystemExit) as stopped:
        load(config=config)
    message = str(stopped.value)
    assert message.startswith(f"ledger: configuration: config file {config}") and complaint in message, (
        message
    )
    assert "\n" not in message and "Traceback" not in message


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"config file .*absent\.toml: cannot read it: No such file"):
        load(config=str(tmp_path / "absent.toml"))


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("pool_size = 0\n", "key pool_size: Input should be greater than 0 (got 0)"),
        ('pool_size = "many"\n', "key pool_size: Input should be a valid integer"),
        ('sqlite_synchronous = "SOMETIMES"\n', "key sqlite_synchronous: Input should be 'OFF'"),
        ('rate_limit = "fast"\n', "key rate_limit: give PER_SECOND[:BURST]"),
        ("listen = 50051\n", "key listen: Input should be a valid string"),
    ],
)
def test_a_bad_value_in_the_config_file_names_the_file_and_the_key(
    tmp_path: Path, text: str, complaint: str
) -> None:
    config = _file(tmp_path, text)
    with pytest.raises(SystemExit) as stopped:
        load(config=config)
    assert f"config file {config}, {complaint}" in str(stopped.value), str(stopped.value)


def test_a_bad_secret_in_the_config_file_is_not_repeated(tmp_path: Path) -> None:
    config = _file(tmp_path, f'store = "mysql://root:{PASSWORD}@db"\n')
    with pytest.raises(SystemExit) as stopped:
        load(config=config)
    assert f"config file {config}, key store: unsupported store URL" in str(stopped.value)
    assert PASSWORD not in str(stopped.value)


def test_a_config_file_holding_a_secret_must_be_private(tmp_path: Path) -> None:
    shared = _file(tmp_path, f'identity_pepper = "{PEPPER}"\n', mode=0o640)
    with pytest.raises(SystemExit) as stopped:
        load(config=shared)
    message = str(stopped.value)
    assert "holds a secret (identity_pepper) but is readable by group or others (mode 0640)" in message
    assert PEPPER not in message
    assert load({"sandbox": True}, shared).pepper == PEPPER.encode()  # a throwaway store may
    private = _file(tmp_path, f'identity_pepper = "{PEPPER}"\n', name="private.toml")
    assert load(config=private).pepper == PEPPER.encode()
    with_password = _file(tmp_path, f'store = "postgresql://ledger:{PASSWORD}@db/ledger"\n', 0o644, "pg.toml")
    with pytest.raises(SystemExit, match=r"holds a secret \(store\)"):
        load(config=with_password)
    plain = _file(
        tmp_path, 'store = "sqlite:///var/ledger.db"\nfeed_nats = "nats://nats:4222"\n', 0o644, "p.toml"
    )
    assert load(config=plain).store_url == "sqlite:///var/ledger.db"  # no password in it: no secret


def test_ledger_config_shows_the_config_file_as_a_source_and_masks_its_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _file(
        tmp_path,
        f'store = "postgresql://ledger:{PASSWORD}@db/ledger"\nidentity_pepper = "{PEPPER}"\npool_size = 12\n',
    )
    code, out, err = _config(capsys, "--config", config, "config")
    assert code == 0, err
    shown = json.loads(out)
    where = f"config file ({config})"
    assert (shown["LEDGER_POOL_SIZE"]["value"], shown["LEDGER_POOL_SIZE"]["source"]) == (12, where)
    assert (shown["LEDGER_STORE"]["value"], shown["LEDGER_STORE"]["source"]) == ("**********", where)
    assert (shown["LEDGER_IDENTITY_PEPPER"]["value"], shown["LEDGER_IDENTITY_PEPPER"]["source"]) == (
        "**********", where
    )  # fmt: skip
    assert shown["LEDGER_LISTEN"]["source"] == "default"
    code, out_env, err_env = _config(capsys, "--config", config, "config", "--format", "env")
    assert f"LEDGER_POOL_SIZE=12  # {where}" in out_env.splitlines()
    for text in (out, err, out_env, err_env):
        for secret in (PEPPER, PASSWORD, PEPPER[:6], PASSWORD[:6]):
            assert secret not in text
    (tmp_path / "ledger.toml").write_text("pool_size = 0\n")
    code, out, err = _config(capsys, "--config", config, "config", "--check")
    assert code == 1 and "key pool_size" in err and out == ""
