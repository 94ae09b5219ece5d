"""InfluxDB (contract §8): the store's rows and periodic snapshots as line protocol, sent by
forwarders after their cursors; rule 12; retention of sent readings; `forward` history."""
