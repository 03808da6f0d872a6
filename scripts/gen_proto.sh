#!/usr/bin/env bash
# Generate the Python package `loyalty` (messages, gRPC stubs and their .pyi type stubs) from proto/.
# Used by `make gen` and by the Dockerfile's build stage, so both produce the same code.
#
#   PYTHON=.venv/bin/python scripts/gen_proto.sh
#
# The output (loyalty/ at the repository root) is never committed. Regeneration is skipped when the
# proto files, their names and the generator versions are unchanged since the last run.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
OUT=loyalty
STAMP="$OUT/.gen-stamp"

shopt -s nullglob
protos=(proto/loyalty/v1/*.proto)
shopt -u nullglob

if [ "${#protos[@]}" -eq 0 ]; then
    echo "gen: no .proto files under proto/loyalty/v1/ yet; nothing to generate"
    exit 0
fi

tools="$("$PYTHON" - <<'PY'
from importlib.metadata import version
print("grpcio-tools", version("grpcio-tools"), "mypy-protobuf", version("mypy-protobuf"))
PY
)"
fingerprint="$( { echo "$tools"; for f in "${protos[@]}"; do echo "== $f"; cat "$f"; done; } | sha256sum | cut -d' ' -f1)"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$fingerprint" ]; then
    echo "gen: loyalty/ is up to date"
    exit 0
fi

# protoc finds its plugins (protoc-gen-mypy, protoc-gen-mypy_grpc) on PATH: put the interpreter's scripts first.
scripts_dir="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
export PATH="$scripts_dir:$PATH"

echo "gen: compiling ${#protos[@]} proto file(s) into loyalty/"
rm -rf "$OUT"
"$PYTHON" -m grpc_tools.protoc -I proto \
    --python_out=. --grpc_python_out=. --mypy_out=. --mypy_grpc_out=. \
    "${protos[@]}"
touch "$OUT/__init__.py" "$OUT/v1/__init__.py" "$OUT/py.typed"
echo "$fingerprint" > "$STAMP"
