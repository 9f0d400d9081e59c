-- OCSP response store (PostgreSQL), fed by projections/ocsp.py: one row per serial,
-- pre-signed responses for SHA-1 and SHA-256 CertIDs. Applied by yoyo-migrations.
-- depends: 0001_revocation_status
CREATE TABLE IF NOT EXISTS ocsp_responses (
    serial          TEXT PRIMARY KEY,
    status          TEXT NOT NULL,
    reason          TEXT,
    revoked_at      TIMESTAMPTZ,
    sha1_der        BYTEA NOT NULL,
    sha256_der      BYTEA NOT NULL,
    this_update     TIMESTAMPTZ NOT NULL,
    next_update     TIMESTAMPTZ NOT NULL,
    signer_serial   TEXT NOT NULL,
    cause_position  BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS ocsp_responses_this_update ON ocsp_responses (this_update);
