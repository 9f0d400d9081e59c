-- Email outbox (PostgreSQL), fed by projections/notifications.py from the portal's log,
-- emptied by the notifier (adapters/mailer.py). Applied by yoyo-migrations.
-- depends: 0002_ocsp_responses
CREATE TABLE IF NOT EXISTS mail_outbox (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    recipient        TEXT NOT NULL,
    language         TEXT NOT NULL,
    params           TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL,
    next_attempt_at  TIMESTAMPTZ,
    sent_at          TIMESTAMPTZ,
    last_error       TEXT
);
CREATE INDEX IF NOT EXISTS mail_outbox_due ON mail_outbox (state, next_attempt_at);
