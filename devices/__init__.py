"""Device-side programs: the reader bridge, the meter poller, and the site simulator.

They speak the contract through the gateway's own modules (`gateway.payloads` for what they
publish, `gateway.ingest.topics` for where), so a device cannot drift from the gateway.
"""
