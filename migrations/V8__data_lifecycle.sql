-- Data lifecycle: deletions that reach every copy (vendors and R2), speech retention, account
-- deletion with a tombstone, and exports. See docs/data-lifecycle.md.

-- The ElevenLabs history item a synthesis created (its `history-item-id` response header), so
-- deleting or expiring the job also deletes the copy ElevenLabs keeps.
ALTER TABLE tts_jobs ADD COLUMN vendor_history_item_id TEXT
  CHECK (vendor_history_item_id ~ '^[A-Za-z0-9_-]{1,128}$');
-- Set when SPEECH_RETENTION_DAYS removed the audio; the row stays so GET can say `expired`.
ALTER TABLE tts_jobs ADD COLUMN expired_at TIMESTAMPTZ;
CREATE INDEX tts_jobs_retention ON tts_jobs (completed_at)
  WHERE status = 'completed' AND expired_at IS NULL;

-- Copies outside Parley's database that must be deleted, until their holder confirms. Generic:
-- (vendor, kind, object_id) names any copy (an AssemblyAI transcript, an ElevenLabs history item,
-- an R2 object, a telephony recording); the domain's `VendorCopy` maps each kind to one call.
CREATE TABLE vendor_deletions
(
  id BIGSERIAL PRIMARY KEY,
  vendor TEXT NOT NULL CHECK (vendor ~ '^[a-z0-9_]{1,32}$'),
  kind TEXT NOT NULL CHECK (kind ~ '^[a-z0-9_]{1,32}$'),
  object_id TEXT NOT NULL CHECK (char_length(object_id) BETWEEN 1 AND 1024),
  -- Whose copy it was: a user id only (no foreign key, the user may be gone; no email).
  subject_user_id INTEGER,
  attempts INTEGER NOT NULL DEFAULT 0,
  last_error TEXT,
  next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  done_at TIMESTAMPTZ,
  UNIQUE (vendor, kind, object_id)
);

CREATE INDEX vendor_deletions_due ON vendor_deletions (next_attempt_at) WHERE done_at IS NULL;
CREATE INDEX vendor_deletions_subject ON vendor_deletions (subject_user_id) WHERE done_at IS NULL;

-- Account deletion tombstones: keyed by the user id, never the email, and kept after the user row
-- is gone so an operator can see what happened (`cargo xtask deletion status <user-id>`).
CREATE TABLE account_deletions
(
  user_id INTEGER PRIMARY KEY,
  status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'completed')),
  requested_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  -- Outbox mark, as for the job tables: NULL until the job's message is on the queue.
  message_sent_at TIMESTAMPTZ,
  started_at TIMESTAMPTZ,
  completed_at TIMESTAMPTZ,
  attempts INTEGER NOT NULL DEFAULT 0,
  last_error TEXT,
  -- What each run removed (row and object counts by step), for the operator.
  report JSONB NOT NULL DEFAULT '{}'::jsonb,
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX account_deletions_open ON account_deletions (updated_at) WHERE status <> 'completed';

-- Data exports: one JSON document per request, in R2, linked for an hour at a time.
CREATE TABLE data_exports
(
  id UUID PRIMARY KEY,
  owner_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  status TEXT NOT NULL CHECK (status IN ('queued', 'processing', 'completed', 'failed')),
  object_key TEXT UNIQUE,
  size_bytes BIGINT CHECK (size_bytes >= 0),
  error TEXT,
  message_sent_at TIMESTAMPTZ,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  completed_at TIMESTAMPTZ,
  -- Set when the retention sweep removed the document.
  expired_at TIMESTAMPTZ,
  CHECK (status <> 'completed' OR object_key IS NOT NULL),
  CHECK (status <> 'failed' OR error IS NOT NULL)
);

CREATE INDEX data_exports_owner ON data_exports (owner_id, created_at DESC);
CREATE INDEX data_exports_open ON data_exports (updated_at) WHERE status IN ('queued', 'processing');
CREATE INDEX data_exports_retention ON data_exports (completed_at)
  WHERE status = 'completed' AND expired_at IS NULL;
