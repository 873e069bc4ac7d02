//! Translated characters in the usage ledger: reserve the source characters before any vendor
//! call, commit what the provider billed (DeepL's `billed_characters`, the source characters for
//! OpenAI) after success, release on failure.
//!
//! The operator's daily cap is held on the provider tried first (DeepL when it is configured):
//! which provider serves is only known after the call, and a fallback is the exception.

use crate::domain::billing::{Hold, Ledger, Meter, Units, Vendor};
use crate::domain::{Error, UserId};

use super::provider::Provider;

/// Before the vendor call: an owner over quota gets [`Error::QuotaExceeded`] here, with nothing
/// sent. Reserving a subject that already holds (a job reserved at creation) returns that hold.
pub async fn reserve_characters(
    ledger: &Ledger,
    owner: UserId,
    subject: &str,
    characters: i64,
    first_provider: Provider,
) -> Result<Hold, Error> {
    let vendor = match first_provider {
        Provider::Deepl => Vendor::DeepL,
        Provider::Openai => Vendor::OpenAi,
    };
    ledger
        .reserve(
            owner,
            Meter::TranslationCharacters,
            Units::Exactly(characters),
            subject,
            Some(vendor),
        )
        .await
}

/// After a successful call: what the provider actually billed.
pub async fn commit_characters(
    ledger: &Ledger,
    hold: Hold,
    provider: Provider,
    billed: i64,
) -> Result<(), Error> {
    tracing::debug!(subject = %hold.subject, reserved = hold.units, provider = provider.as_str(), billed, "translation characters committed");
    ledger.commit(hold.meter, &hold.subject, billed).await?;
    Ok(())
}

/// After a failed call: nothing was billed.
pub async fn release_characters(ledger: &Ledger, hold: Hold) -> Result<(), Error> {
    ledger.release(hold.meter, &hold.subject).await?;
    Ok(())
}
