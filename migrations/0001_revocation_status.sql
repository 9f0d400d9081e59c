-- Revocation-status view (PostgreSQL), fed by projections/status.py.
-- Applied by yoyo-migrations: `partner-ca migrate` (also run by `partner-ca init`).
CREATE TABLE IF NOT EXISTS revocation_status (
    serial          TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    module          TEXT NOT NULL,
    request_id      UUID NOT NULL,
    not_before      TIMESTAMPTZ NOT NULL,
    not_after       TIMESTAMPTZ NOT NULL,
    status          TEXT NOT NULL,
    reason          TEXT,
    changed_at      TIMESTAMPTZ,
    changed_by      TEXT,
    cause_position  BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS revocation_status_user_id ON revocation_status (user_id);
