"""The README's configuration table lists every setting of the model, and the file variant of every secret."""

from __future__ import annotations

import re
from pathlib import Path

from ledger import settings as configuration
from ledger.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    listed = set(re.findall(r"^\| `(LEDGER_[A-Z_]+)` \|", readme, re.MULTILINE))
    expected = {configuration.env_name(name) for name in Settings.model_fields}
    assert expected <= listed, sorted(expected - listed)
    for name in configuration.SECRET_FIELDS:
        assert f"{configuration.env_name(name)}_FILE" in readme
