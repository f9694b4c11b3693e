# One image for every service of docker-compose.yml: the Dagster code server, webserver and
# daemon, and the recommendation service. Dependencies come from uv.lock, exactly.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never \
    APP_DIR=/opt/dagster/app \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    MUSIC_PLATFORM_DATA_DIR=/data
ENV PATH=/opt/venv/bin:$PATH

RUN pip install --no-cache-dir "uv==0.13.9" \
 && useradd --create-home --uid 1000 app

WORKDIR $APP_DIR

# Third-party packages first: this layer is reused until pyproject.toml or uv.lock change.
# rectools-lightfm and implicit publish no wheel for every platform, so they compile here; the
# compiler is removed again in the same layer to keep the image small.
COPY pyproject.toml uv.lock README.md ./
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && uv sync --frozen --no-dev --no-install-project \
 && apt-get purge -y --auto-remove build-essential \
 && rm -rf /var/lib/apt/lists/*

COPY music_platform ./music_platform
COPY dbt ./dbt
COPY deploy ./deploy
RUN uv sync --frozen --no-dev

# The dbt manifest is built into the image (`dbt parse` needs no warehouse connection), so
# the code server loads the dbt assets without writing to its own files at start-up.
# It goes where the code location looks for the target's manifest (dbt/target/<target>/).
RUN cd dbt && MUSIC_PLATFORM_TARGET=postgres dbt parse --profiles-dir . --target postgres \
    --target-path target/postgres --quiet \
 && test -f target/postgres/manifest.json

RUN mkdir -p "$DAGSTER_HOME" /data \
 && cp deploy/dagster.yaml "$DAGSTER_HOME/dagster.yaml" \
 && chown -R app:app "$DAGSTER_HOME" /data "$APP_DIR/dbt"

USER app
EXPOSE 3000 4000 8000
CMD ["music-platform", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
