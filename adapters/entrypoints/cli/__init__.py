"""The ``partner-ca`` command line (Typer), one module per audience: ``ops`` (operators and
module administrators), ``kafka`` (the secured cluster's operators), ``client`` (partners),
``audit`` (auditors), ``demo``; ``token`` is the user's token tool
(adapters/client/token_cli.py). ``common`` holds what they share.

Exit codes: 0 success; 1 a rule refused the command (one-line error with its code);
2 usage error; 3 set-up problem (not initialised, no or wrong passphrase, bad configuration,
store unreachable). Every command that prints a result has ``--json``.
"""

from __future__ import annotations

from adapters.client.token_cli import token_app
from adapters.entrypoints.cli import demo as _demo  # noqa: F401 - registers its command
from adapters.entrypoints.cli.audit import audit_app
from adapters.entrypoints.cli.client import client_app
from adapters.entrypoints.cli.common import app
from adapters.entrypoints.cli.kafka import kafka_app
from adapters.entrypoints.cli.ops import ca_app, ops_app, otp_app, partner_app

app.add_typer(otp_app, name="otp")
app.add_typer(partner_app, name="partner")
app.add_typer(client_app, name="client")
app.add_typer(token_app, name="token")
app.add_typer(audit_app, name="audit")
app.add_typer(ops_app, name="ops")
app.add_typer(kafka_app, name="kafka")
app.add_typer(ca_app, name="ca")

__all__ = ["app", "main"]


def main() -> None:
    app()
