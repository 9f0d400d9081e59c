DROP TABLE IF EXISTS ocsp_responses;
