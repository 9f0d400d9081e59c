"""Commands for auditors: history, point-in-time status, replay, signed tree heads and
proofs. They read; none of them asks for a CA secret.

Imports inside the commands are on purpose: they keep ``--help`` and every other command's
start-up short."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from adapters.entrypoints.bootstrap import PartnerCa
from adapters.entrypoints.cli.common import (
    AppOpt,
    apps_named,
    print_timeline,
    system,
    typed_instant,
    typed_serial,
)
from adapters.output import (
    EXIT_REFUSED,
    EXIT_SETUP,
    EXIT_USAGE,
    JsonOpt,
    fail,
    load_settings,
    out,
    result,
)
from adapters.settings import Settings
from ca_core.errors import DomainError

audit_app = typer.Typer(help="Auditors: tamper evidence for the event stores.",
                        no_args_is_help=True)




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

    from adapters.audit.history import HistoryIndex

    if (user_id is None) == (serial is None):
        fail("give exactly one of --user or --serial", EXIT_USAGE)
    settings = load_settings()
    with system(need_keys=False) as s:
        entries = HistoryIndex().history([s.portal, s.ca], user_id,
                                         typed_serial(serial) if serial else None)
        mails = [m for m in _mails(settings)
                 if (user_id and m.params.get("user_id") == user_id)
                 or (serial and m.params.get("serial") == typed_serial(serial))]
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
    print_timeline(entries)
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
    serial: Annotated[str | None, typer.Option(
        "--serial", help="Certificate serial (hex); without it, only which issuing CA was "
                         "current.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON.")] = False,
) -> None:
    """Which issuing CA was current at a past instant; with --serial, the certificate's
    status then, the event that decided it, the issuing CA that signed it, and that CA's CRL
    and OCSP signer current then."""
    import json as jsonlib

    from ca_core.authority import Authority
    from ca_core.certificate import Certificate
    from ca_core.eventmodel import all_events
    from ca_core.x509profile import from_pem

    at = typed_instant(moment)
    with system(need_keys=False) as s:
        found = s.ca.status_at(typed_serial(serial), at) if serial else None
        current = s.ca.hierarchy.issuing_ca_at(at)
        issuer = current.generation if current else 0
        if serial:
            issued = next((e for e in s.ca.repository.event_store.get(
                Certificate.id_for(typed_serial(serial)))
                if isinstance(e, Certificate.CertificateIssued)), None)
            issuer = issued.issuer_generation if issued else issuer
        crl: dict[int, Any] = {}
        signer: dict[int, Any] = {}
        for _, event in all_events(s.ca):
            if event.timestamp > at:
                break
            if isinstance(event, Authority.CrlPublished):
                crl[event.generation] = event
            elif isinstance(event, Authority.OcspSignerIssued):
                signer[event.generation] = event
        issuing = s.ca.authority().issuing.get(issuer)
    data: dict[str, Any] = {
        "at": at.isoformat(),
        "issuing_ca_current": current.generation if current else None,
        "issuing_ca_current_subject": from_pem(current.certificate_pem).subject
        .rfc4514_string() if current else None}
    if found is not None:
        data |= {"serial": found.serial, "status": found.status,
                 "reason": found.reason, "decided_by": found.decided_by,
                 "decided_at": found.decided_at.isoformat() if found.decided_at else None,
                 "event_version": found.event_version,
                 "issued_by_ca": issuer if issuing else None,
                 "issued_by_subject": from_pem(issuing.certificate_pem).subject
                 .rfc4514_string() if issuing else None}
    ours_crl, ours_signer = crl.get(issuer), signer.get(issuer)
    data |= {"crl_number": ours_crl.crl_number if ours_crl else None,
             "crl_this_update": ours_crl.this_update.isoformat() if ours_crl else None,
             "crl_log_position": ours_crl.log_position if ours_crl else None,
             "ocsp_signer_serial": ours_signer.serial if ours_signer else None}
    if as_json:
        out.print(jsonlib.dumps(data), soft_wrap=True, markup=False, highlight=False)
        return
    for key, value in data.items():
        out.print(f"{key:<26} {value}", markup=False, highlight=False)


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
    from adapters.entrypoints.audit_wiring import live_stores

    settings = load_settings()
    with system(need_keys=False) as s:
        total = total_positions(s.ca, s.portal)
    with Progress(TextColumn("replaying"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("log positions"), console=Console(stderr=True),
                  transient=True) as progress:
        task = progress.add_task("replay", total=total)
        report = replay(live_stores(settings), scratch, tick=lambda n: progress.advance(task, n),
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
    """Sign a tree head over each log (RFC 6962 Merkle root); a copy goes to <data_dir>/audit.
    With PARTNER_CA_AUDIT_KEY_PASSPHRASE only the audit key is opened (no CA passphrase)."""
    from adapters.audit.tree_heads import audit_key, checkpoint
    from adapters.entrypoints.bootstrap import audit_key_store

    settings = load_settings()
    own_store = settings.audit_key_passphrase is not None
    with system(need_keys=not own_store) as s:
        keys = audit_key_store(settings, s.ca.keys)
        if keys is None:
            fail("no key store configured", EXIT_SETUP)
        key = audit_key(keys, settings.data_dir / "keys" / "audit.pub.pem")
        for application in apps_named(s, which):
            size = checkpoint(application, key, published=settings.data_dir / "audit" /
                              "heads.jsonl")
            result(as_json, f"{application.name}: signed tree head over {size} events",
                   app=application.name, tree_size=size)


@audit_app.command("move-key")
def audit_move_key(as_json: JsonOpt = False) -> None:
    """Copy the audit key from the CA key store into its own (PARTNER_CA_AUDIT_KEY_DIR,
    encrypted with PARTNER_CA_AUDIT_KEY_PASSPHRASE), once, so that the processes that sign
    tree heads need the audit passphrase and never the CA's. Needs both passphrases."""
    from adapters.audit.tree_heads import AUDIT_KEY
    from adapters.entrypoints.bootstrap import audit_key_store

    settings = load_settings()
    if settings.audit_key_passphrase is None:
        fail("set PARTNER_CA_AUDIT_KEY_PASSPHRASE (the audit key's own passphrase) first",
             EXIT_SETUP)
    with system(need_keys=True) as s:
        own = audit_key_store(settings)
        assert own is not None and s.ca.keys is not None
        if own.exists(AUDIT_KEY):
            fail(f"the audit key is already in {settings.audit_keys_dir}", EXIT_SETUP)
        if not s.ca.keys.exists(AUDIT_KEY):
            fail("the CA key store holds no audit key: nothing to move (the first checkpoint "
                 "makes one in its own store)", EXIT_SETUP)
        own.save(AUDIT_KEY, s.ca.keys.load(AUDIT_KEY))
        result(as_json, f"audit key copied to {settings.audit_keys_dir}; remove it from the "
                        "CA key store once every signing host has the copy",
               directory=str(settings.audit_keys_dir))


HeadsOpt = Annotated[list[Path] | None, typer.Option(
    "--heads", help="More copies of the signed heads (JSON lines, e.g. from `audit fetch-heads`"
                    "); repeatable. <data_dir>/audit/heads.jsonl is always read.")]


KeyFileOpt = Annotated[Path | None, typer.Option(
    "--key", help="The audit public key (PEM) as you pinned it (default: "
                  "<data_dir>/keys/audit.pub.pem, which whoever can change the stores may "
                  "change too).")]


@audit_app.command("verify")
def audit_verify(which: AppOpt = "all", heads_files: HeadsOpt = None,
                 key_file: KeyFileOpt = None, as_json: JsonOpt = False) -> None:
    """Recompute every leaf and check every signed tree head; exit 1 naming what differs, or
    when no signed head covers anything (nothing was verified). Says how far the newest
    valid head reaches and when it was signed: events after it are not covered yet.

    Reads only the stored bytes and the public key: it opens no application, so a tampered
    record (in any aggregate) is a finding at its position, never a crash."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    from adapters.audit.tree_heads import verify
    from adapters.storage.persistence import raw_log

    settings = load_settings()
    public_file = key_file or settings.data_dir / "keys" / "audit.pub.pem"
    try:
        public = load_pem_public_key(public_file.read_bytes())
    except OSError:
        fail(f"no audit public key at {public_file}: give the one you pinned with --key",
             EXIT_SETUP)
    except ValueError:
        fail(f"{public_file} is not a PEM public key", EXIT_SETUP)
    if not isinstance(public, ec.EllipticCurvePublicKey):
        fail(f"{public_file} is not an EC public key", EXIT_SETUP)
    if which not in ("ca", "portal", "all"):
        fail(f"--app must be ca, portal or all, not {which!r}", EXIT_USAGE)
    unverified = 0
    for name in [n for n in ("ca", "portal") if which in ("all", n)]:
        try:
            log = raw_log(settings.store_url(name), settings.data_dir, name)
        except DomainError as exc:
            fail(f"{exc} [{exc.code}]", EXIT_SETUP)
        checked = verify(log, public, [settings.data_dir / "audit" / "heads.jsonl",
                                       *(heads_files or [])])
        for finding in checked.findings:
            sys.stderr.write(f"error: {name}: {finding}\n")
        if checked.findings:
            verdict = f"{len(checked.findings)} finding(s)"
        elif checked.intact:
            verdict = "intact"
        else:
            verdict = "not verified"
        unverified += not checked.intact
        result(as_json, f"{name}: {checked.events} events, {checked.heads} "
                        f"signed tree heads, {verdict}; {checked.coverage()}",
               app=name, events=checked.events, heads=checked.heads,
               intact=checked.intact, findings=[str(f) for f in checked.findings],
               covered=checked.covered, uncovered=checked.uncovered,
               covered_signed_at=checked.covered_signed_at)
    if unverified:
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
    from adapters.transport.kafka.security import role_credentials

    settings = load_settings()
    if not settings.kafka_bootstrap:
        fail("PARTNER_CA_KAFKA_BOOTSTRAP is not set", EXIT_SETUP)
    try:  # read as the read-only principal: an auditor cannot publish anything
        reader = role_credentials(settings.kafka_credentials, "reader")
        heads = fetch_heads(settings.kafka_bootstrap, settings.kafka_topic_prefix, reader)
    except DomainError as exc:
        fail(f"{exc} [{exc.code}]", EXIT_SETUP)
    except Exception as exc:  # noqa: BLE001 - broker trouble of any kind is one set-up error
        fail(f"cannot read the tree heads from Kafka: {exc}", EXIT_SETUP)
    write_heads(heads, out_file)
    result(as_json, f"{len(heads)} signed tree head(s) written to {out_file}",
           heads=len(heads), file=str(out_file))

