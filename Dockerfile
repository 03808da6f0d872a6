# syntax=docker/dockerfile:1
#
# The loyalty ledger on its embedded store, serving gRPC on port $PORT (50051) with its data in the volume /data,
# as the unprivileged user ledger (uid 10001), which owns /data.
#
#   docker build -t loyalty-ledger .
#   docker run -p 50051:50051 -v ledger-data:/data -e LEDGER_IDENTITY_PEPPER_FILE=/run/secrets/ledger_pepper \
#       -v "$PWD/ledger_pepper:/run/secrets/ledger_pepper:ro" loyalty-ledger    # a secret pepper: `serve` refuses the default
#   docker run -p 50051:50051 -e LEDGER_SANDBOX=1 loyalty-ledger                  # a throwaway try-out, public dev pepper
#   docker build --build-arg PORT=6000 . && docker run -p 6000:6000 ...   # one setting moves server and health check
#
# Stop it with `docker stop -t 30`: SIGTERM finishes the calls in flight (docs/operations.md, at most 20 s).
# The base image is pinned to a patch release; pin it by digest too (PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:...)
# for reproducible builds.
#
# Optional extras: docker build --build-arg EXTRAS=postgres,nats . adds the PostgreSQL store's driver and the
# NATS JetStream event feed; then run it with -e LEDGER_STORE=postgresql://... (as many replicas as needed)
# and -e LEDGER_FEED_NATS=nats://.... The extra otel adds OpenTelemetry traces, on with
# -e OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4317 (docs/operations.md, Traces).

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---- build: generate loyalty/ from proto/, build the wheel, install it into /opt/ledger ----------------------
FROM ${PYTHON_IMAGE} AS build
ARG EXTRAS=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1

# Code generators, in a venv of their own.
RUN python -m venv /opt/tools \
 && /opt/tools/bin/pip install "grpcio-tools>=1.85.1" "mypy-protobuf>=5.1" "setuptools>=68" wheel

WORKDIR /src
COPY . .

# A wheel holding ledger, projections, policies (with its YAML documents), clients and the generated loyalty
# package (setup.py runs the same generation step as `make gen`).
RUN /opt/tools/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
 && test -f loyalty/v1/__init__.py

# The runtime gets the grpcio and protobuf versions the code was generated with (or newer within what the
# generated code accepts): pin them to the generator's.
RUN /opt/tools/bin/pip freeze | grep -iE '^(grpcio|protobuf)==' > /tmp/constraints.txt \
 && python -m venv /opt/ledger \
 && whl="$(ls /wheels/*.whl)" \
 && if [ -n "$EXTRAS" ]; then spec="${whl}[${EXTRAS}]"; else spec="$whl"; fi \
 && /opt/ledger/bin/pip install --constraint /tmp/constraints.txt "$spec" \
 && /opt/ledger/bin/python -c "import ledger, policies, projections, loyalty.v1"

# ---- runtime ----------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG EXTRAS=""
# The one setting of the port: the server listens on it, the health check asks it, the image exposes it.
ARG PORT=50051

# psycopg (the postgres extra) needs the client library at run time.
RUN case ",${EXTRAS}," in \
      *,postgres,*) apt-get update && apt-get install -y --no-install-recommends libpq5 \
                    && rm -rf /var/lib/apt/lists/* ;; \
    esac \
 && groupadd --system --gid 10001 ledger \
 && useradd --system --uid 10001 --gid ledger --home-dir /data --shell /usr/sbin/nologin ledger \
 && mkdir -p /data \
 && chown ledger:ledger /data

COPY --from=build /opt/ledger /opt/ledger

ENV PATH=/opt/ledger/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LEDGER_STORE=sqlite:////data/ledger.db \
    LEDGER_LISTEN=0.0.0.0:${PORT}

USER ledger
WORKDIR /data
VOLUME /data
EXPOSE ${PORT}
STOPSIGNAL SIGTERM

# Standard gRPC health check against the server in this container: `ledger health` asks 127.0.0.1 on the port
# of LEDGER_LISTEN, the address `ledger serve` listens on.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["ledger", "health"]

ENTRYPOINT ["ledger"]
CMD ["serve"]
