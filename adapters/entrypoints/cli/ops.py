"""Commands for the CA's operators and module administrators: set-up, the long-lived
roles, users and OTPs, revocation (R10), status, CRL, chain (R12). One module for one
audience (about 420 lines of thin commands over the applications), as the CLI is split by
audience (docs/architecture.md).

Imports inside the commands are on purpose: they keep ``--help`` and every other command's
start-up short."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated
from uuid import UUID

import typer
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from adapters.entrypoints.cli.common import (
    app,
    ca_passphrase,
    open_keys,
    system,
    typed_instant,
    typed_serial,
)
from adapters.output import (
    EXIT_SETUP,
    EXIT_USAGE,
    JsonOpt,
    configure_logging,
    fail,
    load_settings,
    out,
    result,
)
from adapters.storage.migrate import apply_migrations
from adapters.storage.persistence import StoreUnavailable, status_view
from ca_core.certificate import RevocationReason
from ca_core.errors import DomainError
from ca_core.x509profile import from_pem
from projections.feed import catch_up
from projections.status import RevocationStatusProjection

otp_app = typer.Typer(help="One-time passwords (R1).", no_args_is_help=True)
partner_app = typer.Typer(help="Portal users and their modules.", no_args_is_help=True)
ops_app = typer.Typer(help="Ops API tokens (module administrators, operators).",
                      no_args_is_help=True)
ca_app = typer.Typer(help="The issuing CAs: list them, roll over to a new one.",
                     no_args_is_help=True)


# -- init and demo ----------------------------------------------------------
@app.command()
def init(
    root_name: Annotated[str | None, typer.Option(help="Root CA common name.")] = None,
    issuing_name: Annotated[str | None, typer.Option(help="Issuing CA common name.")] = None,
    key_store: Annotated[str | None, typer.Option(
        "--key-store", help="file or pkcs11 (the HSM token of PARTNER_CA_HSM_MODULE / "
                            "PARTNER_CA_HSM_TOKEN_LABEL, PIN from PARTNER_CA_HSM_PIN_FILE); "
                            "default PARTNER_CA_KEY_STORE.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The key ceremony: the root key and certificate, then the issuing key certified by the
    root, each recorded as an event naming its key (a file fingerprint, or the token's serial
    and the key's CKA_ID). File keys are encrypted with the passphrase (asked twice on a
    terminal); with --key-store pkcs11 both keys are generated on the token."""
    if key_store is not None:
        if key_store not in ("file", "pkcs11"):
            fail(f"--key-store must be file or pkcs11, not {key_store!r}", EXIT_USAGE)
        os.environ["PARTNER_CA_KEY_STORE"] = key_store  # what the settings read, this process
    settings = load_settings()
    with system(need_keys=True, initialised=False) as s:
        authority = s.ca.hierarchy.initialise(root_name or settings.root_name,
                                    issuing_name or settings.issuing_name)
        settings.chain_path.write_text(s.ca.hierarchy.chain_pem())
        apply_migrations(settings.store_url("ca"))
        from adapters.entrypoints.ca_wiring import publish_now  # here: keeps the CLI's start-up short

        publish_now(s.ca, settings)  # relying parties get a CRL and OCSP answers at once
        keys = settings.data_dir / "keys" if settings.key_store == "file" else \
            f"token {settings.hsm_token_label!r}"
        result(as_json, f"CA initialised: root '{authority.root_name}' (key "
                        f"{authority.root_key_id}), issuing '{authority.issuing_name}' (key "
                        f"{authority.issuing_key_id}); keys in {keys}",
               root=authority.root_name, issuing=authority.issuing_name, keys=str(keys),
               root_key_id=authority.root_key_id, issuing_key_id=authority.issuing_key_id,
               chain=str(settings.chain_path))


@ca_app.command("rollover")
def rollover(
    issuing_name: Annotated[str | None, typer.Option(
        help="Common name of the new issuing CA (default: the first one's with its number, "
             "'Partner CA Issuing 2').")] = None,
    as_json: JsonOpt = False,
) -> None:
    """A new issuing CA: its key generated where the issuing keys live, its certificate signed
    by the root (the root key must be at hand), recorded as SigningKeyRotated. New
    certificates come from it at once (running CA workers switch at their next batch); the
    one it replaces keeps its CRL and OCSP until its last certificate has expired, then is
    retired. Rewrites the chain file (PARTNER_CA_CHAIN_FILE) with both: give it to the portal
    hosts and to nginx's trust bundle."""
    settings = load_settings()
    with system(need_keys=True) as s:
        previous = s.ca.authority().issuing_ca
        issuing = s.ca.hierarchy.rollover(issuing_name)
        settings.chain_path.write_text(s.ca.hierarchy.chain_pem())
        from adapters.entrypoints.ca_wiring import publish_now  # here: keeps the CLI's start-up short

        publish_now(s.ca, settings)  # the new CA's CRL, OCSP signer and root answer at once
        subject = from_pem(issuing.certificate_pem).subject.rfc4514_string()
        result(as_json, f"issuing CA {issuing.generation} ({subject}, key {issuing.key_id}) "
                        f"is current; issuing CA {previous.generation} answers for its "
                        f"certificates until they expire; chain written to "
                        f"{settings.chain_path}",
               generation=issuing.generation, previous=previous.generation, subject=subject,
               key_id=issuing.key_id, chain=str(settings.chain_path))


@ca_app.command("sign-root-answers")
def sign_root_answers(
    days: Annotated[float | None, typer.Option(
        min=0.34, max=400, help="Validity of the answers (default PARTNER_CA_ROOT_OCSP_DAYS).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """With the root token plugged in: sign the root's OCSP answers about every issuing CA
    still answering, valid for --days, so that the root can go offline until the next
    ceremony (nginx's ssl_ocsp checks the issuing CA certificate with them)."""
    from adapters.entrypoints.ca_wiring import ocsp_publisher_of

    settings = load_settings()
    with system(need_keys=True) as s:
        validity = timedelta(days=days or settings.root_ocsp_days)
        signed = ocsp_publisher_of(s.ca, settings).sign_root_answers(validity)
        until = (s.ca.clock.now() + validity).isoformat()
        result(as_json, f"root answers about {len(signed)} issuing CA(s) signed, valid until "
                        f"{until}", issuing_cas=signed, valid_until=until)


@ca_app.command("list")
def list_issuing(as_json: JsonOpt = False) -> None:
    """The issuing CAs: generation, subject, key id, since when, current or retired."""
    with system(need_keys=False) as s:
        authority = s.ca.authority()
        rows = [{"generation": ca.generation,
                 "subject": from_pem(ca.certificate_pem).subject.rfc4514_string(),
                 "key_id": ca.key_id, "since": ca.since.isoformat(),
                 "state": "current" if ca.generation == authority.current else (
                     "retired" if ca.retired_at else "answering"),
                 "crl_number": ca.crl_number} for ca in authority.issuing.values()]
        if as_json:
            out.print(json.dumps(rows), soft_wrap=True, markup=False, highlight=False)
        else:
            for row in rows:
                out.print(f"{row['generation']:>3}  {row['state']:<9}  {row['since']}  "
                          f"{row['subject']}  key {row['key_id']}", markup=False,
                          highlight=False, soft_wrap=True)



@app.command()
def serve(
    role: Annotated[str, typer.Option(help="portal (API, notifier, Kafka relay and inbox), ca, "
                                           "all, or one of portal-api, notifier, portal-relay, "
                                           "portal-inbox, ca-relay, ca-inbox; ocsp (OCSP "
                                           "responder) or crl (CRL, CA certificate, status over "
                                           "HTTP). Without Kafka settings, portal/all/portal-api "
                                           "run both applications in-process.")] = "all",
) -> None:
    """Run a long-lived role until SIGTERM: Kafka relays/inboxes, the OCSP responder or the CRL server.

    Before it starts: the CA must be initialised and, for the roles that sign, the key
    passphrase must open the keys; otherwise one line on stderr and exit 3."""
    from adapters.entrypoints.bootstrap import build_ca, make_clock
    from adapters.entrypoints.serve import EMBEDDED_ROLES, HTTP_ROLES, ROLES
    from adapters.entrypoints.serve import serve as run_role
    from adapters.storage.persistence import open_ca_store, opening

    if role not in ROLES and role not in HTTP_ROLES:
        fail(f"unknown role {role!r}; use one of {', '.join([*ROLES, *HTTP_ROLES])}", EXIT_USAGE)
    configure_logging(role)
    settings = load_settings()
    from adapters.entrypoints.role_secrets import start_without_foreign_secrets

    start_without_foreign_secrets(role, embedded=not settings.kafka_bootstrap
                                  and role in EMBEDDED_ROLES)
    if not settings.kafka_bootstrap and role not in (*HTTP_ROLES, *EMBEDDED_ROLES):
        fail(f"--role {role} needs PARTNER_CA_KAFKA_BOOTSTRAP (the broker address)", EXIT_SETUP)
    # the OCSP and CRL roles sign nothing: the CA role publishes what they serve
    signing_roles = ("ca", "all", "ca-inbox",
                     *(EMBEDDED_ROLES if not settings.kafka_bootstrap else ()))
    passphrase: str | None = None
    try:
        if role in HTTP_ROLES:
            probe = opening()(open_ca_store, settings.store_url("ca"),  # roles start at once
                              settings.data_dir, settings.issuance_policy())
            try:
                probe.authority()  # not initialised: said at once
            finally:
                probe.close()
        if role in signing_roles:
            ca = opening()(build_ca, settings, make_clock(settings))
            try:
                ca.authority()  # not initialised: said before any secret is asked for
                passphrase = ca_passphrase()
                if passphrase is None:
                    fail("no CA key passphrase: set PARTNER_CA_KEY_PASSPHRASE or run on a "
                         "terminal", EXIT_SETUP)
                ca.keys = open_keys(settings, passphrase)
                ca.hierarchy.unlock()  # a wrong passphrase stops the role here, before it serves
            finally:
                ca.close()
        run_role(role, settings, passphrase)
    except StoreUnavailable as exc:
        fail(str(exc), EXIT_SETUP)
    except DomainError as exc:  # not initialised, keys that do not open, …
        fail(f"{exc} [{exc.code}]", EXIT_SETUP)
    except (OSError, ValueError) as exc:  # a listen address taken or not a socket
        fail(f"cannot serve --role {role}: {exc}", EXIT_SETUP)



@ops_app.command("token")
def ops_token(
    name: Annotated[str, typer.Option(help="Who acts with this token (recorded on every action).")],
    role: Annotated[list[str], typer.Option(help="admin:<MODULE> or operator (repeatable).")],
    days: Annotated[int, typer.Option(help="Days the token is valid (1-366).")] = 90,
    as_json: JsonOpt = False,
) -> None:
    """Create (or replace) the ops API token of NAME; printed once, only its hash is kept.
    It expires after --days; replacing it ends the page sessions opened with the old one."""
    from datetime import UTC, datetime, timedelta

    from adapters.portal.ops_auth import OpsTokens

    settings = load_settings()
    now = datetime.now(UTC)
    try:
        token = OpsTokens(settings.data_dir / "ops-tokens.json").create(name, role, days, now)
    except DomainError as exc:
        fail(f"{exc} [{exc.code}]")
    expires = (now + timedelta(days=days)).isoformat(timespec="seconds")
    if as_json:
        result(True, "", name=name, roles=sorted(role), token=token, expires_at=expires)
        return
    out.print(f"ops token for {name} ({', '.join(sorted(role))}), valid until {expires}, "
              "shown once:", markup=False)
    out.print(token, markup=False)


@partner_app.command("register")
def partner_register(
    user_id: Annotated[str, typer.Argument(help="User identifier, e.g. P24-000123.")],
    email: Annotated[str, typer.Option(help="Where notifications go.")],
    module: Annotated[list[str], typer.Option(help="Business module (repeatable).")],
    language: Annotated[str, typer.Option(help="cs or en.")] = "cs",
    as_json: JsonOpt = False,
) -> None:
    """Register a portal user in one or more business modules (after ``init``)."""
    with system(need_keys=False) as s:
        s.portal.register_partner(user_id, email, module, language, registered_by="cli")
        result(as_json, f"registered {user_id} in {', '.join(module)}", user_id=user_id,
               modules=module, email=email, language=language)


@otp_app.command("issue")
def otp_issue(
    user_id: Annotated[str, typer.Argument(help="User identifier.")],
    module: Annotated[str, typer.Option(help="Business module the OTP is for.")],
    by: Annotated[str, typer.Option("--by", help="The module administrator issuing it.")],
    as_json: JsonOpt = False,
) -> None:
    """Issue (or reissue) a one-time password; it is shown once and stored only as a hash (R1)."""
    with system(need_keys=False) as s:
        otp_id, otp = s.portal.issue_otp(user_id, module, issued_by=by)
        expires_at = s.portal.otp_expires_at(otp_id)
        result(as_json, f"OTP for {user_id} in {module} (valid 21 days, shown once): {otp}",
               user_id=user_id, module=module, otp_id=otp_id, otp=otp, expires_at=expires_at)


@app.command()
def revoke(
    serial: Annotated[str, typer.Argument(help="Serial number, hex.")],
    reason: Annotated[RevocationReason, typer.Option(help="RFC 5280 reason.")],
    operator: Annotated[str, typer.Option(help="The acting operator (recorded).")],
    as_json: JsonOpt = False,
) -> None:
    """Revoke a certificate as ops (R10): lost token, suspected misuse."""
    with system(need_keys=True) as s:
        changed = s.ca.revoke(typed_serial(serial), reason, operator)
        result(as_json, f"revoked {typed_serial(serial)} ({reason.value})" if changed
               else f"{typed_serial(serial)} was already revoked", serial=typed_serial(serial),
               reason=reason.value, changed=changed)


@app.command("unlock-revocation")
def unlock_revocation(
    serial: Annotated[str, typer.Argument(help="Serial number, hex.")],
    operator: Annotated[str, typer.Option(help="The acting operator (recorded).")],
    as_json: JsonOpt = False,
) -> None:
    """Lift the lock on a certificate's revocation password after too many wrong tries (R9)."""
    with system() as s:
        changed = s.portal.unlock_revocation(typed_serial(serial), operator)
        result(as_json, f"revocation password of {typed_serial(serial)} unlocked" if changed
               else f"{typed_serial(serial)} was not locked", serial=typed_serial(serial),
               changed=changed)


@app.command()
def status(
    serial: Annotated[str | None, typer.Argument(help="Serial number, hex.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="All certificates of a user.")] = None,
    at: Annotated[str | None, typer.Option(help="ISO 8601 instant: the status then, from history.")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Status of a certificate (or of a user's certificates) with its cause; --at for the past."""
    if (serial is None) == (user is None):
        fail("give a serial or --user", EXIT_USAGE)
    settings = load_settings()
    with system(need_keys=False) as s:
        if at is not None:
            if serial is None:
                fail("--at needs a serial", EXIT_USAGE)
            moment = typed_instant(at)
            _print_status([asdict(s.ca.status_at(typed_serial(serial), moment))], as_json)
            return
        apply_migrations(settings.store_url("ca"))
        projection = RevocationStatusProjection(
            status_view(settings.store_url("ca"), settings.data_dir))
        catch_up(projection, s.ca)
        rows = ([projection.view.get(typed_serial(serial))] if serial
                else projection.view.for_user(user or ""))
        found = [asdict(r) for r in rows if r is not None]
        if not found:
            fail(f"no certificate for {serial or user} [certificate-unknown]")
        _print_status(found, as_json)


def _print_status(rows: list[dict[str, object]], as_json: bool) -> None:
    for row in rows:
        data = {k: (v.isoformat() if isinstance(v, datetime) else
                    (str(v) if isinstance(v, UUID) else v)) for k, v in row.items()}
        if as_json:
            sys.stdout.write(json.dumps(data) + "\n")
        else:
            out.print("  ".join(f"{k}={v}" for k, v in data.items() if v is not None),
                      soft_wrap=True, markup=False, highlight=False)


@app.command()
def crl(
    output: Annotated[Path | None, typer.Option("--out", help="DER file to write "
                                                "(default <data_dir>/crl/issuing.crl).")] = None,
    hours: Annotated[int, typer.Option(min=1, max=168,
                                       help="Validity (nextUpdate), at most 168 hours.")] = 24,
    as_json: JsonOpt = False,
) -> None:
    """Sign the next full CRL (and its shards) from the revocation-status view, record
    CrlPublished, and put it where ``serve --role crl`` serves it
    (<data_dir>/crl/issuing.crl, shards beside it; --out writes a copy too). Files are
    replaced atomically."""
    from adapters.entrypoints.ca_wiring import crl_publisher

    settings = load_settings()
    with system(need_keys=True) as s:
        apply_migrations(settings.store_url("ca"))
        publisher = crl_publisher(s.ca, settings)
        publisher.validity = timedelta(hours=hours)
        done = publisher.publish(copy=output)
        current = s.ca.authority().current
        written = [publisher.target_of(current), *([output] if output else []),
                   *(publisher.target_of(g) for g in done.others)]
        shards = len(done.crls.shards)
        result(as_json, f"CRL number {done.number}: {done.revoked} revoked, reflects CA log "
                        f"position {done.log_position}, written to "
                        f"{', '.join(map(str, written))}"
                        + (f" ({shards} shards beside it)" if shards else ""),
               crl_number=done.number, revoked=done.revoked, log_position=done.log_position,
               files=[str(p) for p in written], shards=shards)


@app.command()
def migrate(as_json: JsonOpt = False) -> None:
    """Apply migrations/ (read-model tables) to the PostgreSQL database; nothing for SQLite."""
    settings = load_settings()
    ran = apply_migrations(settings.store_url("ca"))
    result(as_json, f"{ran} migration(s) applied", applied=ran)


@app.command()
def expire(as_json: JsonOpt = False) -> None:
    """Record expiries that are due: certificates past not_after, OTPs past 21 days (R11)."""
    with system(need_keys=False) as s:
        serials = s.ca.expire_due()
        otps = s.portal.expire_otps()
        result(as_json, f"{len(serials)} certificate(s) and {otps} OTP(s) expired",
               certificates=serials, otps=otps)


@app.command()
def chain(
    fmt: Annotated[str, typer.Option("--format", help="pem or pkcs7.")] = "pem",
    output: Annotated[Path | None, typer.Option("--out", help="File to write.")] = None,
    certificate: Annotated[Path | None, typer.Option(help="Own certificate to include.")] = None,
) -> None:
    """Export root, issuing CA (and optionally your own certificate) as PEM or PKCS#7 (R12)."""
    with system(need_keys=False) as s:
        a = s.ca.authority()
        pems = ([certificate.read_text()] if certificate else []) + [
            *(ca.certificate_pem for ca in a.active()), a.root_certificate_pem]
        if fmt == "pem":
            data = "".join(pems).encode()
        elif fmt == "pkcs7":
            data = pkcs7.serialize_certificates([from_pem(p) for p in pems], Encoding.DER)
        else:
            fail("--format must be pem or pkcs7", EXIT_USAGE)
        if output:
            output.write_bytes(data)
        else:
            sys.stdout.buffer.write(data)


