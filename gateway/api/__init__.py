"""The duty desk's HTTP API and web page (contract §10), served by the gateway process.

The API reads through read-only connections to the store and writes only through the worker's
command channel (`Gateway.submit`). Modules that do not import FastAPI (`tokens`, `acklinks`,
`live`) may be imported by the core; `app` and `server` need the `api` extra.
"""
