"""The MQTT client of one device process: what the reader bridge and the meter poller share.

Contract §2: a device keeps a retained `online`/`offline` on `device/{id}/status` and leaves
`offline` there as its last will, so the gateway notices a device that died or lost the network.
"""

from __future__ import annotations

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from gateway import payloads
from gateway.ingest.mqtt import BrokerUrl


def device_client(broker: BrokerUrl, client_id: str, status_topic: str) -> paho.Client:
    """A paho client for `broker` whose last will is `offline`, retained, on `status_topic`.

    MQTT 3.1.1 with a clean session (a device only publishes: what was sent to it while it was
    away is of no use), reconnecting with paho's exponential backoff, 1 s to 30 s. The caller
    sets its callbacks and queue limits, then connects.
    """
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=True,
        protocol=MQTTProtocolVersion.MQTTv311,
    )
    client.will_set(status_topic, payloads.status("offline"), qos=1, retain=True)
    client.reconnect_delay_set(1, 30)
    if broker.username:
        client.username_pw_set(broker.username, broker.password)
    if broker.tls:
        client.tls_set()
    return client


def held(info: paho.MQTTMessageInfo) -> bool:
    """True if paho holds a QoS 1 publication: sent, or queued until the next connect.

    paho queues a QoS 1 message published while disconnected and sends it on reconnect, but
    leaves `rc = MQTT_ERR_NO_CONN`, which makes `is_published()` raise even after the PUBACK;
    that rc is cleared here. Any other error means paho refused the message.
    """
    if info.rc == paho.MQTT_ERR_NO_CONN:
        info.rc = paho.MQTT_ERR_SUCCESS
    return info.rc == paho.MQTT_ERR_SUCCESS
