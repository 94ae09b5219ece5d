# The gateway image of docker-compose.yml: `patrol-gateway` with the InfluxDB extra, non-root.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY devices ./devices
RUN pip install '.[influx]' && rm -rf /src \
    && useradd --system --uid 10001 --home-dir /data patrol \
    && mkdir -p /data && chown patrol /data
USER patrol
WORKDIR /data
VOLUME ["/data"]
HEALTHCHECK --interval=10s --timeout=5s --retries=6 \
    CMD ["patrol-gateway", "health", "--data", "/data"]
ENTRYPOINT ["patrol-gateway"]
CMD ["run", "--config", "/site/site.yaml"]
