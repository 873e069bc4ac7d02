-- Idempotency records with Powertools' semantics (see shared::idempotency). One row per (scope, key);
-- scope names the function and, for API keys, the user, so two handlers or users never share a record.
CREATE TABLE idempotency_records
(
  scope TEXT NOT NULL,
  key_hash BYTEA NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('INPROGRESS', 'COMPLETED')),
  payload_hash BYTEA NOT NULL,
  response JSONB,
  in_progress_until TIMESTAMPTZ,
  expires_at TIMESTAMPTZ NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (scope, key_hash)
);

CREATE INDEX idempotency_records_expiry ON idempotency_records (expires_at);
