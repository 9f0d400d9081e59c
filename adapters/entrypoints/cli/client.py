"""Commands for partners (the user's side, embedded wiring): request, pickup, login,
renewal, revocation with key files. They never ask for a CA secret (``system(user_side=True)``).

Imports inside the commands are on purpose: they keep ``--help`` and every other command's
start-up short."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated
from uuid import UUID

import typer

from adapters.client import softtoken
from adapters.entrypoints.bootstrap import PartnerCa
from adapters.entrypoints.cli.common import (
    system,
)
from adapters.output import (
    EXIT_SETUP,
    EXIT_USAGE,
    JsonOpt,
    fail,
    result,
)
from ca_core.portal import CertificateSession

client_app = typer.Typer(help="The user's side of the portal, with key files (R2–R9).",
                         no_args_is_help=True)


# -- the user's side ----------------------------------------------------------
def _prompt_secret(what: str) -> str:
    """A hidden prompt on a terminal; without one, exit 3 instead of waiting for input."""
    if not sys.stdin.isatty():
        fail(f"no {what.lower()}: give it as an option or environment variable, or run on a "
             "terminal", EXIT_SETUP)
    return str(typer.prompt(what, hide_input=True))


def _secret(env: str, what: str) -> str:
    """A secret from its environment variable, else a hidden prompt — never from argv, which
    every local user can read (ps, /proc/<pid>/cmdline)."""
    value = os.environ.get(env)
    return value if value else _prompt_secret(what)


def _no_argv_secret(value: str | None, option: str, env: str) -> None:
    if value is not None:
        fail(f"{option} is not taken on the command line (every local user can read it there): "
             f"set {env} or type it when asked", EXIT_USAGE)


#: a hidden option that only says where the secret goes now
ArgvSecret = typer.Option(hidden=True, help="Not taken: see the environment variable.")


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
    otp: Annotated[str | None, ArgvSecret] = None,
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
    usable. The OTP comes from PARTNER_CA_OTP or a hidden prompt, never from the command
    line."""
    _no_argv_secret(otp, "--otp", "PARTNER_CA_OTP")
    if token is not None:
        from adapters.client.token_cli import client_request_with_token

        client_request_with_token(user_id, None, token, key_label, portal, pin_fd, wait, timeout,
                                  as_json)
        return
    if csr is None:
        fail("give --csr (key file) or --token (PKCS#11 token)", EXIT_USAGE)
    csr_pem = _read(csr, "CSR")
    with system(user_side=True) as s:
        first, second = _checked_request(s, csr_pem)
        secret = _secret("PARTNER_CA_OTP", "One-time password")
        session = s.portal.login_with_otp(user_id, secret)
        request_id = s.portal.submit_request(session, csr_pem, first, second)
        s.pump()
        _report_request(s, request_id, as_json)


@client_app.command("pickup-link")
def client_pickup_link(
    token: Annotated[str, typer.Option("--token", help="Token label to put it on.")],
    link: Annotated[str | None, typer.Argument(hidden=True, help="Not taken.")] = None,
    key_label: KeyLabel = "partner-ca", portal: PortalUrl = None, pin_fd: PinFd = None,
    as_json: JsonOpt = False,
) -> None:
    """Follow the emailed single-use link and put the certificate and chain on the token (R4).
    The link (it carries a single-use token) comes from PARTNER_CA_PICKUP_LINK or a hidden
    prompt (paste it), never from the command line."""
    _no_argv_secret(link, "the pickup link", "PARTNER_CA_PICKUP_LINK")
    from adapters.client.token_cli import client_pickup_link_with_token

    client_pickup_link_with_token(_secret("PARTNER_CA_PICKUP_LINK", "Pickup link"), token,
                                  key_label, portal, pin_fd, as_json)


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
    by_link: Annotated[bool, typer.Option(
        "--by-link", help="Pick up with the e-mailed link's token (local store): from "
                          "PARTNER_CA_PICKUP_TOKEN or a hidden prompt.")] = False,
    link_token: Annotated[str | None, ArgvSecret] = None,
    chain_out: Annotated[Path | None, typer.Option(help="Where to write the chain.")] = None,
    token: Annotated[str | None, typer.Option(
        "--token", help="PKCS#11 token label: pick a request made with `client request "
                        "--token` up over the portal API and put it on the token.")] = None,
    pin_fd: PinFd = None,
    as_json: JsonOpt = False,
) -> None:
    """Pick up an issued certificate with its chain (R4): onto the token over the portal API
    (--token), or from the local store into files (--out with --user or --by-link)."""
    _no_argv_secret(link_token, "--link-token", "PARTNER_CA_PICKUP_TOKEN")
    if token is not None:
        from adapters.client.token_cli import client_wait_with_token

        client_wait_with_token(str(request_id), token, pin_fd, 0.0, wait=False, as_json=as_json)
        return
    if out_file is None:
        fail("give --token (PKCS#11 token) or --out with --user or --by-link", EXIT_USAGE)
    if (user_id is None) == (not by_link):
        fail("give exactly one of --user or --by-link", EXIT_USAGE)
    secret = _secret("PARTNER_CA_PICKUP_TOKEN", "Pickup link token") if by_link else ""
    with system(need_keys=False) as s:
        picked = (s.portal.pickup_with_link(request_id, secret) if by_link
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
    challenge = s.portal.certificate_login.new_challenge()
    return s.portal.certificate_login.with_signature(certificate_pem, challenge,
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

