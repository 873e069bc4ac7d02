"""schemathesis hooks for Parley's contract run (tests/tests/schemathesis.rs sets the variables).

Who is signed in for each request, and the one client duty the schema cannot express.
"""

import os
import re
import uuid

import schemathesis

# A real Auth.js session (made by @auth/pg-adapter) for every authenticated route.
SESSION = os.environ["PARLEY_ST_SESSION"]
# The secret of a real transcription's callback, for the AssemblyAI webhook.
WEBHOOK_SECRET = os.environ["PARLEY_ST_WEBHOOK_SECRET"]
# Sign-out ends the session it is given, so each call gets one of its own from this pool.
with open(os.environ["PARLEY_ST_SIGN_OUT_SESSIONS"], encoding="ascii") as pool:
    SIGN_OUT_SESSIONS = pool.read().split()
# Deleting the account ends every session of its user, so each call is a user of its own.
with open(os.environ["PARLEY_ST_DELETE_ACCOUNT_SESSIONS"], encoding="ascii") as pool:
    DELETE_ACCOUNT_SESSIONS = pool.read().split()

COOKIE = "authjs.session-token"
WEBHOOK_HEADER = "X-Parley-Webhook-Secret"
VALID_KEY = re.compile(r"[\x21-\x7E]{1,255}")


@schemathesis.auth(refresh_interval=None)
class ParleyAuth:
    """Credentials per route: fresh sessions for sign-out and account deletion, the job secret
    for the webhook."""

    def get(self, case, ctx):
        path = case.operation.path
        if path == "/health":
            return None
        if path.startswith("/webhooks/") and path != "/webhooks/assemblyai":
            # Telnyx, SignalWire and Stripe sign their requests and send no session: the contract
            # run checks that anything unsigned is refused as documented.
            return None
        if path == "/webhooks/assemblyai":
            return ("header", WEBHOOK_SECRET)
        if path == "/api/auth/sign-out":
            if not SIGN_OUT_SESSIONS:
                raise RuntimeError("the pool of sign-out sessions is used up; make the pool larger")
            return ("cookie", SIGN_OUT_SESSIONS.pop())
        if path == "/api/me" and case.method.upper() == "DELETE":
            if not DELETE_ACCOUNT_SESSIONS:
                raise RuntimeError("the pool of account-deletion sessions is used up; make it larger")
            return ("cookie", DELETE_ACCOUNT_SESSIONS.pop())
        return ("cookie", SESSION)

    def set(self, case, data, ctx):
        where, value = data
        if where == "header":
            case.headers = {**(case.headers or {}), WEBHOOK_HEADER: value}
        else:
            case.cookies = {**(case.cookies or {}), COOKIE: value}


@schemathesis.hook
def before_call(context, case, kwargs):
    # A client must not reuse an Idempotency-Key for another body (that is a 422 by design), but
    # generated keys repeat; a valid key is made unique, an invalid one is sent as generated.
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() == "idempotency-key" and isinstance(headers[name], str):
            if VALID_KEY.fullmatch(headers[name]):
                headers[name] = f"{headers[name][:200]}.{uuid.uuid4().hex}"
    # A Lambda event carries the body as a JSON string, so bytes that are not UTF-8 can only arrive
    # base64-encoded; `cargo lambda watch` instead answers 500 itself before any function runs
    # (GET /health with the body b"\xff\xfe{" does it). Such bodies are sent as their lossy text,
    # which is still not JSON, so the case keeps its meaning.
    if isinstance(case.body, (bytes, bytearray)):
        try:
            bytes(case.body).decode("utf-8")
        except UnicodeDecodeError:
            case.body = bytes(case.body).decode("utf-8", "replace").encode("utf-8")
