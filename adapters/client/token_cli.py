"""`partner-ca token …` and the token-based `partner-ca client …` flows (over the portal API).
One module for the partner's machine (about 400 lines of thin commands over the token and
the portal client; adapters/client/token.py and portal_client.py do the work).

PINs: ``PARTNER_CA_TOKEN_PIN`` (and ``PARTNER_CA_TOKEN_NEW_PIN`` for change-pin), or
``--pin-fd N`` (a line read from file descriptor N), else a hidden prompt on a
terminal. A PIN is never echoed, logged, or sent to the service.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import httpx
import typer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from adapters.client.portal_client import PortalClient, PortalRefused
from adapters.client.token import Token, TokenError, list_tokens
from adapters.output import EXIT_REFUSED, EXIT_SETUP, JsonOpt, fail, load_settings, out, result
from ca_core.errors import DomainError
from ca_core.request import check_revocation_passwords
from ca_core.x509profile import split_pems

token_app = typer.Typer(help="The hardware token over PKCS#11 (what 'Správce karty' does).",
                        no_args_is_help=True)

TokenOpt = Annotated[str, typer.Option("--token", help="Token label.")]
KeyLabelOpt = Annotated[str, typer.Option("--key-label", help="Label of the key on the token.")]
PinFdOpt = Annotated[int | None, typer.Option("--pin-fd", help="Read the PIN from this file "
                                                               "descriptor (scripts).")]
PortalOpt = Annotated[str | None, typer.Option("--portal", help="Portal API base URL (default "
                                                                "PARTNER_CA_PORTAL_URL).")]


def _secret(env: str, prompt: str, fd: int | None = None) -> str:
    if fd is not None:
        with os.fdopen(os.dup(fd)) as source:
            return source.readline().rstrip("\n")
    if os.environ.get(env):
        return os.environ[env]
    if not sys.stdin.isatty():
        fail(f"no {prompt.lower()}: set {env}, use --pin-fd, or run on a terminal", EXIT_SETUP)
    return str(typer.prompt(prompt, hide_input=True))


def open_token(label: str, pin_fd: int | None) -> Token:
    return Token(label, _secret("PARTNER_CA_TOKEN_PIN", "Token PIN", pin_fd),
                 load_settings().pkcs11_module)


def _run(step: Callable[[], None]) -> None:
    """Token, portal and rule refusals become one-line errors (exit 1; 3 for set-up)."""
    try:
        step()
    except (TokenError, PortalRefused, DomainError) as exc:
        fail(f"{exc} [{exc.code}]", EXIT_SETUP if exc.code in (
            "token-module", "portal-unreachable") else EXIT_REFUSED)


# -- token ---------------------------------------------------------------------------
@token_app.command("list")
def token_list(as_json: JsonOpt = False) -> None:
    """Tokens present in the PKCS#11 module (PARTNER_CA_PKCS11_MODULE)."""
    def step() -> None:
        tokens = list_tokens(load_settings().pkcs11_module)
        if as_json:
            for t in tokens:
                result(True, "", slot=t.slot, label=t.label, serial=t.serial,
                       manufacturer=t.manufacturer, model=t.model)
            return
        table = Table("slot", "label", "serial", "manufacturer", "model")
        for t in tokens:
            table.add_row(str(t.slot), t.label, t.serial, t.manufacturer, t.model)
        out.print(table)
    _run(step)


@token_app.command("objects")
def token_objects(token: TokenOpt, pin_fd: PinFdOpt = None, as_json: JsonOpt = False) -> None:
    """Keys and certificates on the token (private keys: extractable? sensitive?)."""
    def step() -> None:
        objects = open_token(token, pin_fd).objects()
        if as_json:
            for o in objects:
                result(True, "", kind=o.kind, label=o.label, id=o.id_hex,
                       extractable=o.extractable, sensitive=o.sensitive)
            return
        table = Table("kind", "label", "id", "extractable", "sensitive")
        for o in objects:
            table.add_row(o.kind, o.label, o.id_hex, _yes_no(o.extractable), _yes_no(o.sensitive))
        out.print(table)
    _run(step)


def _yes_no(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "no")


@token_app.command("keygen")
def token_keygen(token: TokenOpt, key_label: KeyLabelOpt = "partner-ca",
                 pin_fd: PinFdOpt = None, as_json: JsonOpt = False) -> None:
    """Generate an EC P-256 key pair on the token (private key non-extractable)."""
    def step() -> None:
        key_id = open_token(token, pin_fd).generate_key(key_label)
        result(as_json, f"key {key_label} (id {key_id}) generated on token {token}",
               token=token, key_label=key_label, key_id=key_id)
    _run(step)


@token_app.command("csr")
def token_csr(token: TokenOpt, user: Annotated[str, typer.Option("--user")],
              out_file: Annotated[Path, typer.Option("--out")],
              key_label: KeyLabelOpt = "partner-ca", pin_fd: PinFdOpt = None,
              as_json: JsonOpt = False) -> None:
    """A PKCS#10 request for the token key, signed on the token."""
    def step() -> None:
        out_file.write_text(open_token(token, pin_fd).csr(key_label, user))
        result(as_json, f"CSR written to {out_file}", csr=str(out_file), key_label=key_label)
    _run(step)


@token_app.command("import")
def token_import(token: TokenOpt, cert: Annotated[Path, typer.Option("--cert")],
                 chain: Annotated[Path | None, typer.Option("--chain")] = None,
                 key_label: KeyLabelOpt = "partner-ca", pin_fd: PinFdOpt = None,
                 as_json: JsonOpt = False) -> None:
    """Put the issued certificate (and its chain) on the token, beside its key."""
    def step() -> None:
        pems = [cert.read_text(), *(split_pems(chain.read_text()) if chain else [])]
        open_token(token, pin_fd).import_certificates(key_label, pems)
        result(as_json, f"{len(pems)} certificate(s) imported onto {token}",
               token=token, imported=len(pems))
    _run(step)



@token_app.command("show")
def token_show(token: TokenOpt, pin_fd: PinFdOpt = None, as_json: JsonOpt = False) -> None:
    """Certificates on the token with their validity and status (asks the OCSP responder)."""
    def step() -> None:
        certs = open_token(token, pin_fd).certificates()
        by_subject = {c.subject: c for _, c in certs}
        table = Table("label", "subject", "serial", "valid until", "status")
        for label, cert in certs:
            issuer = by_subject.get(cert.issuer)
            status = _ocsp_status(cert, issuer) if issuer is not None and issuer != cert else "-"
            row = (label, cert.subject.rfc4514_string(), format(cert.serial_number, "X"),
                   cert.not_valid_after_utc.isoformat(), status)
            if as_json:
                result(True, "", **dict(zip(("label", "subject", "serial", "not_after",
                                             "status"), row, strict=True)))
            table.add_row(*row)
        if not as_json:
            out.print(table)
    _run(step)


def _ocsp_status(cert: x509.Certificate, issuer: x509.Certificate) -> str:
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        url = next(d.access_location.value for d in aia
                   if d.access_method == AuthorityInformationAccessOID.OCSP)
    except (x509.ExtensionNotFound, StopIteration):
        return "no OCSP URL"
    request = ocsp.OCSPRequestBuilder().add_certificate(
        cert, issuer, hashes.SHA1()).build()  # noqa: S303 - RFC 5019 CertID, not a signature
    try:
        reply = httpx.post(url, content=request.public_bytes(serialization.Encoding.DER),
                           headers={"Content-Type": "application/ocsp-request"}, timeout=10)
        answer = ocsp.load_der_ocsp_response(reply.content)
    except (httpx.HTTPError, ValueError) as exc:
        return f"OCSP unavailable ({type(exc).__name__})"
    if answer.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        return f"OCSP: {answer.response_status.name.lower()}"
    return answer.certificate_status.name.lower()


@token_app.command("change-pin")
def token_change_pin(token: TokenOpt, pin_fd: PinFdOpt = None, as_json: JsonOpt = False) -> None:
    """R6: change the token PIN — old PIN once, new PIN twice; nothing goes to the service."""
    def step() -> None:
        old = _secret("PARTNER_CA_TOKEN_PIN", "Current PIN", pin_fd)
        new = _secret("PARTNER_CA_TOKEN_NEW_PIN", "New PIN")
        again = os.environ.get("PARTNER_CA_TOKEN_NEW_PIN") or _secret(
            "PARTNER_CA_TOKEN_NEW_PIN_AGAIN", "New PIN again")
        if new != again:
            fail("the two new PINs differ [token-pin-mismatch]")
        Token(token, old, load_settings().pkcs11_module).change_pin(old, new)
        result(as_json, f"PIN of token {token} changed", token=token, changed=True)
    _run(step)


@token_app.command("export-chain")
def token_export_chain(token: TokenOpt, out_file: Annotated[Path, typer.Option("--out")],
                       pin_fd: PinFdOpt = None, as_json: JsonOpt = False) -> None:
    """R12: the CA chain from the token, PEM, for registering in the operating system."""
    def step() -> None:
        chain = [c for label, c in sorted(open_token(token, pin_fd).certificates(),
                                          key=lambda found: found[0])
                 if "-chain-" in label]  # -chain-1 (issuing CA), then -chain-2 (root)
        out_file.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM)
                                      for c in chain))
        result(as_json, f"{len(chain)} CA certificate(s) written to {out_file}",
               chain=str(out_file), certificates=len(chain))
    _run(step)


# -- client flows with the token, over the portal API --------------------------------------
def _portal(url: str | None) -> PortalClient:
    return PortalClient(url or load_settings().portal_url)


def _passwords() -> tuple[str, str]:
    first = _secret("PARTNER_CA_REVOCATION_PASSWORD", "Revocation password")
    second = os.environ.get("PARTNER_CA_REVOCATION_PASSWORD_AGAIN") or (
        first if os.environ.get("PARTNER_CA_REVOCATION_PASSWORD") else
        str(typer.prompt("Revocation password again", hide_input=True)))
    return first, second


@dataclass
class PendingRequest:
    """A submitted request the client has not picked up yet: enough to wait for it and pick it
    up later (``client wait`` / ``client pickup --token``), in another shell or after Ctrl-C.
    ``session`` is the portal session bearer token (valid for the portal's session lifetime);
    the file is readable by its owner only and removed after the pickup."""

    request_id: str
    user_id: str
    token_label: str
    key_label: str
    portal_url: str
    session: str

    @staticmethod
    def _path(request_id: str) -> Path:
        return load_settings().client_state_dir / "requests" / f"{request_id}.json"

    def save(self) -> Path:
        path = self._path(self.request_id)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump(asdict(self), file)
        return path

    @classmethod
    def load(cls, request_id: str) -> PendingRequest:
        path = cls._path(request_id)
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            fail(f"no pending request {request_id} in {path.parent} (submitted from another "
                 "machine or account? use the emailed link: partner-ca client pickup-link) "
                 "[request-unknown]")
        except (ValueError, TypeError) as exc:
            fail(f"{path} is damaged ({exc}); use the emailed link [request-unknown]")

    def forget(self) -> None:
        self._path(self.request_id).unlink(missing_ok=True)


def _wait(client: PortalClient, pending: PendingRequest, timeout: float) -> None:
    """Until the CA has answered; a rejection is a clear error."""
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=out, transient=True) as progress:
        task = progress.add_task("waiting for the CA …")
        found = client.wait(pending.session, pending.request_id, timeout, tick=lambda state:
                            progress.update(task, description=f"request {pending.request_id}: "
                                                              f"{state}"))
    if found["state"] == "rejected":
        pending.forget()
        fail(f"the CA rejected request {pending.request_id}: {found.get('rejection')} "
             "[request-rejected]")


def _import(client: PortalClient, pending: PendingRequest, token: Token, as_json: bool) -> None:
    picked = client.pickup(pending.session, pending.request_id)
    token.import_certificates(pending.key_label, [picked["certificate_pem"],
                                                  *split_pems(picked["chain_pem"])])
    pending.forget()
    result(as_json, f"request {pending.request_id}: certificate {picked['serial']} is on token "
                    f"{token.label} ({pending.key_label})", request_id=pending.request_id,
           state="picked-up", serial=picked["serial"], token=token.label,
           key_label=pending.key_label)


def _submitted(pending: PendingRequest, token: Token, client: PortalClient, wait: bool,
               timeout: float, as_json: bool) -> None:
    where = pending.save()
    if not wait:
        result(as_json, f"request {pending.request_id} submitted; remembered in {where}; when "
                        f"the email arrives: partner-ca client wait {pending.request_id}",
               request_id=pending.request_id, state="submitted", remembered_in=str(where))
        return
    if not as_json:
        out.print(f"request {pending.request_id} submitted", markup=False)
    _wait(client, pending, timeout)
    _import(client, pending, token, as_json)


def client_request_with_token(user_id: str, otp: str | None, token_label: str, key_label: str,
                              portal: str | None, pin_fd: int | None, wait: bool = True,
                              timeout: float = 300.0, as_json: bool = False) -> None:
    def step() -> None:
        token = open_token(token_label, pin_fd)
        first, second = _passwords()
        check_revocation_passwords(first, second)  # refused here, the OTP stays usable
        secret = otp or _secret("PARTNER_CA_OTP", "One-time password")
        client = _portal(portal)
        token.generate_key(key_label)
        csr = token.csr(key_label, user_id)
        session = client.login_with_otp(user_id, secret)
        request_id = client.submit(session, csr, first, second)
        _submitted(PendingRequest(request_id, user_id, token_label, key_label,
                                  str(client.http.base_url), session), token, client, wait,
                   timeout, as_json)
    _run(step)


def client_wait_with_token(request_id: str, token_label: str | None, pin_fd: int | None,
                           timeout: float, wait: bool = True, as_json: bool = False) -> None:
    """``client wait`` (until issued, then pick up) and ``client pickup --token`` (now or
    never: an unanswered request is ``certificate-not-ready``)."""
    def step() -> None:
        pending = PendingRequest.load(request_id)
        token = open_token(token_label or pending.token_label, pin_fd)
        client = _portal(pending.portal_url)
        if wait:
            _wait(client, pending, timeout)
        _import(client, pending, token, as_json)
    _run(step)


def client_pickup_link_with_token(link: str, token_label: str, key_label: str,
                                  portal: str | None, pin_fd: int | None,
                                  as_json: bool = False) -> None:
    def step() -> None:
        token = open_token(token_label, pin_fd)
        picked = _portal(portal).pickup_link(link)
        token.import_certificates(key_label, [picked["certificate_pem"],
                                              *split_pems(picked["chain_pem"])])
        result(as_json, f"certificate {picked['serial']} is on token {token_label} "
                        f"({key_label})", serial=picked["serial"], token=token_label,
               key_label=key_label)
    _run(step)


def _login(client: PortalClient, token: Token, key_label: str) -> dict[str, object]:
    mine = [c for label, c in token.certificates() if label == key_label]
    if not mine:
        fail(f"no certificate labelled {key_label!r} on token {token.label} [token-no-cert]")
    pem = mine[0].public_bytes(serialization.Encoding.PEM).decode()
    return client.login_with_certificate(pem, lambda data: token.sign(key_label, data))


def client_login_with_token(token_label: str, key_label: str, portal: str | None,
                            pin_fd: int | None, as_json: bool = False) -> None:
    def step() -> None:
        found = _login(_portal(portal), open_token(token_label, pin_fd), key_label)
        result(as_json, f"logged in as {found['user_id']} ({found['module']}) with "
                        f"{found['serial']}", user_id=found["user_id"], module=found["module"],
               serial=found["serial"])
    _run(step)


def client_renew_with_token(token_label: str, key_label: str, new_key_label: str,
                            portal: str | None, pin_fd: int | None,
                            as_json: bool = False) -> None:
    def step() -> None:
        token = open_token(token_label, pin_fd)
        client = _portal(portal)
        found = _login(client, token, key_label)
        session = str(found["token"])
        first, second = _passwords()
        check_revocation_passwords(first, second)
        token.generate_key(new_key_label)
        request_id = client.renew(session, token.csr(new_key_label, str(found["user_id"])),
                                  first, second)
        _submitted(PendingRequest(request_id, str(found["user_id"]), token_label, new_key_label,
                                  str(client.http.base_url), session), token, client, True,
                   300.0, as_json)
    _run(step)


def client_revoke_with_token(token_label: str, key_label: str, reason: str, portal: str | None,
                             pin_fd: int | None, as_json: bool = False) -> None:
    def step() -> None:
        token = open_token(token_label, pin_fd)
        client = _portal(portal)
        found = _login(client, token, key_label)
        password = _secret("PARTNER_CA_REVOCATION_PASSWORD", "Revocation password")
        client.revoke(str(found["token"]), password, reason)
        result(as_json, f"revocation of {found['serial']} requested", serial=found["serial"],
               reason=reason)
    _run(step)
