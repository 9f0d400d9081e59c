"""The portal's web pages (issue 18) by audience: partners (``partner``: the manual's
chapters), module administrators and operators (``ops``: the console), auditors (``audit``:
the timeline); what every page needs is ``kit``. Server-rendered (Jinja2), no script, no
third-party resource; the pages never import the API (an import contract)."""
