"""Where the code reaches past a library's public API, one small module per library, each
checked by tests/unit/test_compat.py (eventsourcing's is ca_core/compat_eventsourcing.py)."""
