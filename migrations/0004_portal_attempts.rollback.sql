DROP TABLE IF EXISTS portal_attempts;
