"""Ingest: topics, payload decoding, and the one module that talks to paho."""
