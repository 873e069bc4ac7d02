-- Issue 14 (storage hygiene, deployed-stage strictness).

-- A refused upload's presigned PUT stays valid until `upload_expires_at`, so its object can be put
-- back after `complete` deleted it. The sweeper deletes objects under `failed` rows until one
-- deletion started after that moment (`object_cleared_at`); then nothing can arrive any more.
-- A replayed upload request that re-signs the PUT moves `upload_expires_at` forward.
ALTER TABLE recordings
  ADD COLUMN upload_expires_at TIMESTAMPTZ NOT NULL DEFAULT (now() + interval '15 minutes'),
  ADD COLUMN object_cleared_at TIMESTAMPTZ;
UPDATE recordings SET upload_expires_at = created_at + interval '15 minutes';
CREATE INDEX recordings_failed_objects ON recordings (updated_at)
  WHERE status = 'failed' AND (object_cleared_at IS NULL OR object_cleared_at <= upload_expires_at);

-- A job's public `error` is a code from a fixed set (the message is fixed per code, in
-- shared::domain::jobs); vendor messages and internal causes live in the logs only. Older rows
-- held free text: each becomes the code its text meant.
UPDATE transcriptions SET error = CASE
    WHEN error LIKE 'the submission to AssemblyAI was interrupted%' THEN 'interrupted'
    WHEN error LIKE 'the recording was deleted%' THEN 'recording_deleted'
    WHEN error LIKE 'AssemblyAI refused%' THEN 'vendor_rejected'
    WHEN error LIKE 'gave up after%' THEN 'vendor_unavailable'
    ELSE 'audio_unreadable'
  END
  WHERE error IS NOT NULL;
UPDATE tts_jobs SET error = CASE
    WHEN error LIKE 'ElevenLabs refused%' THEN 'vendor_rejected'
    WHEN error LIKE 'gave up after%' THEN 'vendor_unavailable'
    WHEN error LIKE 'the audio could not be stored%' THEN 'storage_failed'
    ELSE 'interrupted'
  END
  WHERE error IS NOT NULL;
