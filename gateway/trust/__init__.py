"""Trust: who may speak for a site (broker identities, ACLs) and which scans carry a signature
of their own (signed QR codes, NTAG 424 DNA SUN messages, the reader bridge's MAC).

The product contract §1 (backdating), §3 (`auth`), §5 (flags `backdated`, `bad_signature`,
`unsigned`) and §7 (`broker-config`, `qr`, `PATROL_SECRETS`) are what this package implements;
docs/trust.md says how.
"""
