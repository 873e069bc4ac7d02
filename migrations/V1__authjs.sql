-- Auth.js tables exactly as @auth/pg-adapter's schema.sql creates them (quoted camelCase columns),
-- plus what that schema lacks and the adapter's queries tolerate: unique session tokens, an index for
-- per-user session lookups, one account per provider identity, and cascading foreign keys so deleting
-- a user ends their sessions.

CREATE TABLE verification_token
(
  identifier TEXT NOT NULL,
  expires TIMESTAMPTZ NOT NULL,
  token TEXT NOT NULL,
  PRIMARY KEY (identifier, token)
);

CREATE TABLE users
(
  id SERIAL,
  name VARCHAR(255),
  email VARCHAR(255),
  "emailVerified" TIMESTAMPTZ,
  image TEXT,
  PRIMARY KEY (id)
);

CREATE TABLE accounts
(
  id SERIAL,
  "userId" INTEGER NOT NULL,
  type VARCHAR(255) NOT NULL,
  provider VARCHAR(255) NOT NULL,
  "providerAccountId" VARCHAR(255) NOT NULL,
  refresh_token TEXT,
  access_token TEXT,
  expires_at BIGINT,
  id_token TEXT,
  scope TEXT,
  session_state TEXT,
  token_type TEXT,
  PRIMARY KEY (id)
);

CREATE TABLE sessions
(
  id SERIAL,
  "userId" INTEGER NOT NULL,
  expires TIMESTAMPTZ NOT NULL,
  "sessionToken" VARCHAR(255) NOT NULL,
  PRIMARY KEY (id)
);

ALTER TABLE accounts
  ADD CONSTRAINT accounts_user_id_fkey FOREIGN KEY ("userId") REFERENCES users (id) ON DELETE CASCADE;
ALTER TABLE sessions
  ADD CONSTRAINT sessions_user_id_fkey FOREIGN KEY ("userId") REFERENCES users (id) ON DELETE CASCADE;

CREATE UNIQUE INDEX sessions_session_token_key ON sessions ("sessionToken");
CREATE INDEX sessions_user_id_idx ON sessions ("userId");
CREATE UNIQUE INDEX accounts_provider_account_key ON accounts (provider, "providerAccountId");
CREATE INDEX accounts_user_id_idx ON accounts ("userId");
