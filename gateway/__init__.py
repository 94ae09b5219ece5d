"""Patrol Gateway: 物业值班经理巡检网关 — MQTT in, a durable record out, one rule engine."""

__version__ = "0.1.0"
