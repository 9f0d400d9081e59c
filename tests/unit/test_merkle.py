"""RFC 6962 Merkle trees: the Certificate Transparency test vectors, proofs verified by RFC 9162."""

from __future__ import annotations

import hashlib

import pytest

from ca_core import merkle

# Certificate Transparency's reference test leaves and roots (RFC 6962 reference code)
CT_LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f")]
CT_ROOTS = {
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}


def reference_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1 literally (recursive split at the largest power of two < n)."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k << 1 < len(leaves):
        k <<= 1
    return merkle.node_hash(reference_root(leaves[:k]), reference_root(leaves[k:]))


def hashes(n: int) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


@pytest.mark.parametrize("size", sorted(CT_ROOTS))
def test_certificate_transparency_vectors(size: int) -> None:
    leaves = [merkle.leaf_hash(d) for d in CT_LEAVES[:size]]
    assert merkle.root(leaves).hex() == CT_ROOTS[size]


def test_iterative_root_equals_the_rfc_recursion() -> None:
    for n in range(1, 80):
        assert merkle.root(hashes(n)) == reference_root(hashes(n)), n
    assert merkle.root([]) == hashlib.sha256(b"").digest()


def test_every_inclusion_proof_verifies_and_a_wrong_one_does_not() -> None:
    for n in range(1, 40):
        leaves = hashes(n)
        top = merkle.root(leaves)
        for i in range(n):
            proof = merkle.inclusion_proof(i, leaves)
            assert merkle.verify_inclusion(i, n, leaves[i], proof, top), (i, n)
            assert not merkle.verify_inclusion(i, n, merkle.leaf_hash(b"forged"), proof, top)
            if proof:
                bent = [proof[0][::-1], *proof[1:]]
                assert not merkle.verify_inclusion(i, n, leaves[i], bent, top)


def test_every_consistency_proof_verifies_and_a_rewritten_history_does_not() -> None:
    for n in range(1, 34):
        leaves = hashes(n)
        for m in range(1, n + 1):
            proof = merkle.consistency_proof(m, leaves)
            old, new = merkle.root(leaves[:m]), merkle.root(leaves)
            assert merkle.verify_consistency(m, n, old, new, proof), (m, n)
            if m < n:
                rewritten = merkle.root([merkle.leaf_hash(b"x"), *leaves[1:m]])
                assert not merkle.verify_consistency(m, n, rewritten, new, proof), (m, n)


def test_all_proofs_at_once_equal_each_proof_and_lead_to_the_root() -> None:
    for n in range(1, 70):
        leaves = [merkle.leaf_hash(bytes([i % 256, i // 256])) for i in range(n)]
        top, proofs = merkle.all_inclusion_proofs(leaves)
        assert top == merkle.root(leaves)
        for i, proof in enumerate(proofs):
            assert proof == merkle.inclusion_proof(i, leaves), (n, i)
            assert merkle.root_from_inclusion(i, n, leaves[i], proof) == top
        assert merkle.root_from_inclusion(n, n, leaves[0], proofs[0]) is None
        if n > 1:
            assert merkle.root_from_inclusion(0, n, leaves[0], proofs[0][:-1]) != top
