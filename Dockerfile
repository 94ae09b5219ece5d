# The gateway as a container: `docker compose up` runs it beside Mosquitto.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY devices ./devices
RUN pip install --no-cache-dir .
ENV PATROL_DATA=/data PATROL_BROKER=mqtt://mosquitto:1883
VOLUME /data
ENTRYPOINT ["patrol-gateway"]
CMD ["run", "--config", "/config/site.yaml"]
