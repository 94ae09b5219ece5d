"""The duty desk's HTTP API and web page (contract §10), served by the gateway process.

The API reads through read-only connections to the store and writes only through the worker's
command channel (`Gateway.submit`). `tokens`, `token_cli`, `acklinks`, `queries`, `live`,
`desk` and `auth` do not import FastAPI and may be imported by the core; `app`, `deps`,
`routes` and `server` need the `api` extra.
"""
