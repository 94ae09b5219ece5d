# The gateway as a container: `docker compose up` runs it beside Mosquitto.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY devices ./devices
RUN pip install --no-cache-dir '.[api]'
# The duty desk (§10) listens on every interface inside the container; publish the port.
ENV PATROL_DATA=/data PATROL_BROKER=mqtt://mosquitto:1883 PATROL_HTTP=0.0.0.0:8080
EXPOSE 8080
VOLUME /data
ENTRYPOINT ["patrol-gateway"]
CMD ["run", "--config", "/config/site.yaml"]
