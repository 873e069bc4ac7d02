-- Issue 11: plans, subscriptions, the usage ledger, per-user rate limits and operator spend caps.

-- Plans are data: `cargo xtask plan set` changes them without a deploy. Every allowance is per
-- billing period except `storage_bytes`, a ceiling on what is stored at any moment.
CREATE TABLE plans
(
  name TEXT PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,31}$'),
  -- The Stripe price a checkout for this plan sells; the free plan has none.
  stripe_price_id TEXT UNIQUE CHECK (stripe_price_id ~ '^price_[A-Za-z0-9_]{1,200}$'),
  transcription_seconds BIGINT NOT NULL CHECK (transcription_seconds >= 0),
  speech_characters BIGINT NOT NULL CHECK (speech_characters >= 0),
  translation_characters BIGINT NOT NULL CHECK (translation_characters >= 0),
  realtime_seconds BIGINT NOT NULL CHECK (realtime_seconds >= 0),
  call_minutes BIGINT NOT NULL CHECK (call_minutes >= 0),
  storage_bytes BIGINT NOT NULL CHECK (storage_bytes >= 0),
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  CHECK ((name = 'free') = (stripe_price_id IS NULL))
);

INSERT INTO plans (name, stripe_price_id, transcription_seconds, speech_characters,
                   translation_characters, realtime_seconds, call_minutes, storage_bytes)
VALUES ('free', NULL, 3600, 10000, 50000, 1800, 60, 1073741824);

-- The Stripe customer Parley created (or reused) for a user: one per user, never two.
CREATE TABLE billing_customers
(
  user_id INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
  stripe_customer_id TEXT NOT NULL UNIQUE CHECK (stripe_customer_id ~ '^cus_[A-Za-z0-9]{1,200}$'),
  created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Subscriptions as Stripe last said they were. Written only from a subscription fetched from the
-- API (never from an event's snapshot), and only when that fetch is newer than what is stored.
CREATE TABLE subscriptions
(
  stripe_subscription_id TEXT PRIMARY KEY CHECK (stripe_subscription_id ~ '^sub_[A-Za-z0-9]{1,200}$'),
  user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  stripe_customer_id TEXT NOT NULL,
  stripe_price_id TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('incomplete', 'incomplete_expired', 'trialing', 'active',
                                         'past_due', 'canceled', 'unpaid', 'paused')),
  current_period_start TIMESTAMPTZ,
  current_period_end TIMESTAMPTZ,
  cancel_at_period_end BOOLEAN NOT NULL DEFAULT false,
  -- When the subscription entered `past_due`: the grace period runs from here.
  past_due_since TIMESTAMPTZ,
  -- Our clock when the state was read from Stripe: an older read never overwrites a newer one.
  fetched_at TIMESTAMPTZ NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX subscriptions_user ON subscriptions (user_id);

-- What a user used and holds per meter and period. `reserved` is the sum of open reservations;
-- `overdrawn` is set when a vendor billed more than was reserved and nothing more is accepted
-- until the period ends. Storage has one open-ended period starting at the epoch.
CREATE TABLE usage_counters
(
  user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  meter TEXT NOT NULL CHECK (meter IN ('transcription_seconds', 'speech_characters',
                                       'translation_characters', 'realtime_seconds',
                                       'call_minutes', 'storage_bytes')),
  period_start TIMESTAMPTZ NOT NULL,
  period_end TIMESTAMPTZ,
  used BIGINT NOT NULL DEFAULT 0 CHECK (used >= 0),
  reserved BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0),
  overdrawn BOOLEAN NOT NULL DEFAULT false,
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, meter, period_start)
);

-- One reservation per (meter, subject): a job's id, an upload's recording id, a call's id.
CREATE TABLE usage_reservations
(
  id UUID PRIMARY KEY,
  user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  meter TEXT NOT NULL,
  period_start TIMESTAMPTZ NOT NULL,
  subject TEXT NOT NULL CHECK (char_length(subject) BETWEEN 1 AND 200),
  units BIGINT NOT NULL CHECK (units >= 0),
  -- The operator cap the units also hold, and the UTC day they count against.
  vendor TEXT,
  vendor_day DATE,
  state TEXT NOT NULL DEFAULT 'reserved' CHECK (state IN ('reserved', 'committed', 'released')),
  committed_units BIGINT CHECK (committed_units >= 0),
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  settled_at TIMESTAMPTZ,
  UNIQUE (meter, subject),
  FOREIGN KEY (user_id, meter, period_start) REFERENCES usage_counters ON DELETE CASCADE
);

CREATE INDEX usage_reservations_open ON usage_reservations (created_at) WHERE state = 'reserved';

-- Operator caps: units per vendor per UTC day across all users, held and used together.
CREATE TABLE vendor_daily_usage
(
  vendor TEXT NOT NULL,
  day DATE NOT NULL,
  units BIGINT NOT NULL DEFAULT 0 CHECK (units >= 0),
  PRIMARY KEY (vendor, day)
);

-- Per-user GCRA state: the theoretical arrival time per route class. Unlogged: losing it in a
-- crash only forgives a burst, and it is written on every authenticated request.
CREATE UNLOGGED TABLE rate_limits
(
  user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  class TEXT NOT NULL,
  tat TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (user_id, class)
);

-- Stripe events share the webhook outbox with the telephony vendors.
ALTER TABLE webhook_events DROP CONSTRAINT webhook_events_vendor_check;
ALTER TABLE webhook_events ADD CONSTRAINT webhook_events_vendor_check
  CHECK (vendor IN ('telnyx', 'signalwire', 'stripe'));
