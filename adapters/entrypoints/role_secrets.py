"""Which secret each long-running role may hold, and the start of a role that was handed
more: a process never holds a secret its role does not need (DESIGN §3a; issue 26, item 7).

``settings`` can drop a secret, but ``os.environ`` keeps it, worker processes inherit it,
and ``/proc/<pid>/environ`` shows the environment the process was started with whatever
Python later removes. So a role started with a secret of another role's (a shell that
exported the CA key passphrase starting the OCSP responder) starts itself again, at once,
without it (``os.execve``): nothing it runs, and no child, ever sees it."""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger("partner_ca.serve")

CA, PORTAL, OCSP = "ca", "portal", "ocsp"
#: each secret the environment may carry, and the duties whose processes may hold it
SECRETS: dict[str, frozenset[str]] = {
    "PARTNER_CA_KEY_PASSPHRASE": frozenset({CA}),
    "PARTNER_CA_HSM_PIN": frozenset({CA}),
    "PARTNER_CA_HSM_ROOT_PIN": frozenset({CA}),
    "PARTNER_CA_OCSP_KEY_PASSPHRASE": frozenset({CA, OCSP}),  # the CA role writes the keys
    "PARTNER_CA_AUDIT_KEY_PASSPHRASE": frozenset({CA, PORTAL}),  # each signs its log's heads
    "PARTNER_CA_PORTAL_SECRET": frozenset({PORTAL}),
    "PARTNER_CA_SMTP_PASSWORD": frozenset({PORTAL}),
}

#: the duties of each role in the Kafka wiring (embedded roles run both applications)
DUTIES: dict[str, frozenset[str]] = {
    "portal": frozenset({PORTAL}), "portal-api": frozenset({PORTAL}),
    "portal-relay": frozenset({PORTAL}), "portal-inbox": frozenset({PORTAL}),
    "notifier": frozenset({PORTAL}),
    "ca": frozenset({CA}), "ca-inbox": frozenset({CA}), "ca-relay": frozenset({CA}),
    "all": frozenset({CA, PORTAL}),
    "ocsp": frozenset({OCSP}), "crl": frozenset(),
}


def not_for(role: str, embedded: bool, environ: dict[str, str] | None = None) -> list[str]:
    """The secret variables in ``environ`` that ``role`` must not hold."""
    env = os.environ if environ is None else environ
    duties = frozenset({CA, PORTAL, OCSP}) if embedded else DUTIES.get(role, frozenset())
    return sorted(name for name, holders in SECRETS.items()
                  if env.get(name) and not holders & duties)


def start_without_foreign_secrets(role: str, embedded: bool) -> None:
    """Start this process again without the secrets its role must not hold (no return then);
    returns at once when there are none."""
    foreign = not_for(role, embedded)
    if not foreign:
        return
    if os.path.basename(sys.argv[0]) != "partner-ca":  # called in-process (tests): no exec
        for name in foreign:
            os.environ.pop(name, None)
        return
    log.warning("--role %s holds none of %s: starting again without them", role,
                ", ".join(foreign))
    clean = {k: v for k, v in os.environ.items() if k not in foreign}
    sys.stdout.flush()
    sys.stderr.flush()
    # the same command, the same open file descriptors (fd:N listeners), without them
    os.execve(sys.executable, [sys.executable, *sys.argv], clean)  # noqa: S606
