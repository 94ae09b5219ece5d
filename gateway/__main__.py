"""`python -m gateway` is `patrol-gateway`."""

from gateway.cli import main

main()
