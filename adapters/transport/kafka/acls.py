"""The ACLs of a secured cluster: which principal may do what on which topic.

The broker's standard authorizer denies whatever no ACL allows. ``grant`` (``partner-ca kafka
grant``, run with the admin credentials) writes, for one topic prefix:

- the portal: write and create ``requests`` and ``portal-events``, read ``ca-events``, and
  its inboxes' consumer group ``<prefix>portal-inbox``;
- the CA: read ``requests``, write and create ``ca-events``, and the group
  ``<prefix>ca-inbox``;
- a reader (another portal service, an auditor): read ``ca-events`` and ``portal-events``,
  and consumer groups whose id starts with its name.

Read and write imply describe. The idempotent producer needs no cluster ACL on Kafka 4.
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePattern,
    ResourceType,
)

from adapters.transport.kafka.inbox import group_id
from adapters.transport.kafka.service_pki import PRINCIPALS
from adapters.transport.kafka.topics import topic_names
from ca_core.messages import CA_EVENTS, PORTAL_EVENTS, REQUESTS

#: what each kind of principal may do, per logical topic
RIGHTS: dict[str, tuple[tuple[str, ACLOperation], ...]] = {
    "portal": ((REQUESTS, ACLOperation.WRITE), (REQUESTS, ACLOperation.CREATE),
               (PORTAL_EVENTS, ACLOperation.WRITE), (PORTAL_EVENTS, ACLOperation.CREATE),
               (CA_EVENTS, ACLOperation.READ)),
    "ca": ((REQUESTS, ACLOperation.READ), (CA_EVENTS, ACLOperation.WRITE),
           (CA_EVENTS, ACLOperation.CREATE)),
    "reader": ((CA_EVENTS, ACLOperation.READ), (PORTAL_EVENTS, ACLOperation.READ)),
}

#: the application whose inbox group each principal kind joins
INBOX_GROUP = {"portal": "portal", "ca": "ca"}


def acls_for(kind: str, principal: str, prefix: str) -> list[ACL]:
    """The ACLs of one principal; a reader may also use consumer groups whose id starts with
    its own name (``User:billing`` → ``billing…``)."""
    if kind not in RIGHTS:
        raise ValueError(f"unknown kind {kind!r}; one of {', '.join(RIGHTS)}")
    names = topic_names(prefix)
    acls = [ACL(principal=principal, host="*", operation=operation,
                permission_type=ACLPermissionType.ALLOW,
                resource_pattern=ResourcePattern(ResourceType.TOPIC, names[logical],
                                                 ACLResourcePatternType.LITERAL))
            for logical, operation in RIGHTS[kind]]
    if kind in INBOX_GROUP:
        acls.append(ACL(principal=principal, host="*", operation=ACLOperation.READ,
                        permission_type=ACLPermissionType.ALLOW,
                        resource_pattern=ResourcePattern(
                            ResourceType.GROUP, group_id(prefix, INBOX_GROUP[kind]),
                            ACLResourcePatternType.LITERAL)))
    if kind == "reader":
        acls.append(ACL(principal=principal, host="*", operation=ACLOperation.READ,
                        permission_type=ACLPermissionType.ALLOW,
                        resource_pattern=ResourcePattern(
                            ResourceType.GROUP, principal.removeprefix("User:"),
                            ACLResourcePatternType.PREFIXED)))
    return acls


def default_grants() -> list[tuple[str, str]]:
    """(kind, principal) for the three principals ``partner-ca kafka credentials`` writes."""
    return [(kind, f"User:{PRINCIPALS[kind]}") for kind in RIGHTS]


def grant(bootstrap: str, admin_security: dict[str, Any], prefix: str,
          grants: list[tuple[str, str]]) -> list[str]:
    """Create the ACLs (idempotent: an ACL that exists is created again as the same one);
    returns one line per ACL, ``principal operation topic``."""
    wanted = [acl for kind, principal in grants for acl in acls_for(kind, principal, prefix)]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="partner-ca-acl-admin",
                             **admin_security)
    try:
        result = admin.create_acls(wanted)
    finally:
        admin.close()
    if result["failed"]:
        acl, error = result["failed"][0]
        raise RuntimeError(f"the broker refused ACL {acl}: {error}")
    return [f"{acl.principal} {acl.operation.name} "
            f"{acl.resource_pattern.resource_type.name.lower()} "
            f"{acl.resource_pattern.resource_name}"
            f"{'*' if acl.resource_pattern.pattern_type == ACLResourcePatternType.PREFIXED else ''}"
            for acl in wanted]
