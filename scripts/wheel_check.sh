#!/usr/bin/env bash
# Build the wheel from the working tree and check that it runs on its own: installed into a fresh virtual
# environment outside the repository, `ledger serve` starts on a temporary SQLite store, `ledger health` says
# SERVING, and SIGTERM stops it with exit code 0; then `ledger export-audit` writes an evidence bundle of that store
# and `ledger verify-bundle` checks it with no store (its checker importing nothing that needs one), and fails it
# once a byte is altered. Used by `make wheel-check` (part of `make test`).
#
#   PYTHON=.venv/bin/python scripts/wheel_check.sh
#
# PYTHON builds the wheel without build isolation (it needs setuptools, grpcio-tools and mypy-protobuf, as the
# dev environment has), so the build needs no network; the fresh environment gets the runtime dependencies
# through pip as configured (its cache, or the package index). VENV_PYTHON (default python3) creates it.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
VENV_PYTHON="${VENV_PYTHON:-python3}"
START_SECONDS="${START_SECONDS:-60}"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/ledger-wheel-check.XXXXXX")"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then kill -KILL "$server_pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

echo "wheel-check: copying the tree (tracked and untracked files, without what .gitignore excludes)"
mkdir -p "$tmp/src"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
        | tar --null -T - -cf - | tar -xf - -C "$tmp/src"
else
    tar --exclude=./.venv --exclude=./loyalty --exclude=./build --exclude=./var -cf - . | tar -xf - -C "$tmp/src"
fi

echo "wheel-check: building the wheel (generated loyalty/ included by setup.py)"
"$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation \
    --wheel-dir "$tmp/dist" "$tmp/src" 2>&1 | grep -v '^WARNING: Location' || true
wheel="$(ls "$tmp"/dist/loyalty_ledger-*.whl)"
"$PYTHON" - "$wheel" <<'PY'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
needed = ["loyalty/v1/ledger_pb2.py", "loyalty/v1/ledger_pb2_grpc.py", "loyalty/v1/ledger_pb2.pyi",
          "policies/little_sprout.yaml", "ledger/entrypoints/cli.py"]
missing = [n for n in needed if n not in names]
if missing:
    sys.exit(f"wheel-check: the wheel lacks {missing}")
print(f"wheel-check: {sys.argv[1].rsplit('/', 1)[-1]} has {len(names)} files, the generated code among them")
PY

echo "wheel-check: installing it into a fresh virtual environment in $tmp/venv"
"$VENV_PYTHON" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel" 2>&1 | grep -v '^WARNING: Location' || true
ledger="$tmp/venv/bin/ledger"
test -x "$ledger"

# Run from the temporary folder with a clean PYTHONPATH: only the installed package can be imported.
cd "$tmp"
location="$(env -u PYTHONPATH "$tmp/venv/bin/python" -c 'import ledger.entrypoints.cli as c, loyalty.v1.ledger_pb2 as p; print(c.__file__, p.__file__)')"
case "$location" in
    "$tmp/venv/"*" $tmp/venv/"*) ;;
    *) echo "wheel-check: imported from outside the fresh environment: $location" >&2; exit 1 ;;
esac

echo "wheel-check: ledger serve on a temporary SQLite store"
mkdir -p "$tmp/data"
# A secret identity pepper in a file, as a deployment gives one (`serve` refuses the public default).
(umask 077 && "$tmp/venv/bin/python" -c 'import secrets; print(secrets.token_hex(32))' >"$tmp/pepper")
env -u PYTHONPATH LEDGER_LOG_FORMAT=json LEDGER_IDENTITY_PEPPER_FILE="$tmp/pepper" "$ledger" --store "sqlite:///$tmp/data/ledger.db" serve \
    --listen 127.0.0.1:0 --port-file "$tmp/port" >"$tmp/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 $((START_SECONDS * 10))); do
    [ -s "$tmp/port" ] && break
    if ! kill -0 "$server_pid" 2>/dev/null; then echo "wheel-check: ledger serve exited:" >&2; cat "$tmp/serve.log" >&2; exit 1; fi
    sleep 0.1
done
if [ ! -s "$tmp/port" ]; then echo "wheel-check: no port file after ${START_SECONDS} s:" >&2; cat "$tmp/serve.log" >&2; exit 1; fi
port="$(cat "$tmp/port")"
if ! env -u PYTHONPATH "$ledger" health --target "127.0.0.1:$port"; then cat "$tmp/serve.log" >&2; exit 1; fi
test -s "$tmp/data/admin.key"

kill -TERM "$server_pid"
rc=0
wait "$server_pid" || rc=$?
server_pid=""
if [ "$rc" -ne 0 ]; then echo "wheel-check: ledger serve exited with $rc after SIGTERM:" >&2; cat "$tmp/serve.log" >&2; exit 1; fi
echo "wheel-check: ledger export-audit, then ledger verify-bundle with no store, and a bundle altered by one byte"
env -u PYTHONPATH "$ledger" --store "sqlite:///$tmp/data/ledger.db" export-audit --program little_sprout "$tmp/bundle" >/dev/null
env -u PYTHONPATH -u LEDGER_STORE "$tmp/venv/bin/python" - <<'PY'
import sys
import ledger.evidence.check, ledger.evidence.signature  # noqa: E401
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("psycopg", "psycopg_pool", "kurrentdbclient", "sqlite3")
                or m.startswith(("ledger.adapters", "ledger.application", "ledger.bootstrap")))
if loaded:
    sys.exit(f"wheel-check: the bundle checker imports what needs a store: {loaded}")
PY
(cd "$tmp/bundle" && env -u PYTHONPATH -u LEDGER_STORE "$ledger" verify-bundle . >/dev/null)
sed -i '1s/"type"/"tYpe"/' "$tmp/bundle/program.jsonl"
if env -u PYTHONPATH -u LEDGER_STORE "$ledger" verify-bundle "$tmp/bundle" >"$tmp/verify.out"; then
    echo "wheel-check: an altered bundle verified:" >&2; cat "$tmp/verify.out" >&2; exit 1
fi
grep -q "FAIL: file program.jsonl" "$tmp/verify.out"
echo "wheel-check: OK (installed wheel served, answered SERVING, stopped cleanly; a bundle round trip verified)"
