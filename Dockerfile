# The gateway image of docker-compose.yml: `patrol-gateway` with the InfluxDB, API and reports
# extras, non-root; Debian's Noto CJK font for the Chinese in the weekly pack's PDF.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY devices ./devices
RUN apt-get update && apt-get install -y --no-install-recommends fonts-noto-cjk \
    && rm -rf /var/lib/apt/lists/* \
    && pip install '.[influx]' && pip install '.[api]' && pip install '.[reports]' && rm -rf /src \
    && useradd --system --uid 10001 --home-dir /data patrol \
    && mkdir -p /data && chown patrol /data
USER patrol
WORKDIR /data
VOLUME ["/data"]
# The duty desk (§10) listens on every interface inside the container (publish 8080 to use it).
ENV PATROL_HTTP=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --retries=6 \
    CMD ["patrol-gateway", "health", "--data", "/data"]
ENTRYPOINT ["patrol-gateway"]
CMD ["run", "--config", "/site/site.yaml"]
