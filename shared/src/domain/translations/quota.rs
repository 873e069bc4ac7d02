//! The usage-ledger hook for translated characters. Issue 11 (billing / usage ledger) has not
//! landed, so these do nothing yet; they are called exactly where the ledger belongs: reserve the
//! source characters before any vendor call, commit what the provider billed (DeepL's
//! `billed_characters`, the source characters for OpenAI) after success, release on failure.
//! Wiring the ledger in means filling these three bodies; no caller changes.

use crate::domain::{Error, UserId};

use super::provider::Provider;

/// Characters held for one translation until it is committed or released.
#[derive(Debug)]
#[must_use = "a reservation is committed or released"]
pub struct Reservation {
    pub owner: UserId,
    pub characters: i64,
}

/// Before the vendor call. With the ledger, an owner over quota gets an error here (nothing sent).
pub async fn reserve_characters(owner: UserId, characters: i64) -> Result<Reservation, Error> {
    Ok(Reservation { owner, characters })
}

/// After a successful call: what the provider actually billed.
pub async fn commit_characters(reservation: Reservation, provider: Provider, billed: i64) {
    tracing::debug!(owner = %reservation.owner, reserved = reservation.characters, provider = provider.as_str(), billed, "usage hook: commit (no ledger yet)");
}

/// After a failed call: nothing was billed.
pub async fn release_characters(reservation: Reservation) {
    tracing::debug!(owner = %reservation.owner, reserved = reservation.characters, "usage hook: release (no ledger yet)");
}
