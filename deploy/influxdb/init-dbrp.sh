#!/bin/bash
# Runs once, when the influxdb:2.7 container initialises its data (DOCKER_INFLUXDB_INIT_MODE=
# setup), with the CLI already configured with the admin token: map the bucket to a database /
# retention policy (DBRP) of the same name, so InfluxQL (Grafana's datasource, contract §8)
# reads the bucket the gateway writes. The image exports DOCKER_INFLUXDB_INIT_BUCKET_ID.
set -euo pipefail
influx v1 dbrp create \
  --org "${DOCKER_INFLUXDB_INIT_ORG}" \
  --bucket-id "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" \
  --db "${DOCKER_INFLUXDB_INIT_BUCKET}" \
  --rp autogen \
  --default
