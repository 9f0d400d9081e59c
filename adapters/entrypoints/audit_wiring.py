"""The audit role's values from the settings (the wiring room: adapters/audit/ takes values):
where the logs and live views are, and the policies to read them with."""

from __future__ import annotations

from adapters.audit.replay import LiveStores
from adapters.settings import Settings


def live_stores(settings: Settings) -> LiveStores:
    return LiveStores(settings.store_url("ca"), settings.store_url("portal"), settings.data_dir,
                      settings.issuance_policy(), settings.portal_policy())
