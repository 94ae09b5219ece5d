"""Alerts: the record of contract §6 and the book of open alerts."""

from gateway.alerts.book import AlertBook, Transition
from gateway.alerts.record import Alert, alert_id

__all__ = ["Alert", "AlertBook", "Transition", "alert_id"]
