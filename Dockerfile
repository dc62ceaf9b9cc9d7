# The streamwallet image the Helm chart runs (deploy/helm/streamwallet): one image, every
# role chosen by its command (`streamwallet worker | query | gateway | topics create`).
# Kafka is not in it: the chart points STREAMWALLET_BOOTSTRAP_SERVERS at your cluster.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY ledger ledger
COPY codec codec
COPY schemas schemas
COPY topologies topologies
COPY streams streams
COPY sinks sinks
COPY gateway gateway
COPY streamwallet streamwallet
COPY deploy/__init__.py deploy/__init__.py
COPY deploy/local deploy/local
COPY bench/__init__.py bench/__init__.py
RUN pip install . && python -c "import codec; codec.Codec()"

# The chart runs as this user with a read-only root file system; /data and /tmp are volumes.
RUN useradd --uid 10001 --user-group --no-create-home streamwallet && mkdir /data && chown 10001:10001 /data
USER 10001
ENV STREAMWALLET_DATA_DIR=/data STREAMWALLET_CLICKHOUSE_DSN=chdb:///data/clickhouse
ENTRYPOINT ["streamwallet"]
CMD ["worker"]
