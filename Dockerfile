# syntax=docker/dockerfile:1
# The llm-gateway image: a virtual environment built from uv.lock, copied onto a slim Python base, run as a non-root
# user on a read-only root filesystem (only /data and /tmp are written). tests/deploy/test_dockerfile.py lints this
# file with hadolint and runs its `uv sync` steps as they are written here.

FROM python:3.11-slim-bookworm AS build
# Extras to install: postgres (psycopg), otel (OpenTelemetry export), semantic (numpy, onnxruntime, the model).
ARG EXTRAS="--extra postgres --extra otel"
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/opt/llm-gateway
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
# Dependencies first, in their own layer: a change to the source does not download them again.
COPY pyproject.toml uv.lock README.md LICENSE ./
RUN uv sync --locked --no-dev --no-install-project --no-editable $EXTRAS
COPY src ./src
RUN uv sync --locked --no-dev --no-editable $EXTRAS

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --user-group --no-log-init --no-create-home --shell /usr/sbin/nologin llm-gateway \
    && mkdir /data && chown 10001:10001 /data
COPY --from=build /opt/llm-gateway /opt/llm-gateway
ENV PATH=/opt/llm-gateway/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# The default SQLite file (llm-gateway.db) is made in the working directory: the volume.
WORKDIR /data
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=2)"]
ENTRYPOINT ["llm-gateway"]
CMD ["--host", "0.0.0.0"]
