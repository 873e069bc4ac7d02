-- Calls: phone numbers an operator assigns, the calls on them, the commands Parley sent, and every
-- signed webhook event, stored once before it is processed.

-- A number routes callers to its owner, so only an operator assigns one (`cargo xtask phone-number`).
CREATE TABLE phone_numbers
(
  id UUID PRIMARY KEY,
  e164 TEXT NOT NULL UNIQUE CHECK (e164 ~ '^\+[1-9][0-9]{6,14}$'),
  provider TEXT NOT NULL CHECK (provider IN ('telnyx', 'signalwire')),
  -- Telnyx: the Call Control application (connection) outbound dials go through.
  telnyx_connection_id TEXT CHECK (char_length(telnyx_connection_id) BETWEEN 1 AND 128),
  -- SignalWire: the number's sid (IncomingPhoneNumbers resource).
  signalwire_number_sid TEXT CHECK (char_length(signalwire_number_sid) BETWEEN 1 AND 128),
  -- NULL while unassigned (and after the owner's account is deleted): its calls are rejected.
  owner_id INTEGER REFERENCES users (id) ON DELETE SET NULL,
  record BOOLEAN NOT NULL DEFAULT TRUE,
  transcribe BOOLEAN NOT NULL DEFAULT FALSE,
  greeting TEXT CHECK (char_length(greeting) BETWEEN 1 AND 500),
  forward_to TEXT CHECK (forward_to ~ '^\+[1-9][0-9]{6,14}$'),
  max_recording_seconds INTEGER NOT NULL DEFAULT 3600 CHECK (max_recording_seconds BETWEEN 10 AND 14400),
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX phone_numbers_owner_listing ON phone_numbers (owner_id, created_at DESC, id DESC);

CREATE TABLE calls
(
  id UUID PRIMARY KEY,
  owner_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  phone_number_id UUID REFERENCES phone_numbers (id) ON DELETE SET NULL,
  provider TEXT NOT NULL CHECK (provider IN ('telnyx', 'signalwire')),
  direction TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
  from_e164 TEXT NOT NULL,
  to_e164 TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('queued', 'ringing', 'in_progress', 'completed', 'busy',
                                         'no_answer', 'failed', 'canceled')),
  -- Vendor ids. Telnyx: the primary leg's call_control_id and the session; SignalWire: CallSid.
  call_control_id TEXT,
  call_session_id TEXT,
  call_sid TEXT,
  -- The vendor time of the event that set `status`: an older event never moves it.
  status_at TIMESTAMPTZ,
  started_at TIMESTAMPTZ,
  answered_at TIMESTAMPTZ,
  ended_at TIMESTAMPTZ,
  duration_seconds INTEGER CHECK (duration_seconds >= 0),
  hangup_cause TEXT,
  hangup_source TEXT,
  -- Settings captured when the call began, so a later PATCH does not change a call in flight.
  record BOOLEAN NOT NULL DEFAULT FALSE,
  transcribe BOOLEAN NOT NULL DEFAULT FALSE,
  -- Outbound: set when the dial was handed to the vendor; a hangup request before then cancels it.
  dial_started_at TIMESTAMPTZ,
  hangup_requested_at TIMESTAMPTZ,
  error TEXT,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX calls_owner_listing ON calls (owner_id, created_at DESC, id DESC);
CREATE UNIQUE INDEX calls_telnyx_session ON calls (call_session_id) WHERE provider = 'telnyx';
CREATE UNIQUE INDEX calls_telnyx_control ON calls (call_control_id) WHERE provider = 'telnyx';
CREATE UNIQUE INDEX calls_signalwire_sid ON calls (call_sid) WHERE provider = 'signalwire';
CREATE INDEX calls_queued_outbound ON calls (created_at) WHERE status = 'queued';

-- Every command sent to a vendor, keyed by the command id derived from (call, action): Telnyx
-- drops a repeated command_id only within 60 s, so this row is what stops a late redelivery or a
-- replay from answering, recording or transferring twice.
CREATE TABLE call_commands
(
  command_id UUID PRIMARY KEY,
  call_id UUID NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
  action TEXT NOT NULL,
  sent_at TIMESTAMPTZ,
  error TEXT,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Recordings taken from calls: the vendor's recording id makes ingest idempotent.
ALTER TABLE recordings
  ADD COLUMN call_id UUID REFERENCES calls (id) ON DELETE SET NULL,
  ADD COLUMN source_vendor TEXT,
  ADD COLUMN source_recording_id TEXT;
CREATE UNIQUE INDEX recordings_source ON recordings (source_vendor, source_recording_id)
  WHERE source_recording_id IS NOT NULL;
CREATE INDEX recordings_call ON recordings (call_id) WHERE call_id IS NOT NULL;

-- Signed webhook events, stored once (the outbox) and processed by a worker. Kept 30 days.
CREATE TABLE webhook_events
(
  id UUID PRIMARY KEY,
  vendor TEXT NOT NULL CHECK (vendor IN ('telnyx', 'signalwire')),
  -- The vendor's id, or for form callbacks one built from the sid and status: unique per vendor.
  event_id TEXT NOT NULL CHECK (char_length(event_id) BETWEEN 1 AND 256),
  event_type TEXT NOT NULL,
  occurred_at TIMESTAMPTZ,
  received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  -- Exactly the bytes that were signed.
  body BYTEA NOT NULL,
  content_type TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'received' CHECK (status IN ('received', 'enqueued', 'processed', 'failed')),
  attempts INTEGER NOT NULL DEFAULT 0,
  last_error TEXT,
  -- Our call id when the callback URL carried it (SignalWire callbacks of calls Parley placed).
  call_hint UUID,
  -- Whose call it was, once known: account deletion removes these bodies.
  owner_id INTEGER REFERENCES users (id) ON DELETE CASCADE,
  processed_at TIMESTAMPTZ,
  UNIQUE (vendor, event_id)
);

CREATE INDEX webhook_events_unsent ON webhook_events (received_at) WHERE status = 'received';
CREATE INDEX webhook_events_age ON webhook_events (received_at);
