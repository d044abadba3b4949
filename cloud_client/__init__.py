"""ReadRoom's connection to the cloud archive. No Qt anywhere in this package.

Owns: where ReadRoom keeps its files (`paths`), secrets in the OS keyring (`secrets`), encryption at rest
(`vault`), server profiles and auth, the UPS-RS worklist client, QIDO/WADO/STOW retrieval into the encrypted
local cache, prefetch, and the local audit trail.
"""
