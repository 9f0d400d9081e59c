"""What the relying roles (OCSP, CRL) keep of the settings and how they open the CA's store:
read-only, never a CA key or passphrase; the delegated OCSP key files at most."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

from adapters.relying.delegated_key import DelegatedKeyFiles
from adapters.settings import Settings
from adapters.storage.persistence import open_ca_store, opening
from ca_core.ca import CertificateAuthority


def http_date(moment: datetime) -> str:
    """An HTTP date (RFC 9110 §5.6.7)."""
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def responder_settings(settings: Settings) -> Settings:
    """What the OCSP and CRL roles keep of the settings: never the CA key passphrase."""
    return settings.model_copy(update={"key_passphrase": None, "hsm_pin": None,
                                       "hsm_pin_file": None, "hsm_root_pin": None,
                                       "hsm_root_pin_file": None, "key_store": "file",
                                       "key_stores": {}})


def open_ca(settings: Settings) -> CertificateAuthority:
    """The CA's store for a relying-party role: read, no CA key; the delegated OCSP key
    files when PARTNER_CA_OCSP_KEY_PASSPHRASE is set."""
    # roles starting at once race on CREATE TABLE: opened with retries
    ca = opening()(open_ca_store, settings.store_url("ca"), settings.data_dir,
                   settings.issuance_policy())
    if settings.ocsp_key_passphrase is not None:
        ca.ocsp_keys = DelegatedKeyFiles(settings.ocsp_key_dir,
                                         settings.ocsp_key_passphrase.get_secret_value().encode())
    return ca
