//! Streaming tokens. Parley never sees a streaming session end, so each token holds the longest
//! session it allows against `realtime_seconds` and that is committed as it stands.

use serde::Serialize;
use uuid::Uuid;

use crate::domain::billing::{Ledger, Meter, Units, Vendor};
use crate::domain::{Error, UserId};
use crate::vendors::assemblyai::{AssemblyAi, MAX_SESSION_SECONDS, MIN_SESSION_SECONDS};

/// A session length asked for when the client names none.
pub const DEFAULT_SESSION_SECONDS: u32 = 600;

/// What the browser receives: the token, how long it may wait to use it, and how long the session
/// it opens may last.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RealtimeToken {
    pub token: String,
    pub expires_in_seconds: u32,
    pub max_session_duration_seconds: u32,
}

/// Mints a token for `owner`: the session length is what they asked for (60 to 10,800 s), cut to
/// what is left of their allowance; less than AssemblyAI's 60 s minimum left is a 402.
pub async fn mint(
    ledger: &Ledger,
    assemblyai: &AssemblyAi,
    owner: UserId,
    expires_in_seconds: u32,
    session_seconds: u32,
    deadline_ms: u64,
) -> Result<RealtimeToken, Error> {
    let wanted = session_seconds.clamp(MIN_SESSION_SECONDS, MAX_SESSION_SECONDS);
    let subject = format!("realtime:{}", Uuid::now_v7());
    let hold = ledger
        .reserve(
            owner,
            Meter::RealtimeSeconds,
            Units::UpTo {
                at_least: i64::from(MIN_SESSION_SECONDS),
                at_most: i64::from(wanted),
            },
            &subject,
            Some(Vendor::AssemblyAi),
        )
        .await?;
    let granted = u32::try_from(hold.units).unwrap_or(wanted).min(wanted);
    match assemblyai
        .streaming_token(expires_in_seconds, granted, deadline_ms)
        .await
    {
        Ok(token) => {
            ledger
                .commit(Meter::RealtimeSeconds, &subject, hold.units)
                .await?;
            Ok(RealtimeToken {
                token: token.token,
                expires_in_seconds: token.expires_in_seconds,
                max_session_duration_seconds: granted,
            })
        }
        Err(e) => {
            ledger.release(Meter::RealtimeSeconds, &subject).await?;
            Err(e.into())
        }
    }
}
