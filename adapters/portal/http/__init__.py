"""What the portal's two audiences over HTTP share: the session model and its signing
(``claims``, ``sessions``), the per-address limit (``limits``), the ASGI middleware
(``middleware``) and RFC 9457 problems (``problems``). The API (``adapters.portal.api``) and
the pages (``adapters.portal.pages``) both build on this package and never on each other;
``adapters.portal.app`` assembles them."""
