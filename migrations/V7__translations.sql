-- Translations of completed transcripts. The row is the job's state machine (as for transcriptions
-- and speech); SQS messages only say "look at row X".
CREATE TABLE translations
(
  id UUID PRIMARY KEY,
  owner_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  transcription_id UUID NOT NULL REFERENCES transcriptions (id) ON DELETE CASCADE,
  status TEXT NOT NULL CHECK (status IN ('queued', 'processing', 'completed', 'failed')),
  -- As requested (upper-case); DeepL's regional variant is recorded in translated_lang.
  target_lang TEXT NOT NULL CHECK (char_length(target_lang) BETWEEN 2 AND 8),
  source_lang TEXT CHECK (char_length(source_lang) BETWEEN 2 AND 8),
  formality TEXT NOT NULL DEFAULT 'default' CHECK (formality IN ('default', 'more', 'less')),
  -- deepl | openai | mixed (batches served by both).
  provider TEXT CHECK (provider IN ('deepl', 'openai', 'mixed')),
  translated_lang TEXT,
  detected_source_lang TEXT,
  -- The translated utterances joined, or the translated text of a transcript without utterances.
  text TEXT,
  -- [{speaker, start, end, text, translated_text, provider}]
  utterances JSONB,
  billed_characters BIGINT CHECK (billed_characters >= 0),
  error TEXT,
  -- Outbox mark: NULL until the job's first message is on the queue.
  message_sent_at TIMESTAMPTZ,
  -- Set when a delivery starts translating.
  translate_started_at TIMESTAMPTZ,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  completed_at TIMESTAMPTZ,
  CHECK (status <> 'completed' OR (text IS NOT NULL AND provider IS NOT NULL)),
  CHECK (status <> 'failed' OR error IS NOT NULL)
);

-- Listing a transcription's translations, newest first, by keyset.
CREATE INDEX translations_by_transcription ON translations (transcription_id, created_at DESC, id DESC);
-- The reconciler's work lists.
CREATE INDEX translations_queued ON translations (updated_at) WHERE status = 'queued';
CREATE INDEX translations_processing ON translations (updated_at) WHERE status = 'processing';
