"""The portal's HTTP API by audience: partners (``partner``), module administrators and
operators (``ops``), anyone (``chain``); the bodies in ``schemas``, the typed dependencies
that admit a caller in ``guards``. It never imports the pages (an import contract)."""
