"""Partner CA domain: aggregates, events, rules R1–R12, X.509 profile, the two applications.

Nothing in this package performs I/O of its own; adapters live in ``adapters/``.
"""
