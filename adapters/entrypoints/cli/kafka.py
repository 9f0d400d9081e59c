"""Commands for the operators of a secured Kafka cluster: the service hierarchy's
credentials, record-signing key rotation, and the ACLs per principal (docs/kafka.md).

Imports inside the commands are on purpose: they keep ``--help`` and every other command's
start-up short."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from adapters.output import EXIT_SETUP, EXIT_USAGE, JsonOpt, fail, load_settings, result
from ca_core.errors import DomainError

kafka_app = typer.Typer(help="Secured Kafka: credentials, signing keys, ACLs.",
                        no_args_is_help=True)

DirArg = Annotated[Path, typer.Argument(help="The credentials directory.")]


@kafka_app.command("credentials")
def kafka_credentials(
    out: DirArg,
    host: Annotated[list[str] | None, typer.Option(
        "--host", help="Broker host name or IP for its certificate (repeatable).")] = None,
    days: Annotated[int, typer.Option(help="Validity of the TLS certificates.")] = 365,
    signing_days: Annotated[float, typer.Option(
        help="Validity of the record-signing certificates (the window consumers accept "
             "them in).")] = 90.0,
    as_json: JsonOpt = False,
) -> None:
    """Write a new service hierarchy: service CA, broker keystore, and one folder per role
    (portal, ca, reader, admin) with its TLS identity, signing key and accepted peers."""
    from adapters.transport.kafka.service_pki import generate

    if out.exists() and any(out.iterdir()):
        fail(f"{out} is not empty; credentials are never overwritten", EXIT_USAGE)
    generate(out, tuple(host or ("127.0.0.1", "localhost")), days, signing_days)
    result(as_json, f"service hierarchy written to {out} (give each host only its role's "
                    f"folder; keep {out / 'issuer'} offline)", directory=str(out))


@kafka_app.command("add-reader")
def kafka_add_reader(
    out: DirArg,
    name: Annotated[str, typer.Argument(help="The service's principal name (its CN).")],
    as_json: JsonOpt = False,
) -> None:
    """Credentials for another portal service that reads ca-events and portal-events; then
    `partner-ca kafka grant --reader User:<name>`."""
    from adapters.transport.kafka.service_pki import add_reader

    try:
        folder = add_reader(out, name)
    except (ValueError, OSError) as exc:
        fail(str(exc), EXIT_USAGE)
    result(as_json, f"credentials for User:{name} in {folder}", principal=f"User:{name}",
           folder=str(folder))


@kafka_app.command("rotate-signing")
def kafka_rotate_signing(
    out: DirArg,
    role: Annotated[str, typer.Option(help="portal or ca.")],
    signing_days: Annotated[float, typer.Option(help="Validity of the new key.")] = 90.0,
    as_json: JsonOpt = False,
) -> None:
    """A new record-signing key for a role; its certificate is added to the peers of every
    consumer, where the old one stays accepted until it expires (the overlap)."""
    from adapters.transport.kafka.service_pki import rotate_signing_key

    try:
        cert = rotate_signing_key(out, role, signing_days)
    except (ValueError, OSError) as exc:
        fail(str(exc), EXIT_USAGE)
    result(as_json, f"new signing key for {role}, valid until {cert.not_valid_after_utc:%Y-%m-%d}"
                    "; copy the peers.pem files to the consumers, then restart the role",
           role=role, not_after=cert.not_valid_after_utc)


@kafka_app.command("grant")
def kafka_grant(
    portal: Annotated[list[str] | None, typer.Option(help="Portal principal(s).")] = None,
    ca: Annotated[list[str] | None, typer.Option(help="CA principal(s).")] = None,
    reader: Annotated[list[str] | None, typer.Option(help="Read-only principal(s).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create the ACLs for PARTNER_CA_KAFKA_TOPIC_PREFIX's topics, as the admin principal
    (PARTNER_CA_KAFKA_CREDENTIALS/admin), and set compression.type=uncompressed on those
    topics that exist (docs/kafka.md). Without options: the portal, CA and reader
    principals of `partner-ca kafka credentials`."""
    from adapters.transport.kafka.acls import default_grants, grant
    from adapters.transport.kafka.security import role_credentials
    from adapters.transport.kafka.topics import harden_topics

    settings = load_settings()
    if not settings.kafka_bootstrap:
        fail("PARTNER_CA_KAFKA_BOOTSTRAP is not set", EXIT_SETUP)
    grants = ([("portal", p) for p in portal or ()] + [("ca", p) for p in ca or ()]
              + [("reader", p) for p in reader or ()]) or default_grants()
    for _, principal in grants:
        if not principal.startswith("User:"):
            fail(f"{principal!r}: a principal is written User:<name>", EXIT_USAGE)
    try:
        admin = role_credentials(settings.kafka_credentials, "admin")
        lines = grant(settings.kafka_bootstrap, admin.client_options,
                      settings.kafka_topic_prefix, grants)
        configured = harden_topics(settings.kafka_bootstrap, settings.kafka_topic_prefix,
                                   admin.client_options)
    except DomainError as exc:
        fail(f"{exc} [{exc.code}]", EXIT_SETUP)
    except Exception as exc:  # noqa: BLE001 - broker trouble of any kind is a set-up error
        fail(f"cannot create the ACLs or set the topics: {exc}".splitlines()[0], EXIT_SETUP)
    result(as_json, "\n".join(lines + configured), acls=lines, topic_settings=configured)
