"""I/O adapters: settings, persistence, key store, transports, CLI."""
