"""The ``partner-ca`` command line (Typer).

Exit codes: 0 success; 1 a rule refused the command (one-line error with its code);
2 usage error; 3 set-up problem (not initialised, no or wrong passphrase, bad configuration,
store unreachable). Every command that prints a result has ``--json``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from rich.console import Console

from adapters.ca.keystore import KeyStoreError
from adapters.client import softtoken
from adapters.entrypoints.bootstrap import PartnerCa, build, key_store
from adapters.output import (
    EXIT_REFUSED,
    EXIT_SETUP,
    EXIT_USAGE,
    JsonOpt,
    configure_logging,
    fail,
    load_settings,
    out,
    result,
)
from adapters.settings import Settings
from adapters.storage.migrate import apply_migrations
from adapters.storage.persistence import StoreUnavailable, status_view
from ca_core.ca import CaNotInitialised
from ca_core.certificate import RevocationReason, parse_serial
from ca_core.errors import DomainError
from ca_core.portal import CertificateSession
from ca_core.x509profile import from_pem
from projections.status import RevocationStatusProjection, catch_up
from projections.timeline import TimelineEntry, timeline

app = typer.Typer(help="Partner CA: an event-sourced certificate authority for a partner portal.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
otp_app = typer.Typer(help="One-time passwords (R1).", no_args_is_help=True)
partner_app = typer.Typer(help="Portal users and their modules.", no_args_is_help=True)
client_app = typer.Typer(help="The user's side of the portal, with key files (R2–R9).",
                         no_args_is_help=True)
app.add_typer(otp_app, name="otp")
app.add_typer(partner_app, name="partner")
app.add_typer(client_app, name="client")
from adapters.client.token_cli import token_app  # noqa: E402 - after the app it extends

app.add_typer(token_app, name="token")
audit_app = typer.Typer(help="Auditors: tamper evidence for the event stores.",
                        no_args_is_help=True)
app.add_typer(audit_app, name="audit")
ops_app = typer.Typer(help="Ops API tokens (module administrators, operators).",
                      no_args_is_help=True)
app.add_typer(ops_app, name="ops")

@app.callback()
def _everywhere() -> None:
    """Partner CA: an event-sourced certificate authority for a partner portal."""
    configure_logging()


def _passphrase(confirm: bool = False) -> str | None:
    """The key passphrase: PARTNER_CA_KEY_PASSPHRASE, else a hidden prompt on a terminal
    (typed twice when ``confirm``: a typo there would lock the keys away for good)."""
    value = os.environ.get("PARTNER_CA_KEY_PASSPHRASE")
    if value:
        return value
    if sys.stdin.isatty():
        return str(typer.prompt("CA key passphrase", hide_input=True,
                                confirmation_prompt=confirm))
    return None


@contextmanager
def system(need_keys: bool = False, initialised: bool | None = True,
           user_side: bool = False) -> Iterator[PartnerCa]:
    """Open the configured system; turn every refusal into a one-line error and an exit code.

    The state is checked before any secret is asked for: a command that needs an
    initialised CA (``initialised``: True), or one that is not (``init``: False), says so
    first; then the key passphrase is asked for and the keys opened at once, so that a wrong
    passphrase ends here (exit 3), before anything is recorded.

    ``user_side``: a partner's command never asks for a CA secret. In the embedded wiring the
    CA signs in this process only when the CA role's own settings carry its passphrase
    (PARTNER_CA_KEY_PASSPHRASE, as on a one-machine installation); otherwise the request is
    recorded and the running ``serve`` signs it."""
    settings = load_settings()
    # in-process delivery makes the CA sign here: only where it can (its keys are opened first)
    in_process = not settings.kafka_bootstrap and (
        (need_keys and not user_side) or settings.key_passphrase is not None)
    try:
        built = build(settings, transport="in-process" if in_process else None)
    except StoreUnavailable as exc:
        fail(str(exc), EXIT_SETUP)
    except Exception as exc:  # noqa: BLE001 - a view's store may be unreachable too
        fail(f"cannot open the stores: {exc}".splitlines()[0], EXIT_SETUP)
    try:
        if initialised:
            built.ca.authority()
        elif initialised is False and built.ca.is_initialised():
            fail("the CA is already initialised [ca-already-initialised]")
        if need_keys:
            passphrase = _passphrase(confirm=not initialised)
            if passphrase is None:
                fail("no CA key passphrase: set PARTNER_CA_KEY_PASSPHRASE or run on a "
                     "terminal", EXIT_SETUP)
            built.ca.keys = key_store(settings, passphrase)
            if initialised:
                built.ca.unlock()
        elif in_process and initialised:
            built.ca.unlock()  # keys from the CA role's settings: a wrong passphrase ends here
        yield built
        built.pump()
    except (CaNotInitialised, KeyStoreError) as exc:
        fail(f"{exc} [{exc.code}]", EXIT_SETUP)
    except DomainError as exc:
        fail(f"{exc} [{exc.code}]")
    finally:
        built.close()


# -- init and demo ----------------------------------------------------------
@app.command()
def init(
    root_name: Annotated[str | None, typer.Option(help="Root CA common name.")] = None,
    issuing_name: Annotated[str | None, typer.Option(help="Issuing CA common name.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create the CA hierarchy (root + issuing CA); keys are stored encrypted with the
    passphrase (asked twice on a terminal)."""
    settings = load_settings()
    with system(need_keys=True, initialised=False) as s:
        authority = s.ca.initialise(root_name or settings.root_name,
                                    issuing_name or settings.issuing_name)
        settings.chain_path.write_text(authority.issuing_certificate_pem
                                       + authority.root_certificate_pem)
        apply_migrations(settings.store_url("ca"))
        keys = settings.data_dir / "keys"
        result(as_json, f"CA initialised: root '{authority.root_name}', issuing "
                        f"'{authority.issuing_name}' (keys in {keys})",
               root=authority.root_name, issuing=authority.issuing_name, keys=str(keys),
               chain=str(settings.chain_path))


@app.command()
def demo(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per event.")] = False,
) -> None:
    """Run the manual's whole story on a throw-away embedded system and print its timeline."""
    from adapters.entrypoints.demo import demo_system, run_story

    started = time.perf_counter()
    with demo_system() as (s, passphrase):
        run_story(s, passphrase)
        entries = timeline(s.portal, s.ca)
    if as_json:
        for entry in entries:
            sys.stdout.write(json.dumps(entry.as_json()) + "\n")
        return
    _print_timeline(entries)
    out.print(f"\n{len(entries)} events in {time.perf_counter() - started:.2f} s")


_TERSE_SKIP = {"request_id", "otp_id", "key_fingerprint", "session_expires_at", "not_before"}


def _print_timeline(entries: list[TimelineEntry]) -> None:
    """One line per domain event: time, store, aggregate, event, key facts."""
    out.print("[bold]Partner CA — the manual's story as domain events[/bold]")
    for entry in entries:
        facts = " ".join(f"{k}={v}" for k, v in entry.event.public_fields().items()
                         if v is not None and k not in _TERSE_SKIP)
        out.print(f"{entry.event.timestamp:%Y-%m-%d %H:%M:%S}  {entry.store:<6}  "
                  f"{entry.aggregate:<18} {entry.type:<22} {facts}",
                  soft_wrap=True, markup=False, highlight=False)


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
    if not settings.kafka_bootstrap and role not in (*HTTP_ROLES, *EMBEDDED_ROLES):
        fail(f"--role {role} needs PARTNER_CA_KAFKA_BOOTSTRAP (the broker address)", EXIT_SETUP)
    # the OCSP and CRL roles sign nothing: the CA role publishes what they serve
    signing_roles = ("ca", "all", "ca-inbox",
                     *(EMBEDDED_ROLES if not settings.kafka_bootstrap else ()))
    passphrase: str | None = None
    try:
        if role in HTTP_ROLES:
            probe = opening()(open_ca_store, settings)  # serve roles start at once
            try:
                probe.authority()  # not initialised: said at once
            finally:
                probe.close()
        if role in signing_roles:
            ca = opening()(build_ca, settings, make_clock(settings))
            try:
                ca.authority()  # not initialised: said before any secret is asked for
                passphrase = _passphrase()
                if passphrase is None:
                    fail("no CA key passphrase: set PARTNER_CA_KEY_PASSPHRASE or run on a "
                         "terminal", EXIT_SETUP)
                ca.keys = key_store(settings, passphrase)
                ca.unlock()  # a wrong passphrase stops the role here, before it serves
            finally:
                ca.close()
        run_role(role, settings, passphrase)
    except StoreUnavailable as exc:
        fail(str(exc), EXIT_SETUP)
    except DomainError as exc:  # not initialised, keys that do not open, …
        fail(f"{exc} [{exc.code}]", EXIT_SETUP)
    except (OSError, ValueError) as exc:  # a listen address taken or not a socket
        fail(f"cannot serve --role {role}: {exc}", EXIT_SETUP)


# -- ops ----------------------------------------------------------------------
AppOpt = Annotated[str, typer.Option("--app", help="ca, portal or all.")]


def _apps(s: PartnerCa, which: str) -> list[Any]:
    if which not in ("ca", "portal", "all"):
        fail(f"--app must be ca, portal or all, not {which!r}", EXIT_USAGE)
    return [a for a in (s.ca, s.portal) if which in ("all", a.name)]


def _serial(text: str) -> str:
    """A serial as typed, in the form the stores keep it; exit 2 if it is not one."""
    try:
        return parse_serial(text)
    except DomainError as exc:
        fail(f"{exc} [{exc.code}]", EXIT_USAGE)


def _parse_at(text: str) -> datetime:
    """An ISO 8601 instant (UTC when no offset is given), or exit 2."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        fail(f"{text!r} is not an ISO 8601 instant", EXIT_USAGE)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@audit_app.command("history")
def audit_history(
    user_id: Annotated[str | None, typer.Option("--user", help="User identifier.")] = None,
    serial: Annotated[str | None, typer.Option("--serial", help="Certificate serial (hex).")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False,
) -> None:
    """One timeline across the portal's and the CA's logs for a user or a certificate,
    with the emails sent about it."""
    import json as jsonlib

    from projections.timeline import history

    if (user_id is None) == (serial is None):
        fail("give exactly one of --user or --serial", EXIT_USAGE)
    settings = load_settings()
    with system(need_keys=False) as s:
        entries = history(timeline(s.portal, s.ca), user_id,
                          _serial(serial) if serial else None)
        mails = [m for m in _mails(settings)
                 if (user_id and m.params.get("user_id") == user_id)
                 or (serial and m.params.get("serial") == _serial(serial))]
    if as_json:
        for entry in entries:
            out.print(jsonlib.dumps(entry.as_json(), default=str), soft_wrap=True,
                      markup=False, highlight=False)
        for mail in mails:
            out.print(jsonlib.dumps({"type": "MailSent" if mail.state == "sent" else "MailPending",
                                     "kind": mail.kind, "to": mail.recipient,
                                     "sent_at": mail.sent_at, "id": mail.id}, default=str),
                      soft_wrap=True, markup=False, highlight=False)
        return
    _print_timeline(entries)
    for mail in mails:
        out.print(f"{mail.sent_at or '(pending)'}  mail  {mail.kind} to {mail.recipient}",
                  markup=False, highlight=False)


def _mails(settings: Settings) -> list[Any]:
    from adapters.storage.persistence import mail_outbox

    try:
        return mail_outbox(settings.store_url("portal"), settings.data_dir).all()
    except Exception:  # noqa: BLE001 - no outbox yet (no notifier has run): no mails
        return []


@audit_app.command("at")
def audit_at(
    moment: Annotated[str, typer.Argument(help="ISO 8601 instant, e.g. 2027-03-01T12:00:00Z.")],
    serial: Annotated[str, typer.Option("--serial", help="Certificate serial (hex).")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON.")] = False,
) -> None:
    """Status of a certificate at a past instant, the event that decided it, and the CRL and
    OCSP signer that were current then."""
    import json as jsonlib

    from ca_core.authority import Authority
    from ca_core.eventmodel import all_events

    at = _parse_at(moment)
    with system(need_keys=False) as s:
        found = s.ca.status_at(_serial(serial), at)
        crl = None
        signer = None
        for _, event in all_events(s.ca):
            if event.timestamp > at:
                break
            if isinstance(event, Authority.CrlPublished):
                crl = event
            elif isinstance(event, Authority.OcspSignerIssued):
                signer = event
    data = {"serial": found.serial, "at": at.isoformat(), "status": found.status,
            "reason": found.reason, "decided_by": found.decided_by,
            "decided_at": found.decided_at.isoformat() if found.decided_at else None,
            "event_version": found.event_version,
            "crl_number": crl.crl_number if crl else None,
            "crl_this_update": crl.this_update.isoformat() if crl else None,
            "crl_log_position": crl.log_position if crl else None,
            "ocsp_signer_serial": signer.serial if signer else None}
    if as_json:
        out.print(jsonlib.dumps(data), soft_wrap=True, markup=False, highlight=False)
        return
    for key, value in data.items():
        out.print(f"{key:<20} {value}", markup=False, highlight=False)


@audit_app.command("replay")
def audit_replay(
    scratch: Annotated[Path | None, typer.Option(
        help="Directory for the rebuilt views (SQLite), kept for inspection "
             "(default: a temporary directory). On PostgreSQL the rebuilt status view and "
             "OCSP answers go to schema partner_ca_replay of the CA's database instead.")] = None,
    signatures: Annotated[bool, typer.Option(
        "--signatures", help="Also verify the signature of every stored OCSP response "
                             "(about 80 µs each); what each one says is always checked.")]
    = False,
    as_json: JsonOpt = False,
) -> None:
    """Rebuild every projection from position 0 into a scratch store and compare it row by
    row with the live one (status view, OCSP responses, email outbox), and check that every
    stored OCSP response says what its row says; exit 1 on differences."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from adapters.audit.replay import replay, total_positions

    settings = load_settings()
    with system(need_keys=False) as s:
        total = total_positions(s.ca, s.portal)
    with Progress(TextColumn("replaying"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("log positions"), console=Console(stderr=True),
                  transient=True) as progress:
        task = progress.add_task("replay", total=total)
        report = replay(settings, scratch, tick=lambda n: progress.advance(task, n),
                        verify_signatures=signatures)
    for difference in report.differences:
        sys.stderr.write(f"error: {difference}\n")
    rate = report.events / report.seconds if report.seconds else 0.0
    result(as_json, f"{report.events:,} logged events covered in {report.seconds:.1f} s "
                    f"({rate:,.0f}/s); {report.decoded:,} events read, decoded and replayed "
                    f"({report.decoded / (report.seconds or 1):,.0f}/s); "
                    + ", ".join(f"{view}: {n:,} rows" for view, n in report.compared.items())
                    + f"; {len(report.differences)} difference(s)",
           events=report.events, decoded=report.decoded, seconds=round(report.seconds, 3),
           compared=report.compared, differences=[str(d) for d in report.differences])
    if report.differences:
        raise typer.Exit(EXIT_REFUSED)


@audit_app.command("checkpoint")
def audit_checkpoint(which: AppOpt = "all", as_json: JsonOpt = False) -> None:
    """Sign a tree head over each log (RFC 6962 Merkle root); a copy goes to <data_dir>/audit."""
    from adapters.audit.tree_heads import audit_key, checkpoint

    settings = load_settings()
    with system(need_keys=True) as s:
        if s.ca.keys is None:
            fail("no key store configured", EXIT_SETUP)
        key = audit_key(s.ca.keys, settings.data_dir / "keys" / "audit.pub.pem")
        for application in _apps(s, which):
            size = checkpoint(application, key, published=settings.data_dir / "audit" /
                              "heads.jsonl")
            result(as_json, f"{application.name}: signed tree head over {size} events",
                   app=application.name, tree_size=size)


HeadsOpt = Annotated[list[Path] | None, typer.Option(
    "--heads", help="More copies of the signed heads (JSON lines, e.g. from `audit fetch-heads`"
                    "); repeatable. <data_dir>/audit/heads.jsonl is always read.")]


@audit_app.command("verify")
def audit_verify(which: AppOpt = "all", heads_files: HeadsOpt = None,
                 as_json: JsonOpt = False) -> None:
    """Recompute every leaf and check every signed tree head; exit 1 naming what differs.
    Says how far the newest valid head reaches and when it was signed: events after it
    are not covered yet."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    from adapters.audit.tree_heads import verify

    settings = load_settings()
    public_file = settings.data_dir / "keys" / "audit.pub.pem"
    try:
        public = load_pem_public_key(public_file.read_bytes())
    except OSError:
        fail(f"no audit public key at {public_file}: run 'partner-ca audit checkpoint' first",
             EXIT_SETUP)
    if not isinstance(public, ec.EllipticCurvePublicKey):
        fail(f"{public_file} is not an EC public key", EXIT_SETUP)
    bad = 0
    with system(need_keys=False) as s:
        for application in _apps(s, which):
            checked = verify(application, public, [settings.data_dir / "audit" / "heads.jsonl",
                                                   *(heads_files or [])])
            for finding in checked.findings:
                sys.stderr.write(f"error: {application.name}: {finding}\n")
            bad += len(checked.findings)
            verdict = ("intact" if not checked.findings
                       else f"{len(checked.findings)} finding(s)")
            result(as_json, f"{application.name}: {checked.events} events, {checked.heads} "
                            f"signed tree heads, {verdict}; {checked.coverage()}",
                   app=application.name, events=checked.events, heads=checked.heads,
                   intact=not checked.findings, findings=[str(f) for f in checked.findings],
                   covered=checked.covered, uncovered=checked.uncovered,
                   covered_signed_at=checked.covered_signed_at)
    if bad:
        raise typer.Exit(EXIT_REFUSED)


def _print_proof(make: Callable[[PartnerCa], dict[str, Any]]) -> None:
    """Proofs are JSON whether or not ``--json`` is given (docs/audit.md checks them)."""
    with system(need_keys=False) as s:
        try:
            proof = make(s)
        except ValueError as exc:
            fail(str(exc), EXIT_USAGE)
    sys.stdout.write(json.dumps(proof, indent=2) + "\n")


def _one_app(s: PartnerCa, which: str) -> Any:
    if which not in ("ca", "portal"):
        fail(f"--app must be ca or portal, not {which!r}", EXIT_USAGE)
    return s.ca if which == "ca" else s.portal


@audit_app.command("prove")
def audit_prove(
    position: Annotated[int, typer.Argument(help="Log position (notification id) of the event.")],
    which: Annotated[str, typer.Option("--app", help="ca or portal.")] = "ca",
    size: Annotated[int | None, typer.Option(
        help="Tree size of the signed head to prove against (default: the latest).")] = None,
    as_json: JsonOpt = True,
) -> None:
    """Inclusion proof (RFC 6962 audit path) of one stored event in a signed tree head, as
    JSON: the leaf data, its hash, the path and the head (docs/audit.md shows how to check
    it without this program)."""
    from adapters.audit.tree_heads import inclusion

    _print_proof(lambda s: inclusion(_one_app(s, which), position, size))


@audit_app.command("consistency")
def audit_consistency(
    old_size: Annotated[int, typer.Option("--from", help="Tree size of the older signed head.")],
    new_size: Annotated[int | None, typer.Option(
        "--to", help="Tree size of the newer signed head (default: the latest).")] = None,
    which: Annotated[str, typer.Option("--app", help="ca or portal.")] = "ca",
    as_json: JsonOpt = True,
) -> None:
    """Consistency proof (RFC 6962) that the older signed tree is a prefix of the newer one:
    nothing covered by the older head was changed, removed or reordered. JSON."""
    from adapters.audit.tree_heads import consistency

    _print_proof(lambda s: consistency(_one_app(s, which), old_size, new_size))


@audit_app.command("fetch-heads")
def audit_fetch_heads(
    out_file: Annotated[Path, typer.Option("--out", help="Where to write them (JSON lines).")],
    as_json: JsonOpt = False,
) -> None:
    """Copy every signed tree head published on Kafka (ca-events, portal-events) into a file
    for `audit verify --heads` — copies the database's administrators cannot rewrite."""
    from adapters.transport.kafka.heads import fetch_heads, write_heads

    settings = load_settings()
    if not settings.kafka_bootstrap:
        fail("PARTNER_CA_KAFKA_BOOTSTRAP is not set", EXIT_SETUP)
    try:
        heads = fetch_heads(settings.kafka_bootstrap, settings.kafka_topic_prefix)
    except Exception as exc:  # noqa: BLE001 - broker trouble of any kind is one set-up error
        fail(f"cannot read the tree heads from Kafka: {exc}", EXIT_SETUP)
    write_heads(heads, out_file)
    result(as_json, f"{len(heads)} signed tree head(s) written to {out_file}",
           heads=len(heads), file=str(out_file))


@ops_app.command("token")
def ops_token(
    name: Annotated[str, typer.Option(help="Who acts with this token (recorded on every action).")],
    role: Annotated[list[str], typer.Option(help="admin:<MODULE> or operator (repeatable).")],
    as_json: JsonOpt = False,
) -> None:
    """Create (or replace) the ops API token of NAME; printed once, only its hash is kept."""
    from adapters.portal.ops_auth import OpsTokens

    settings = load_settings()
    try:
        token = OpsTokens(settings.data_dir / "ops-tokens.json").create(name, role)
    except DomainError as exc:
        fail(f"{exc} [{exc.code}]")
    if as_json:
        result(True, "", name=name, roles=sorted(role), token=token)
        return
    out.print(f"ops token for {name} ({', '.join(sorted(role))}), shown once:", markup=False)
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
        changed = s.ca.revoke(_serial(serial), reason, operator)
        result(as_json, f"revoked {_serial(serial)} ({reason.value})" if changed
               else f"{_serial(serial)} was already revoked", serial=_serial(serial),
               reason=reason.value, changed=changed)


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
            moment = _parse_at(at)
            _print_status([asdict(s.ca.status_at(_serial(serial), moment))], as_json)
            return
        apply_migrations(settings.store_url("ca"))
        projection = RevocationStatusProjection(
            status_view(settings.store_url("ca"), settings.data_dir))
        catch_up(projection, s.ca)
        rows = ([projection.view.get(_serial(serial))] if serial
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
    from adapters.ca.publishing import crl_publisher

    settings = load_settings()
    with system(need_keys=True) as s:
        apply_migrations(settings.store_url("ca"))
        publisher = crl_publisher(s.ca, settings)
        publisher.validity = timedelta(hours=hours)
        done = publisher.publish(copy=output)
        written = [publisher.target, *([output] if output else [])]
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
            a.issuing_certificate_pem, a.root_certificate_pem]
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


# -- the user's side ----------------------------------------------------------
def _prompt_secret(what: str) -> str:
    """A hidden prompt on a terminal; without one, exit 3 instead of waiting for input."""
    if not sys.stdin.isatty():
        fail(f"no {what.lower()}: give it as an option or environment variable, or run on a "
             "terminal", EXIT_SETUP)
    return str(typer.prompt(what, hide_input=True))


def _revocation_passwords() -> tuple[str, str]:
    """Revocation password typed twice (hidden); scripts may use PARTNER_CA_REVOCATION_PASSWORD."""
    env = os.environ.get("PARTNER_CA_REVOCATION_PASSWORD")
    if env is not None:
        again = os.environ.get("PARTNER_CA_REVOCATION_PASSWORD_AGAIN", env)
        return env, again
    return _prompt_secret("Revocation password"), _prompt_secret("Revocation password (again)")


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        fail(f"cannot read {what} {path}: {exc.strerror}", EXIT_USAGE)


def _checked_request(s: PartnerCa, csr_pem: str) -> tuple[str, str]:
    """The revocation password twice, and R3's checks that need no session, before anything
    is used up (the OTP, a certificate login)."""
    first, second = _revocation_passwords()
    s.portal.check_request(csr_pem, first, second)
    return first, second


def _report_request(s: PartnerCa, request_id: UUID, as_json: bool) -> None:
    request = s.portal.request(request_id)
    if request.state == "rejected":
        fail(f"request {request_id} was rejected by the CA: {request.rejection}")
    result(as_json, f"request {request_id}: {request.state}"
           + (f", serial {request.serial}" if request.serial else ""),
           request_id=request_id, state=request.state, serial=request.serial,
           not_after=request.not_after)


TokenOpt = Annotated[str | None, typer.Option(
    "--token", help="Token label: the key lives on this PKCS#11 token and the client talks to "
                    "the portal API (PARTNER_CA_PORTAL_URL).")]
KeyLabel = Annotated[str, typer.Option("--key-label", help="Label of the key on the token.")]
PortalUrl = Annotated[str | None, typer.Option("--portal", help="Portal API base URL.")]
PinFd = Annotated[int | None, typer.Option("--pin-fd", help="Read the token PIN from this fd.")]
WaitTimeout = Annotated[float, typer.Option(help="Seconds to wait for the CA's answer.")]


@client_app.command("request")
def client_request(
    user_id: Annotated[str, typer.Option("--user", help="User identifier.")],
    csr: Annotated[Path | None, typer.Option(help="PKCS#10 CSR (PEM), without --token.")] = None,
    otp: Annotated[str | None, typer.Option(help="The OTP (else prompted, hidden).")] = None,
    token: TokenOpt = None, key_label: KeyLabel = "partner-ca", portal: PortalUrl = None,
    pin_fd: PinFd = None,
    wait: Annotated[bool, typer.Option(help="With --token: wait for issuance and put the "
                                            "certificate on the token.")] = True,
    timeout: WaitTimeout = 300.0,
    as_json: JsonOpt = False,
) -> None:
    """Log in with the OTP and request a certificate (R2, R3); the CA answers asynchronously (R4).

    With --token: the key pair is generated on the token, the CSR signed there, and the
    client waits for issuance, picks the certificate up and puts it on the token. With
    --no-wait it stops after the submission; `client wait <request-id>` resumes.

    Everything that can be checked before the OTP is redeemed is checked first (the CSR,
    the key policy, the two revocation password entries): a refusal there leaves the OTP
    usable."""
    if token is not None:
        from adapters.client.token_cli import client_request_with_token

        client_request_with_token(user_id, otp, token, key_label, portal, pin_fd, wait, timeout,
                                  as_json)
        return
    if csr is None:
        fail("give --csr (key file) or --token (PKCS#11 token)", EXIT_USAGE)
    csr_pem = _read(csr, "CSR")
    with system(user_side=True) as s:
        first, second = _checked_request(s, csr_pem)
        secret = otp if otp is not None else _prompt_secret("One-time password")
        session = s.portal.login_with_otp(user_id, secret)
        request_id = s.portal.submit_request(session, csr_pem, first, second)
        s.pump()
        _report_request(s, request_id, as_json)


@client_app.command("pickup-link")
def client_pickup_link(
    link: Annotated[str, typer.Argument(help="The link from the email.")],
    token: Annotated[str, typer.Option("--token", help="Token label to put it on.")],
    key_label: KeyLabel = "partner-ca", portal: PortalUrl = None, pin_fd: PinFd = None,
    as_json: JsonOpt = False,
) -> None:
    """Follow the emailed single-use link and put the certificate and chain on the token (R4)."""
    from adapters.client.token_cli import client_pickup_link_with_token

    client_pickup_link_with_token(link, token, key_label, portal, pin_fd, as_json)


@client_app.command("wait")
def client_wait(
    request_id: Annotated[UUID, typer.Argument(help="Request id (from `client request`).")],
    token: Annotated[str | None, typer.Option(
        "--token", help="Token label (default: the one the request was made with).")] = None,
    timeout: WaitTimeout = 300.0, pin_fd: PinFd = None,
    as_json: JsonOpt = False,
) -> None:
    """Wait for a request made with `client request --token` (progress shown), then pick the
    certificate up and put it with its chain on the token (R4)."""
    from adapters.client.token_cli import client_wait_with_token

    client_wait_with_token(str(request_id), token, pin_fd, timeout, as_json=as_json)


@client_app.command("pickup")
def client_pickup(
    request_id: Annotated[UUID, typer.Argument(help="Request id.")],
    out_file: Annotated[Path | None, typer.Option(
        "--out", help="Where to write the certificate (local store).")] = None,
    user_id: Annotated[str | None, typer.Option("--user", help="Logged-in user.")] = None,
    link_token: Annotated[str | None, typer.Option(
        help="Token from the emailed pickup link (local store).")] = None,
    chain_out: Annotated[Path | None, typer.Option(help="Where to write the chain.")] = None,
    token: Annotated[str | None, typer.Option(
        "--token", help="PKCS#11 token label: pick a request made with `client request "
                        "--token` up over the portal API and put it on the token.")] = None,
    pin_fd: PinFd = None,
    as_json: JsonOpt = False,
) -> None:
    """Pick up an issued certificate with its chain (R4): onto the token over the portal API
    (--token), or from the local store into files (--out with --user or --link-token)."""
    if token is not None:
        from adapters.client.token_cli import client_wait_with_token

        client_wait_with_token(str(request_id), token, pin_fd, 0.0, wait=False, as_json=as_json)
        return
    if out_file is None:
        fail("give --token (PKCS#11 token) or --out with --user or --link-token", EXIT_USAGE)
    if (user_id is None) == (link_token is None):
        fail("give exactly one of --user or --link-token", EXIT_USAGE)
    with system(need_keys=False) as s:
        picked = (s.portal.pickup_with_link(request_id, link_token) if link_token
                  else s.portal.pickup(request_id, user_id or ""))
        out_file.write_text(picked.certificate_pem)
        if chain_out:
            chain_out.write_text(picked.chain_pem)
        result(as_json, f"certificate {picked.serial} written to {out_file}",
               request_id=request_id, serial=picked.serial, certificate=str(out_file),
               chain=str(chain_out) if chain_out else None)


def _cert_login(s: PartnerCa, cert: Path, key: Path) -> CertificateSession:
    certificate_pem = _read(cert, "certificate")
    try:
        user_key = softtoken.load_key(_read(key, "key").encode())
    except (ValueError, TypeError) as exc:
        fail(f"cannot load key {key}: {exc}", EXIT_USAGE)
    challenge = s.portal.new_challenge()
    return s.portal.login_with_certificate(certificate_pem, challenge,
                                           softtoken.sign_challenge(user_key, challenge))


CertOpt = Annotated[Path, typer.Option("--cert", help="Your certificate (PEM).")]
KeyOpt = Annotated[Path, typer.Option("--key", help="Its private key (PEM).")]


CertOptional = Annotated[Path | None, typer.Option("--cert", help="Your certificate (PEM).")]
KeyOptional = Annotated[Path | None, typer.Option("--key", help="Its private key (PEM).")]


def _files(cert: Path | None, key: Path | None) -> tuple[Path, Path]:
    if cert is None or key is None:
        fail("give --cert and --key (files) or --token (PKCS#11 token)", EXIT_USAGE)
    return cert, key


@client_app.command("login")
def client_login(cert: CertOptional = None, key: KeyOptional = None, token: TokenOpt = None,
                 key_label: KeyLabel = "partner-ca", portal: PortalUrl = None,
                 pin_fd: PinFd = None, as_json: JsonOpt = False) -> None:
    """Log in with the certificate: sign the portal's challenge with the key (R5)."""
    if token is not None:
        from adapters.client.token_cli import client_login_with_token

        client_login_with_token(token, key_label, portal, pin_fd, as_json)
        return
    cert, key = _files(cert, key)
    with system(need_keys=False) as s:
        session = _cert_login(s, cert, key)
        result(as_json, f"logged in as {session.user_id} ({session.module}) with "
                        f"{session.serial}", user_id=session.user_id, module=session.module,
               serial=session.serial)


@client_app.command("renew")
def client_renew(
    cert: CertOptional = None,
    key: KeyOptional = None,
    csr: Annotated[Path | None, typer.Option(help="New CSR (PEM) made with a new key.")] = None,
    token: TokenOpt = None, key_label: KeyLabel = "partner-ca",
    new_key_label: Annotated[str, typer.Option(help="Label of the new key on the token.")]
    = "partner-ca-renewed",
    portal: PortalUrl = None, pin_fd: PinFd = None,
    as_json: JsonOpt = False,
) -> None:
    """Renew while the current certificate is valid (R7); with --token a new key is made on it."""
    if token is not None:
        from adapters.client.token_cli import client_renew_with_token

        client_renew_with_token(token, key_label, new_key_label, portal, pin_fd, as_json)
        return
    cert, key = _files(cert, key)
    if csr is None:
        fail("give --csr with --cert/--key", EXIT_USAGE)
    csr_pem = _read(csr, "CSR")
    with system(user_side=True) as s:
        first, second = _checked_request(s, csr_pem)
        session = _cert_login(s, cert, key)
        request_id = s.portal.request_renewal(session, csr_pem, first, second)
        s.pump()
        _report_request(s, request_id, as_json)


@client_app.command("revoke")
def client_revoke(
    cert: CertOptional = None,
    key: KeyOptional = None,
    reason: Annotated[str, typer.Option(help="RFC 5280 reason.")] = "unspecified",
    token: TokenOpt = None, key_label: KeyLabel = "partner-ca", portal: PortalUrl = None,
    pin_fd: PinFd = None, as_json: JsonOpt = False,
) -> None:
    """Revoke your certificate with the revocation password (R9)."""
    if token is not None:
        from adapters.client.token_cli import client_revoke_with_token

        client_revoke_with_token(token, key_label, reason, portal, pin_fd, as_json)
        return
    cert, key = _files(cert, key)
    with system(user_side=True) as s:
        password = os.environ.get("PARTNER_CA_REVOCATION_PASSWORD") or _prompt_secret(
            "Revocation password")
        session = _cert_login(s, cert, key)
        s.portal.revoke(session, password, reason)
        s.pump()
        result(as_json, f"revocation of {session.serial} recorded", serial=session.serial,
               reason=reason)



def main() -> None:
    app()
