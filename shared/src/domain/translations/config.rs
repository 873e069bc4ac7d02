//! Translation's configuration section: how long a failing provider is skipped.

use std::time::Duration;

use crate::platform::settings::Reader;

#[derive(Debug, Clone, Copy)]
pub struct TranslationSettings {
    /// How long a provider that timed out, was throttled past its retries or answered 5xx is
    /// skipped (`TRANSLATION_BREAKER_COOLDOWN_MS`).
    pub breaker_cooldown: Duration,
    /// How long a provider out of quota (DeepL 456, OpenAI `insufficient_quota`) is skipped
    /// (`TRANSLATION_QUOTA_COOLDOWN_MS`): quotas do not come back in seconds.
    pub quota_cooldown: Duration,
    /// How long DeepL's language lists are kept before being fetched again.
    pub languages_ttl: Duration,
}

impl TranslationSettings {
    pub fn read(r: &mut Reader) -> TranslationSettings {
        TranslationSettings {
            breaker_cooldown: Duration::from_millis(r.bounded(
                "TRANSLATION_BREAKER_COOLDOWN_MS",
                30_000u64,
                100,
                3_600_000,
            )),
            quota_cooldown: Duration::from_millis(r.bounded(
                "TRANSLATION_QUOTA_COOLDOWN_MS",
                300_000u64,
                100,
                86_400_000,
            )),
            languages_ttl: Duration::from_secs(3600),
        }
    }
}
