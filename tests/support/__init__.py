"""Test helpers: a private Mosquitto broker and a paho test client."""
