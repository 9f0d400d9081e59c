"""Published CRL files: written by the CA role (atomically, shards beside the full CRL), read by
the CRL server and by the CA role's publisher to know what is being served. No key here."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509

from ca_core.authority import for_generation
from ca_core.crl_signing import PublishedCrls

log = logging.getLogger("partner_ca.crl")


def served_crl(data_dir: Path) -> Path:
    """Where the full CRL is published and served from (shards beside it)."""
    return data_dir / "crl" / "issuing.crl"

def _replace(target: Path, data: bytes) -> None:
    """Readers see the old or the new file, never half of one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)


def served_crl_of(data_dir: Path, generation: int) -> Path:
    """The full CRL of issuing CA ``generation`` (``issuing.crl``, ``issuing-g1.crl``, …)."""
    target = served_crl(data_dir)
    return target.with_name(for_generation(target.name, generation))


def write_crls(published: PublishedCrls, target: Path, copy: Path | None = None,
               generation: int = 0) -> None:
    """Put a publication where it is served: the full CRL at ``target``, each shard beside it
    (``shard-<n>.crl``; ``shard-<n>-g<g>.crl`` for a later issuing CA), every file replaced
    atomically; ``copy`` gets the full CRL too."""
    for shard, shard_der in published.shards.items():
        _replace(target.with_name(for_generation(f"shard-{shard}.crl", generation)), shard_der)
    _replace(target, published.full)
    if copy is not None and copy.resolve() != target.resolve():
        _replace(copy, published.full)


@dataclass(frozen=True)
class CrlFile:
    """A CRL as served: its bytes and what they say about themselves."""

    body: bytes
    etag: str
    number: int
    this_update: datetime
    next_update: datetime | None


class CrlFiles:
    """Reads served CRL files, parsed once per version of the file (stat: inode, size, mtime)."""

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[tuple[int, int, int], CrlFile]] = {}

    def read(self, path: Path) -> CrlFile | None:
        try:
            stat = path.stat()
            key = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
            cached = self._cache.get(path)
            if cached is not None and cached[0] == key:
                return cached[1]
            body = path.read_bytes()
        except OSError:
            return None
        try:
            crl = x509.load_der_x509_crl(body)
            number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        except (ValueError, x509.ExtensionNotFound):
            log.warning("%s is not a CRL of ours; it will be replaced", path)
            return None
        found = CrlFile(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"', number,
                        crl.last_update_utc, crl.next_update_utc)
        self._cache[path] = (key, found)
        return found


