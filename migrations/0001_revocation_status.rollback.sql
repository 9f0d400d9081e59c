DROP TABLE IF EXISTS revocation_status;
