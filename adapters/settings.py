"""Configuration from ``PARTNER_CA_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ca_core.errors import NotReady
from ca_core.policy import DEFAULT_MODULES, IssuancePolicy, PortalPolicy


def read_pin_file(path: Path) -> str:
    """A PIN from its file, which only its owner may read (as ssh does with a key file): a
    PIN others can read is refused, not used without a word (issue 26, item 10)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise NotReady(f"cannot read the PIN file {path}: {exc.strerror}",
                       code="pin-file-unreadable") from None
    if mode & 0o077:
        raise NotReady(f"the PIN file {path} can be read by others (mode {mode & 0o777:04o}); "
                       f"make it the owner's only: chmod 600 {path}", code="pin-file-exposed")
    return path.read_text().strip()

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def describe_settings_error(exc: ValidationError) -> str:
    """One line naming each environment variable that is wrong and why (never its value: it
    may be a secret)."""
    problems = []
    for error in exc.errors():
        field = "_".join(str(part) for part in error["loc"])
        name = f"PARTNER_CA_{field.upper()}" if field else "settings"
        problems.append(f"{name}: {error['msg']}")
    return "bad configuration: " + "; ".join(problems)


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
    #: Required with Kafka: the directory ``partner-ca kafka credentials`` writes, one folder
    #: per role (TLS client certificate and key, record-signing key, the signing certificates
    #: it accepts). A process reads only the folders of the roles it runs. docs/kafka.md.
    kafka_credentials: Path | None = None
    #: Scale-out of the CA inbox: worker k of n takes the partitions p with p mod n = k.
    #: PEM file with the issuing and root CA certificates (written by ``init``).
    chain_file: Path | None = None
    #: How often ``serve --role ca`` records due expiries.
    expiry_interval_seconds: float = 60.0
    #: ``serve`` signs a tree head over each log it writes this often (0: never;
    #: ``partner-ca audit checkpoint`` still works). See docs/audit.md.
    audit_checkpoint_seconds: float = Field(default=3600.0, ge=0.0)
    key_passphrase: SecretStr | None = None
    #: Where the CA keys live: ``file`` (key files encrypted with the passphrase) or
    #: ``pkcs11`` (generated and kept on an HSM token; docs/operations.md, "Keys in an HSM").
    key_store: Literal["file", "pkcs11"] = "file"
    #: Per key, where it lives, over ``key_store``: JSON, e.g. ``{"root": "pkcs11",
    #: "issuing": "pkcs11", "ocsp": "file", "audit": "file"}`` (ocsp: the delegated signers).
    key_stores: dict[Literal["root", "issuing", "ocsp", "audit"], Literal["file", "pkcs11"]] = {}
    hsm_module: str = "/usr/lib/softhsm/libsofthsm2.so"
    hsm_token_label: str = ""
    #: The token's user PIN: from this file (mode 0600), or PARTNER_CA_HSM_PIN. Never an option.
    hsm_pin_file: Path | None = None
    hsm_pin: SecretStr | None = None
    #: The root key on a token of its own (offline between ceremonies): its label, and its
    #: PIN from PARTNER_CA_HSM_ROOT_PIN_FILE / PARTNER_CA_HSM_ROOT_PIN (default: the PIN
    #: above). The token is opened only when the root is needed (init, ``ca rollover``,
    #: ``ca sign-root-answers``); while it is unplugged the CA role runs without it.
    hsm_root_token_label: str = ""
    hsm_root_pin_file: Path | None = None
    hsm_root_pin: SecretStr | None = None
    #: Validity of the root's OCSP answers about the issuing CA certificates (days). With an
    #: offline root, make it longer than the time between root ceremonies.
    root_ocsp_days: float = Field(default=1.0, ge=1.0 / 3, le=400.0)
    #: Where the CA's private keys are (default ``<data_dir>/keys``); only the CA role needs it.
    key_dir: Path | None = None
    #: PBKDF2-HMAC-SHA256 iterations for key files written from now on (OWASP: 600,000);
    #: files keep the count they were written with, so older ones still open.
    key_kdf_iterations: int = Field(default=600_000, ge=10_000)
    #: Encrypts the delegated OCSP signing keys (``<data_dir>/ocsp-keys``), apart from the CA
    #: keys: the CA role writes them, ``serve --role ocsp`` reads them to sign requests with a
    #: nonce. Unset: they stay in the CA key store and nonces are not echoed.
    ocsp_key_passphrase: SecretStr | None = None
    #: Encrypts the audit (tree-head) key in ``audit_key_dir`` (default
    #: ``<data_dir>/audit-keys``), apart from the CA keys: the portal signs its log's heads
    #: with this alone and never holds the CA passphrase. Unset: the audit key stays in the CA
    #: key store, and only processes that hold the CA keys sign heads.
    audit_key_passphrase: SecretStr | None = None
    audit_key_dir: Path | None = None
    portal_secret: SecretStr | None = None
    #: DEBUG shows every record each role publishes and applies; INFO (``serve``'s default)
    #: shows starts, stops and what each step did; one-shot commands log WARNING and above.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", ""] = ""
    #: Freeze the clock at this instant (testing and demonstrations only).
    now: datetime | None = None

    #: Where ``serve --role ocsp`` and ``serve --role crl`` listen (host:port).
    ocsp_listen: str = "127.0.0.1:8080"
    #: HTTP worker processes of the OCSP responder (each with its own SO_REUSEPORT socket).
    ocsp_workers: int = Field(default=2, ge=1, le=64)
    #: The memory each OCSP worker's answer cache may hold, in bytes (least recently used out
    #: first): every request with a new nonce is a new entry, so it is bounded in bytes.
    ocsp_cache_bytes: int = Field(default=64 * 1024 * 1024, ge=0, le=16 * 1024 ** 3)
    crl_listen: str = "127.0.0.1:8081"
    #: OCSP response validity (thisUpdate → nextUpdate), 8 hours to 7 days; responses are
    #: re-signed at half of it, and at once after a revocation.
    ocsp_validity_hours: float = Field(default=24.0, ge=8.0, le=168.0)
    #: Delegated OCSP signer: validity, and how long before its end a new one is issued
    #: (must exceed the response validity, so no response outlives its signer).
    ocsp_signer_days: float = Field(default=30.0, gt=1.0)
    ocsp_signer_renew_days: float = Field(default=10.0, gt=0.0)
    #: A new CRL at most this long after a revocation, and on schedule at half its validity.
    crl_delay_seconds: float = Field(default=60.0, ge=0.0)
    crl_validity_hours: float = Field(default=24.0, gt=0.0, le=168.0)
    #: How often the ocsp/crl maintainers look at the CA's log.
    relying_poll_seconds: float = Field(default=1.0, gt=0.0)
    #: Every HTTP listener (portal, OCSP, CRL, metrics) closes a connection whose request
    #: headers have not all arrived this many seconds after its first byte, or whose body
    #: has not arrived this many seconds after its headers (slow clients), and holds at most
    #: ``http_max_connections`` connections per process (more get 503).
    http_header_seconds: float = Field(default=10.0, gt=0.0, le=300.0)
    http_body_seconds: float = Field(default=30.0, gt=0.0, le=600.0)
    http_max_connections: int = Field(default=2000, ge=10, le=100_000)

    def http_limits(self) -> dict[str, Any]:
        """The listeners' deadlines and bound, as ``bounded_config`` takes them."""
        return {"header_seconds": self.http_header_seconds,
                "body_seconds": self.http_body_seconds,
                "max_connections": self.http_max_connections}

    #: The user's side: PKCS#11 module of the token, and the portal API the client talks to.
    pkcs11_module: str = "/usr/lib/softhsm/libsofthsm2.so"
    portal_url: str = "http://127.0.0.1:8000"
    #: Where ``client request --token`` remembers requests until they are picked up
    #: (``client wait`` / ``client pickup --token``); files are private to the user (0600).
    client_state_dir: Path = Path.home() / ".local" / "state" / "partner-ca"
    #: ``serve --role portal`` HTTP API, and the base URL written into pickup links.
    portal_listen: str = "127.0.0.1:8000"
    portal_public_url: str = "http://127.0.0.1:8000"
    #: Proxies (a JSON list of addresses or networks, ``["127.0.0.1", "10.0.0.0/8"]``) whose X-Forwarded-For
    #: and X-Forwarded-Proto the portal believes, and from which alone it accepts a
    #: TLS-client-certificate login (docs/operations.md). Default: none.
    portal_trusted_proxies: tuple[str, ...] = ()
    #: A refused OTP login is answered no sooner than this many seconds after it came in, so
    #: that the answer's time does not tell registered from unknown user ids.
    otp_refusal_seconds: float = Field(default=0.25, ge=0, le=10)
    #: Where this role answers /metrics, /healthz and /readyz (``host:port`` or ``fd:N``;
    #: empty: not served). Apart from the public listeners: keep it off the internet.
    metrics_listen: str = ""
    #: /readyz is unready while a view is more than this many log positions behind.
    ready_lag_bound: int = Field(default=10_000, ge=1)
    #: Serve /docs and /redoc (their scripts come from a public CDN); /openapi.json always.
    portal_api_docs: bool = False
    #: Email: SMTP when ``smtp_host`` is set, else a maildir in ``<data_dir>/mail``.
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_starttls: bool = False
    #: implicit TLS (SMTPS, usually port 465) instead of STARTTLS
    smtp_ssl: bool = False
    smtp_username: str = ""
    smtp_password: SecretStr | None = None
    mail_from: str = "Partner CA <partner-ca@localhost>"
    #: ``serve --role portal``/``all`` run the notifier too (set false to run it elsewhere).
    notifier_in_portal: bool = True
    #: Attempts per mail before it is marked failed (back-off doubles from 10 s, max 1 h).
    mail_max_attempts: int = Field(default=8, ge=1)

    root_name: str = "Partner CA Root"
    issuing_name: str = "Partner CA Issuing"
    organization: str = "Partner Portal"
    country: str = "CZ"
    modules: tuple[str, ...] = DEFAULT_MODULES
    #: R7: renewal requests a user may make in 24 hours (one pending per certificate besides)
    renewals_per_day: int = Field(default=3, ge=1)
    #: R9: wrong revocation passwords before the revocation password is locked
    revocation_max_attempts: int = Field(default=5, ge=1)
    crl_url: str = "http://127.0.0.1:8081/crl/issuing.crl"
    ocsp_url: str = "http://127.0.0.1:8080/ocsp"
    ca_issuers_url: str = "http://127.0.0.1:8081/ca/issuing.cer"
    policy_oid: str = "1.3.6.1.4.1.55555.1.1"
    #: Sharded CRLs: 0 = off; N shards by serial mod N (see docs/operations.md).
    crl_shards: int = Field(default=0, ge=0, le=4096)
    crl_shard_url: str = "http://127.0.0.1:8081/crl/shard-{shard}.crl"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _signer_outlives_responses(self) -> Settings:
        if self.ocsp_signer_renew_days * 24 <= self.ocsp_validity_hours:
            raise ValueError("ocsp_signer_renew_days must exceed ocsp_validity_hours, or a "
                             "response could outlive its signer")
        if self.ocsp_signer_renew_days >= self.ocsp_signer_days:
            raise ValueError("ocsp_signer_renew_days must be shorter than ocsp_signer_days")
        return self

    def store_url(self, app_name: str) -> str:
        specific = {"portal": self.portal_database_url, "ca": self.ca_database_url}.get(app_name)
        return specific or self.database_url

    def hsm_user_pin(self) -> str | None:
        if self.hsm_pin is not None:
            return self.hsm_pin.get_secret_value()
        if self.hsm_pin_file is not None:
            return read_pin_file(self.hsm_pin_file)
        return None

    def hsm_root_user_pin(self) -> str | None:
        if self.hsm_root_pin is not None:
            return self.hsm_root_pin.get_secret_value()
        if self.hsm_root_pin_file is not None:
            return read_pin_file(self.hsm_root_pin_file)
        return self.hsm_user_pin()

    @property
    def root_on_own_token(self) -> bool:
        return bool(self.hsm_root_token_label) and self.store_of("root") == "pkcs11"

    def store_of(self, kind: str) -> str:
        """``file`` or ``pkcs11`` for a kind of key (root, issuing, ocsp, audit)."""
        return self.key_stores.get(kind, self.key_store)  # type: ignore[call-overload]

    @property
    def key_store_kinds(self) -> set[str]:
        return {self.store_of(kind) for kind in ("root", "issuing", "ocsp", "audit")}

    @property
    def ca_keys_configured(self) -> bool:
        """This process's own settings open the CA keys (passphrase and/or an HSM PIN)."""
        ok = True
        if "pkcs11" in self.key_store_kinds:
            ok = self.hsm_pin is not None or self.hsm_pin_file is not None
        if "file" in self.key_store_kinds:
            ok = ok and self.key_passphrase is not None
        return ok

    @property
    def ca_key_dir(self) -> Path:
        return self.key_dir or self.data_dir / "keys"

    @property
    def ocsp_key_dir(self) -> Path:
        return self.data_dir / "ocsp-keys"

    @property
    def audit_keys_dir(self) -> Path:
        return self.audit_key_dir or self.data_dir / "audit-keys"

    @property
    def chain_path(self) -> Path:
        return self.chain_file or self.data_dir / "ca-chain.pem"

    def issuance_policy(self) -> IssuancePolicy:
        return IssuancePolicy(
            organization=self.organization, country=self.country, crl_url=self.crl_url,
            ocsp_url=self.ocsp_url, ca_issuers_url=self.ca_issuers_url,
            policy_oid=self.policy_oid, crl_shards=self.crl_shards,
            crl_shard_url=self.crl_shard_url,
        )

    def portal_policy(self) -> PortalPolicy:
        return PortalPolicy(modules=self.modules, renewals_per_day=self.renewals_per_day,
                            revocation_max_attempts=self.revocation_max_attempts)
