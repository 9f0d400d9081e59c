"""The CA chain, public (R12): PEM and PKCS#7."""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations.

from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from fastapi import APIRouter
from fastapi.responses import Response

from ca_core.portal import Portal
from ca_core.x509profile import from_pem


def chain_routes(portal: Portal) -> APIRouter:
    """R12: the CA chain, public."""
    api = APIRouter()

    # R12: the chain ------------------------------------------------------------------------
    @api.get("/v1/chain.pem", tags=["chain"], response_class=Response,
             responses={200: {"content": {"application/pem-certificate-chain": {}}}})
    def chain_pem() -> Response:
        """The issuing CAs (the current one first; two for a while after a rollover), then
        the root, PEM."""
        return Response(portal.chain().chain_pem, media_type="application/pem-certificate-chain")

    @api.get("/v1/chain.p7b", tags=["chain"], response_class=Response,
             responses={200: {"content": {"application/pkcs7-mime": {}}}})
    def chain_pkcs7() -> Response:
        """The issuing CAs and the root as a degenerate PKCS#7 (certs-only), DER."""
        trust = portal.chain()
        der = pkcs7.serialize_certificates([*map(from_pem, trust.issuing_pems),
                                            from_pem(trust.root_pem)], Encoding.DER)
        return Response(der, media_type="application/pkcs7-mime")

    return api
