"""The few DER pieces the CRL and OCSP encoders write by hand (X.690): lengths, TLVs, the
elements of a SEQUENCE, times, INTEGERs. Public to both encoders; nothing else here."""

from __future__ import annotations

from datetime import datetime


def length(n: int) -> bytes:
    """A definite length, short form below 128, long form above."""
    if n < 0x80:
        return bytes((n,))
    size = (n.bit_length() + 7) // 8
    return bytes((0x80 | size,)) + n.to_bytes(size, "big")


def tlv(tag: int, content: bytes) -> bytes:
    """Tag, length, value."""
    return bytes((tag,)) + length(len(content)) + content


def integer(value: int) -> bytes:
    """A non-negative INTEGER (a leading zero octet where the high bit is set)."""
    return tlv(0x02, value.to_bytes((value.bit_length() + 8) // 8, "big"))


def generalized_time(moment: datetime) -> bytes:
    """GeneralizedTime to the second, UTC (``Z``)."""
    return tlv(0x18, moment.strftime("%Y%m%d%H%M%SZ").encode())


def x509_time(moment: datetime) -> bytes:
    """UTCTime through 2049, GeneralizedTime after (RFC 5280 §4.1.2.5, §5.1.2.4)."""
    if 1950 <= moment.year < 2050:
        return tlv(0x17, moment.strftime("%y%m%d%H%M%SZ").encode())
    return generalized_time(moment)


def elements(der: bytes) -> list[bytes]:
    """The TLVs inside one DER SEQUENCE (definite lengths, as DER requires)."""
    def header(at: int) -> tuple[int, int]:
        first = der[at + 1]
        if first < 0x80:
            return at + 2, first
        size = first & 0x7F
        return at + 2 + size, int.from_bytes(der[at + 2:at + 2 + size], "big")

    start, size = header(0)
    found, at = [], start
    while at < start + size:
        content, inner = header(at)
        found.append(der[at:content + inner])
        at = content + inner
    return found
