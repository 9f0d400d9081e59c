"""Configuration from ``PARTNER_CA_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from ca_core.policy import DEFAULT_MODULES, IssuancePolicy, PortalPolicy


class Settings(BaseSettings):
    """Every knob of a Partner CA installation. See docs/operations.md."""

    model_config = SettingsConfigDict(env_prefix="PARTNER_CA_", extra="ignore")

    data_dir: Path = Path("partner-ca-data")
    #: ``postgresql://user:password@host:port/dbname``; empty means SQLite files in data_dir.
    database_url: str = ""
    #: Separate stores per application (default: ``database_url`` for both).
    portal_database_url: str = ""
    ca_database_url: str = ""
    #: Kafka bootstrap servers; empty means the in-process transport.
    kafka_bootstrap: str = ""
    kafka_topic_prefix: str = "partner-ca."
    kafka_partitions: int = 6
    kafka_replication_factor: int = 1
    kafka_client_prefix: str = "partner-ca"
    #: Scale-out of the CA inbox: worker k of n takes the partitions p with p mod n = k.
    kafka_inbox_workers: int = 1
    kafka_inbox_worker_index: int = 0
    #: PEM file with the issuing and root CA certificates (written by ``init``).
    chain_file: Path | None = None
    #: How often ``serve --role ca`` records due expiries.
    expiry_interval_seconds: float = 60.0
    key_passphrase: SecretStr | None = None
    portal_secret: SecretStr | None = None
    #: Freeze the clock at this instant (testing and demonstrations only).
    now: datetime | None = None

    root_name: str = "Partner CA Root"
    issuing_name: str = "Partner CA Issuing"
    organization: str = "Partner Portal"
    country: str = "CZ"
    modules: tuple[str, ...] = DEFAULT_MODULES
    crl_url: str = "http://127.0.0.1:8081/crl/issuing.crl"
    ocsp_url: str = "http://127.0.0.1:8080/ocsp"
    ca_issuers_url: str = "http://127.0.0.1:8081/ca/issuing.cer"
    policy_oid: str = "1.3.6.1.4.1.55555.1.1"

    def store_url(self, app_name: str) -> str:
        specific = {"portal": self.portal_database_url, "ca": self.ca_database_url}.get(app_name)
        return specific or self.database_url

    @property
    def chain_path(self) -> Path:
        return self.chain_file or self.data_dir / "ca-chain.pem"

    def issuance_policy(self) -> IssuancePolicy:
        return IssuancePolicy(
            organization=self.organization, country=self.country, crl_url=self.crl_url,
            ocsp_url=self.ocsp_url, ca_issuers_url=self.ca_issuers_url,
            policy_oid=self.policy_oid,
        )

    def portal_policy(self) -> PortalPolicy:
        return PortalPolicy(modules=self.modules)
