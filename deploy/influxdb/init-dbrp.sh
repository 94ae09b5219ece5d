#!/bin/bash
# Runs once, when the influxdb container initialises its data (DOCKER_INFLUXDB_INIT_MODE=setup):
# map the bucket to a database/retention policy (DBRP) of the same name, so InfluxQL (Grafana's
# datasource, contract §8) reads the bucket the gateway writes.
set -euo pipefail
bucket="${DOCKER_INFLUXDB_INIT_BUCKET}"
id="$(influx bucket list --name "$bucket" --hide-headers | cut -f1)"
influx v1 dbrp create --db "$bucket" --rp autogen --bucket-id "$id" --default
