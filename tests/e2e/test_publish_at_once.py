"""Issue 26 item 14: right after `partner-ca init` a relying party pointed at the CDP got 404
and a just-issued certificate `unauthorized`, until `serve --role ca` had run; after `ca
rollover` the OCSP role answered `unauthorized` for the new CA's certificates (its own too)
while no delegated key passphrase was configured. Real processes, judged by openssl."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import httpx
from cryptography import x509

from tests.support import PASSPHRASE, listener, port_of, until


def _cli(env: dict[str, str], *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["partner-ca", *args], env={**env, **extra}, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def _enroll(env: dict[str, str], tmp: Path, name: str) -> tuple[Path, Path]:
    """A certificate requested and signed in-process by the CLI: (its file, its chain)."""
    otp = json.loads(_cli(env, "otp", "issue", "P24-000123", "--module", "EPAK", "--by",
                          "admin-epak", "--json").stdout)["otp"]
    key, csr = tmp / f"{name}.key", tmp / f"{name}.csr"
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out",
                    str(key)], check=True, capture_output=True)
    subprocess.run(["openssl", "req", "-new", "-key", str(key), "-subj", "/CN=P24-000123",
                    "-out", str(csr)], check=True, capture_output=True)
    done = json.loads(_cli(env, "client", "request", "--user", "P24-000123", "--csr", str(csr),
                           "--json", PARTNER_CA_OTP=otp,
                           PARTNER_CA_REVOCATION_PASSWORD="revocation pw 1").stdout)
    cert, chain = tmp / f"{name}.pem", tmp / f"{name}-chain.pem"
    _cli(env, "client", "pickup", done["request_id"], "--user", "P24-000123", "--out",
         str(cert), "--chain-out", str(chain))
    return cert, chain


def _ocsp(url: str, cert: Path, chain: Path, tmp: Path) -> str:
    issuer = tmp / f"{cert.stem}-issuer.pem"
    pems = chain.read_text().split("-----END CERTIFICATE-----")
    issuer.write_text(pems[0] + "-----END CERTIFICATE-----\n")
    done = subprocess.run(["openssl", "ocsp", "-issuer", str(issuer), "-cert", str(cert),
                           "-CAfile", str(chain), "-url", url + "/ocsp", "-no_nonce"],
                          capture_output=True, text=True, timeout=30)
    return done.stdout + done.stderr


def test_init_and_rollover_publish_what_relying_parties_need_at_once(tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PARTNER_CA_")}
    data = tmp_path / "data"
    ca_env = {**base, "PARTNER_CA_DATA_DIR": str(data), "PARTNER_CA_KEY_PASSPHRASE": PASSPHRASE}
    _cli(ca_env, "init")
    _cli(ca_env, "partner", "register", "P24-000123", "--email", "p@example.com", "--module",
         "EPAK")
    sockets = {"ocsp": listener(), "crl": listener()}
    urls = {role: f"http://127.0.0.1:{port_of(s)}" for role, s in sockets.items()}
    relying = {**base, "PARTNER_CA_DATA_DIR": str(data), "PARTNER_CA_RELYING_POLL_SECONDS": "0.2",
               "PARTNER_CA_OCSP_LISTEN": f"fd:{sockets['ocsp'].fileno()}",
               "PARTNER_CA_CRL_LISTEN": f"fd:{sockets['crl'].fileno()}"}
    started = {role: subprocess.Popen(["partner-ca", "serve", "--role", role], env=relying,
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=(tmp_path / f"{role}.log").open("w"),
                                      pass_fds=(sockets[role].fileno(),))
               for role in ("ocsp", "crl")}  # no CA role runs at all
    for sock in sockets.values():
        sock.close()
    try:
        until(lambda: httpx.get(urls["crl"] + "/crl/issuing.crl").status_code == 200,
              "the CRL served right after init")
        x509.load_der_x509_crl(httpx.get(urls["crl"] + "/crl/issuing.crl").content)
        cert, chain = _enroll(ca_env, tmp_path, "first")
        said = _ocsp(urls["ocsp"], cert, chain, tmp_path)
        assert f"{cert}: good" in said, said
        rolled = json.loads(_cli(ca_env, "ca", "rollover", "--json").stdout)
        assert rolled["generation"] == 1
        new_cert, new_chain = _enroll(ca_env, tmp_path, "second")
        until(lambda: f"{new_cert}: good" in _ocsp(urls["ocsp"], new_cert, new_chain, tmp_path),
              "the new issuing CA's certificate answered good", timeout=20)
        issuing = tmp_path / "issuing-g1.pem"
        pems = new_chain.read_text().split("-----END CERTIFICATE-----")
        issuing.write_text(pems[0] + "-----END CERTIFICATE-----\n")
        root = tmp_path / "root.pem"
        root.write_text(pems[1].lstrip() + "-----END CERTIFICATE-----\n")
        said = subprocess.run(["openssl", "ocsp", "-issuer", str(root), "-cert", str(issuing),
                               "-CAfile", str(root), "-url", urls["ocsp"] + "/ocsp",
                               "-no_nonce"], capture_output=True, text=True, timeout=30)
        assert f"{issuing}: good" in said.stdout, said.stdout + said.stderr
        assert httpx.get(urls["crl"] + "/crl/issuing-g1.crl").status_code == 200
    finally:
        for proc in started.values():
            proc.send_signal(signal.SIGTERM)
        for role, proc in started.items():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
            print(f"--- serve --role {role}:\n{(tmp_path / f'{role}.log').read_text()}")
