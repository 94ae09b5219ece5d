"""Self-contained demo helpers (embedded MQTT broker)."""
