"""R1 and R2 on the OneTimePassword aggregate alone (no persistence)."""

from __future__ import annotations

import math
from datetime import timedelta
from uuid import uuid4

import pytest

from ca_core.credentials import OTP_BITS, hash_otp, new_otp, verify_otp
from ca_core.otp import OneTimePassword, OtpRefused
from tests.support import START

LIFETIME = timedelta(minutes=30)


def issue(otp: str = "ABCD-EFGH-IJKL-MNOP") -> OneTimePassword:
    return OneTimePassword(user_id="u", module="EPAK", otp_hash=hash_otp(otp), issued_by="adm",
                           expires_at=START + timedelta(days=21), timestamp=START)


def test_r1_otp_has_at_least_80_random_bits_and_only_its_hash_is_kept() -> None:
    otps = {new_otp() for _ in range(200)}
    assert len(otps) == 200
    alphabet = 32
    assert math.log2(alphabet) * 16 >= OTP_BITS >= 80
    otp = new_otp()
    stored = hash_otp(otp)
    assert otp.replace("-", "") not in stored
    assert verify_otp(otp, stored) and verify_otp(otp.lower(), stored)
    assert not verify_otp(new_otp(), stored)


def test_r1_otp_expires_21_days_after_issue() -> None:
    otp = issue()
    assert not otp.expire_if_due(START + timedelta(days=20, hours=23))
    assert otp.expire_if_due(START + timedelta(days=21))
    with pytest.raises(OtpRefused) as refused:
        otp.redeem("ABCD-EFGH-IJKL-MNOP", START + timedelta(days=22), LIFETIME)
    assert refused.value.code == "otp-expired"


def test_r1_expired_by_time_even_before_the_expiry_event_is_recorded() -> None:
    with pytest.raises(OtpRefused) as refused:
        issue().redeem("ABCD-EFGH-IJKL-MNOP", START + timedelta(days=21), LIFETIME)
    assert refused.value.code == "otp-expired"


def test_r1_superseded_otp_is_refused() -> None:
    otp = issue()
    otp.supersede(uuid4(), START)
    with pytest.raises(OtpRefused) as refused:
        otp.redeem("ABCD-EFGH-IJKL-MNOP", START, LIFETIME)
    assert refused.value.code == "otp-superseded"


def test_r2_otp_is_single_use() -> None:
    otp = issue()
    assert otp.redeem("abcd efgh ijkl mnop", START, LIFETIME)
    with pytest.raises(OtpRefused) as refused:
        otp.redeem("ABCD-EFGH-IJKL-MNOP", START, LIFETIME)
    assert refused.value.code == "otp-used"


def test_r2_five_wrong_attempts_lock_the_otp() -> None:
    otp = issue()
    for _ in range(4):
        assert not otp.redeem("WRONG", START, LIFETIME)
        otp.record_failed_attempt(START, max_attempts=5)
    assert otp.is_open
    otp.record_failed_attempt(START, max_attempts=5)
    assert otp.state == "locked"
    with pytest.raises(OtpRefused) as refused:
        otp.redeem("ABCD-EFGH-IJKL-MNOP", START, LIFETIME)
    assert refused.value.code == "otp-locked"


def test_r2_enrollment_session_expires() -> None:
    otp = issue()
    otp.redeem("ABCD-EFGH-IJKL-MNOP", START, LIFETIME)
    otp.check_session_open(START + LIFETIME - timedelta(seconds=1))
    with pytest.raises(OtpRefused) as refused:
        otp.check_session_open(START + LIFETIME)
    assert refused.value.code == "session-expired"
