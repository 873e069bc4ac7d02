-- Speech jobs. Like transcriptions, the row is the state machine and messages only name it.
CREATE TABLE tts_jobs
(
  id UUID PRIMARY KEY,
  owner_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  status TEXT NOT NULL CHECK (status IN ('queued', 'processing', 'completed', 'failed')),
  -- The text is needed only until it is spoken; it is cleared when the job ends.
  text TEXT,
  characters INTEGER NOT NULL CHECK (characters > 0),
  voice_id TEXT NOT NULL CHECK (voice_id ~ '^[A-Za-z0-9]{1,64}$'),
  model_id TEXT NOT NULL,
  output_format TEXT NOT NULL,
  voice_settings JSONB,
  -- Outbox mark, as for transcriptions.
  message_sent_at TIMESTAMPTZ,
  -- Checkpoint written before the paid call: once set, ElevenLabs is never called again for this job.
  synth_started_at TIMESTAMPTZ,
  object_key TEXT UNIQUE,
  content_type TEXT,
  size_bytes BIGINT CHECK (size_bytes >= 0),
  vendor_request_id TEXT,
  error TEXT,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  completed_at TIMESTAMPTZ,
  CHECK (status <> 'completed' OR (object_key IS NOT NULL AND size_bytes IS NOT NULL)),
  CHECK (status <> 'failed' OR error IS NOT NULL),
  CHECK (status IN ('completed', 'failed') OR text IS NOT NULL)
);

CREATE INDEX tts_jobs_queued ON tts_jobs (updated_at) WHERE status IN ('queued', 'processing');
