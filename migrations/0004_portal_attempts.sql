-- Attempts per client address on the portal's login and pickup-link calls, shared by every
-- portal process (adapters/storage/attempts.py); rows older than the window are deleted as
-- the same key is counted again.
CREATE TABLE IF NOT EXISTS portal_attempts (
    key text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS portal_attempts_key_at ON portal_attempts (key, at);
