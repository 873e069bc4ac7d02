#!/usr/bin/env node
// Creates, reads and deletes Auth.js database sessions through the real @auth/pg-adapter, so the
// Rust tests can check that sessions made by Auth.js resolve in the Parley API.
//
// Usage (DATABASE_URL must be set, e.g. postgres://postgres@127.0.0.1:5432/parley):
//   node authjs.mjs create-session --email E [--name N] [--image URL] [--expires-in-seconds S]
//   node authjs.mjs get-session --token T
//   node authjs.mjs delete-session --token T
//
// Each command prints one line of JSON to stdout and exits 0; on failure it prints a message to
// stderr and exits non-zero.

import PostgresAdapter from "@auth/pg-adapter";
import pg from "pg";

const USAGE = `usage:
  node authjs.mjs create-session --email E [--name N] [--image URL] [--expires-in-seconds S]
  node authjs.mjs get-session --token T
  node authjs.mjs delete-session --token T
DATABASE_URL must be set to a PostgreSQL connection string.`;

const DEFAULT_EXPIRES_IN_SECONDS = 30 * 24 * 60 * 60; // Auth.js's default session maxAge

const COMMANDS = {
  "create-session": { options: ["email", "name", "image", "expires-in-seconds"], required: ["email"], run: createSession },
  "get-session": { options: ["token"], required: ["token"], run: getSession },
  "delete-session": { options: ["token"], required: ["token"], run: deleteSession },
};

class UsageError extends Error {}

// `--key value` or `--key=value`; values are taken verbatim, so `--expires-in-seconds -60` works.
function parseOptions(args, allowed) {
  const opts = {};
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (!arg.startsWith("--")) throw new UsageError(`unexpected argument: ${arg}`);
    const eq = arg.indexOf("=");
    const key = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    if (!allowed.includes(key)) throw new UsageError(`unknown option: --${key}`);
    let value;
    if (eq !== -1) {
      value = arg.slice(eq + 1);
    } else {
      if (i + 1 >= args.length) throw new UsageError(`option --${key} needs a value`);
      value = args[++i];
    }
    if (key in opts) throw new UsageError(`option --${key} given twice`);
    opts[key] = value;
  }
  return opts;
}

async function createSession(adapter, opts) {
  let expiresIn = DEFAULT_EXPIRES_IN_SECONDS;
  if (opts["expires-in-seconds"] !== undefined) {
    const raw = opts["expires-in-seconds"];
    expiresIn = Number(raw);
    if (raw.trim() === "" || !Number.isFinite(expiresIn)) {
      throw new UsageError(`--expires-in-seconds must be a number, got ${JSON.stringify(raw)}`);
    }
  }

  let user = await adapter.getUserByEmail(opts.email);
  if (!user) {
    user = await adapter.createUser({
      name: opts.name ?? null,
      email: opts.email,
      emailVerified: new Date(),
      image: opts.image ?? null,
    });
  }

  const session = await adapter.createSession({
    sessionToken: crypto.randomUUID(), // Auth.js's default generateSessionToken
    userId: user.id,
    expires: new Date(Date.now() + expiresIn * 1000),
  });

  return {
    user_id: String(user.id),
    email: user.email,
    name: user.name ?? null,
    session_token: session.sessionToken,
    expires: new Date(session.expires).toISOString(),
  };
}

async function getSession(adapter, opts) {
  const found = await adapter.getSessionAndUser(opts.token);
  // Dates come back from pg as Date objects; JSON.stringify renders them as ISO 8601 (UTC).
  return { session: found?.session ?? null, user: found?.user ?? null };
}

async function deleteSession(adapter, opts) {
  await adapter.deleteSession(opts.token);
  return { deleted: true };
}

async function main() {
  const [name, ...rest] = process.argv.slice(2);
  const command = COMMANDS[name];
  if (!command) throw new UsageError(name ? `unknown command: ${name}` : "missing command");
  const opts = parseOptions(rest, command.options);
  for (const key of command.required) {
    if (!opts[key]) throw new UsageError(`${name} requires --${key}`);
  }

  const connectionString = process.env.DATABASE_URL;
  if (!connectionString) throw new UsageError("DATABASE_URL is not set");

  const pool = new pg.Pool({ connectionString });
  try {
    const adapter = PostgresAdapter(pool);
    const result = await command.run(adapter, opts);
    process.stdout.write(JSON.stringify(result) + "\n");
  } finally {
    await pool.end();
  }
}

main().catch((err) => {
  if (err instanceof UsageError) {
    process.stderr.write(`authjs.mjs: ${err.message}\n${USAGE}\n`);
    process.exitCode = 2;
  } else {
    process.stderr.write(`authjs.mjs: ${err?.stack ?? err}\n`);
    process.exitCode = 1;
  }
});
