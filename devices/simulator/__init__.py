"""A seeded site simulator: duty-manager patrols, rounds, guards, sensors and faults over MQTT.

`engine` is pure (no I/O, no wall clock): the same seed always gives the same events;
`faults` plans the injected faults; `publisher` runs the simulated devices against a broker on
a `SimClock`; `__main__` is the command line:

    python -m devices.simulator --config gateway/sites/zcity.yaml --broker mqtt://127.0.0.1:1883
    python -m devices.simulator --config gateway/sites/zcity.yaml --only leak,battery_sag --faults 5

Importing this package imports the pure part only (no paho).
"""

from devices.simulator.engine import SimEvent, Simulator, demo_start, flood
from devices.simulator.faults import FAULT_NAMES, FaultConfig

__all__ = [
    "FAULT_NAMES",
    "FaultConfig",
    "SimEvent",
    "Simulator",
    "demo_start",
    "flood",
]
