"""Build hook: generate the gRPC package ``loyalty/`` from ``proto/`` before setuptools collects the packages.

Everything else of the build is in ``pyproject.toml``. So ``pip install .``, ``pip wheel .`` and a build from
the sdist (which carries ``proto/``, the generator script and the generated code) all ship ``loyalty/`` without
a manual ``make gen``; the generator (grpcio-tools, mypy-protobuf) is a build requirement. The same script as
``make gen`` is used, so it skips the work when ``loyalty/`` is up to date.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent

if list((ROOT / "proto" / "loyalty" / "v1").glob("*.proto")):
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "gen_proto.sh")],
        env={**os.environ, "PYTHON": sys.executable}, cwd=ROOT, check=True, stdout=sys.stderr,
    )  # fmt: skip
elif not (ROOT / "loyalty" / "v1" / "__init__.py").exists():
    raise SystemExit("neither proto/loyalty/v1/*.proto nor a generated loyalty/ package: nothing to build from")

setup()
