"""The Dockerfile's promises, read from the file (no Docker needed): a pinned base image, the port in one
setting for the server, the health check and EXPOSE, and an unprivileged user owning the data volume."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def instructions() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return [i.strip() for i in re.sub(r"\\\n", " ", "\n".join(lines)).splitlines() if i.strip()]


def test_the_base_image_is_pinned_to_a_patch_release() -> None:
    [image] = [i for i in instructions() if i.startswith("ARG PYTHON_IMAGE=")]
    assert re.fullmatch(r"ARG PYTHON_IMAGE=python:\d+\.\d+\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", image), image


def test_the_port_is_one_setting() -> None:
    found = instructions()
    assert [i for i in found if re.search(r"\b50051\b", i)] == ["ARG PORT=50051"]
    assert "EXPOSE ${PORT}" in found
    assert any("LEDGER_LISTEN=0.0.0.0:${PORT}" in i for i in found if i.startswith("ENV "))
    [health] = [i for i in found if i.startswith("HEALTHCHECK ")]
    assert health.endswith('CMD ["ledger", "health"]')
    assert found[-2:] == ['ENTRYPOINT ["ledger"]', 'CMD ["serve"]']


def test_it_runs_unprivileged_with_a_writable_data_volume() -> None:
    found = instructions()
    runtime = found[max(n for n, i in enumerate(found) if i.startswith("FROM ")):]
    [user] = [i for i in runtime if i.startswith("USER ")]
    assert user == "USER ledger"
    assert any("useradd --system --uid 10001" in i and "chown ledger:ledger /data" in i for i in runtime)
    assert "VOLUME /data" in runtime and "WORKDIR /data" in runtime
    assert runtime.index(user) < runtime.index("VOLUME /data")
    assert any("LEDGER_STORE=sqlite:////data/ledger.db" in i for i in runtime)
