-- Transcription jobs. The row is the job's state machine; SQS messages only say "look at row X",
-- so duplicates, redrives and callbacks all converge on the same row.
CREATE TABLE transcriptions
(
  id UUID PRIMARY KEY,
  owner_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  recording_id UUID NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
  status TEXT NOT NULL CHECK (status IN ('queued', 'processing', 'completed', 'failed')),
  -- Requested options; language_code is replaced by the language AssemblyAI reports.
  language_code TEXT,
  speaker_labels BOOLEAN,
  speakers_expected INTEGER CHECK (speakers_expected BETWEEN 1 AND 10),
  -- Per-job callback secret (256 bits, base64url); AssemblyAI echoes it in a header.
  webhook_secret TEXT NOT NULL CHECK (char_length(webhook_secret) >= 22),
  -- Outbox mark: NULL until the job's first message is on the queue; the reconciler sends the rest.
  message_sent_at TIMESTAMPTZ,
  -- Checkpoint written before the submission leaves: once set, the job is never submitted again.
  submit_started_at TIMESTAMPTZ,
  vendor_transcript_id TEXT UNIQUE,
  submitted_at TIMESTAMPTZ,
  -- Last time the worker asked AssemblyAI (or the reconciler queued a check).
  checked_at TIMESTAMPTZ,
  text TEXT,
  utterances JSONB,
  words JSONB,
  audio_duration_seconds DOUBLE PRECISION CHECK (audio_duration_seconds >= 0),
  confidence DOUBLE PRECISION,
  error TEXT,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  completed_at TIMESTAMPTZ,
  CHECK (status <> 'completed' OR text IS NOT NULL),
  CHECK (status <> 'failed' OR error IS NOT NULL)
);

-- Listing a recording's transcriptions, newest first, by keyset.
CREATE INDEX transcriptions_by_recording ON transcriptions (recording_id, created_at DESC, id DESC);
-- The reconciler's work lists.
CREATE INDEX transcriptions_queued ON transcriptions (updated_at) WHERE status = 'queued';
CREATE INDEX transcriptions_processing ON transcriptions (updated_at) WHERE status = 'processing';
