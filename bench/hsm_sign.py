"""Signatures per second through the PKCS#11 token (SoftHSM2) against the in-memory key.

Usage: python -m bench.hsm_sign [--seconds 5] [--threads 1 2 4]

Makes a throw-away SoftHSM2 token (softhsm2-util), generates a P-256 key on it through
``Pkcs11KeyStore`` and signs a certificate-sized input (ECDSA, SHA-256) as fast as it can
from 1, 2 and 4 threads (the session pool lets them sign at once), then the same with an
in-memory cryptography key.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.ca.hsm import Pkcs11KeyStore

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
DATA = os.urandom(600)  # about a TBSCertificate


def rate(key: ec.EllipticCurvePrivateKey, seconds: float, threads: int) -> float:
    counts = [0] * threads
    stop = time.monotonic() + seconds

    def work(i: int) -> None:
        while time.monotonic() < stop:
            key.sign(DATA, ec.ECDSA(hashes.SHA256()))
            counts[i] += 1

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="partner-ca-hsm-bench-"))
    (base / "tokens").mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {base / 'tokens'}\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    label = f"bench{uuid.uuid4().hex[:6]}"
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--pin",
                    "123456", "--so-pin", "87654321"], check=True, capture_output=True)
    store = Pkcs11KeyStore(MODULE, label, "123456")
    token_key, _ = store.generate("issuing", "secp256r1")
    memory_key = ec.generate_private_key(ec.SECP256R1())
    for threads in args.threads:
        on_token = rate(token_key, args.seconds, threads)  # type: ignore[arg-type]
        in_memory = rate(memory_key, args.seconds, threads)
        print(f"{threads} thread(s): token {on_token:,.0f} signatures/s, in-memory key "
              f"{in_memory:,.0f}/s ({on_token / in_memory:.0%})")
    store.close()


if __name__ == "__main__":
    main()
