//! The provider strategy, written once for text and for transcripts: DeepL first; OpenAI when DeepL
//! is not configured, lacks the language pair, is out of quota (456), still throttled or failing
//! after its retries, or does not answer in time. A provider that failed that way is skipped for a
//! while (a circuit breaker per execution environment: a shared one would cost a database round
//! trip on every request to save at most one failed call per environment and cooldown).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::config::TranslationSettings;
use crate::domain::billing::Ledger;
use crate::domain::{Error, FieldError};
use crate::platform::http_client::VendorError;
use crate::platform::lambda::now_ms;
use crate::vendors::deepl::{self, DeepL, TranslateRequest};
use crate::vendors::openai::{self, Instructions, OpenAi, OpenAiError};

/// Who translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Deepl,
    Openai,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Deepl => "deepl",
            Provider::Openai => "openai",
        }
    }
}

/// Remembers failing providers for a while. After the cooldown the next call is the trial: its
/// success closes the breaker, its failure opens it again.
#[derive(Debug)]
pub struct Breaker {
    cooldown: Duration,
    quota_cooldown: Duration,
    open_until: Mutex<HashMap<Provider, Instant>>,
}

impl Breaker {
    pub fn new(cooldown: Duration, quota_cooldown: Duration) -> Breaker {
        Breaker {
            cooldown,
            quota_cooldown,
            open_until: Mutex::new(HashMap::new()),
        }
    }

    pub fn is_open(&self, provider: Provider) -> bool {
        let map = self.open_until.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&provider)
            .is_some_and(|until| Instant::now() < *until)
    }

    pub fn open(&self, provider: Provider, out_of_quota: bool) {
        let wait = if out_of_quota {
            self.quota_cooldown
        } else {
            self.cooldown
        };
        tracing::warn!(
            provider = provider.as_str(),
            cooldown_ms = wait.as_millis() as u64,
            "translation provider failing; skipped for a while"
        );
        self.open_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(provider, Instant::now() + wait);
    }

    pub fn close(&self, provider: Provider) {
        self.open_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&provider);
    }
}

/// How formal the translation should be. Sent to DeepL as `prefer_*`, which never fails on a
/// target without formality; told to OpenAI in the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Formality {
    #[default]
    Default,
    More,
    Less,
}

impl Formality {
    /// Accepts DeepL's names: `default`, `more`, `less`, `prefer_more`, `prefer_less`.
    pub fn parse(s: &str) -> Option<Formality> {
        match s {
            "default" => Some(Formality::Default),
            "more" | "prefer_more" => Some(Formality::More),
            "less" | "prefer_less" => Some(Formality::Less),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Formality::Default => "default",
            Formality::More => "more",
            Formality::Less => "less",
        }
    }

    fn deepl(self) -> Option<String> {
        match self {
            Formality::Default => None,
            Formality::More => Some("prefer_more".to_owned()),
            Formality::Less => Some("prefer_less".to_owned()),
        }
    }

    fn formal(self) -> Option<bool> {
        match self {
            Formality::Default => None,
            Formality::More => Some(true),
            Formality::Less => Some(false),
        }
    }
}

/// A validated language pair, and whether DeepL has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// Upper-case as asked, e.g. `DE`, `EN`, `PT-BR`.
    pub target: String,
    pub source: Option<String>,
    pub deepl: bool,
    pub openai: bool,
}

/// A batch translated by one provider.
#[derive(Debug, Clone, PartialEq)]
pub struct Served {
    pub texts: Vec<String>,
    pub detected_source_lang: Option<String>,
    /// The code the provider translated into (DeepL's regional variant for `EN`/`PT`).
    pub target_lang: String,
    pub provider: Provider,
    pub billed_characters: i64,
}

/// Why no provider translated a batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TranslateError {
    #[error(transparent)]
    Vendor(#[from] VendorError),
    #[error(transparent)]
    OpenAi(#[from] OpenAiError),
}

impl TranslateError {
    /// Worth trying again later (a throttled or unreachable provider, not a refusal or a quota).
    pub fn is_transient(&self) -> bool {
        let vendor = match self {
            TranslateError::Vendor(e) | TranslateError::OpenAi(OpenAiError::Vendor(e)) => e,
            TranslateError::OpenAi(_) => return false,
        };
        vendor.is_transient()
            && !openai::is_out_of_quota(vendor)
            && vendor.status() != Some(deepl::QUOTA_EXCEEDED)
    }
}

impl From<TranslateError> for Error {
    fn from(e: TranslateError) -> Self {
        if e.is_transient() {
            Error::Unavailable(e.to_string())
        } else {
            Error::Rejected(e.to_string())
        }
    }
}

/// True when this DeepL failure should send the work to OpenAI and open DeepL's breaker.
fn deepl_is_failing(e: &VendorError) -> bool {
    match e {
        // 456 quota, 429 and 5xx left after the retries, 403 a key DeepL no longer takes.
        VendorError::Status { status, .. } => {
            *status == deepl::QUOTA_EXCEEDED || *status == 403 || e.is_transient()
        }
        VendorError::Timeout { .. } | VendorError::Unreachable { .. } => true,
        VendorError::InvalidResponse { .. } => true,
    }
}

/// DeepL's language lists, fetched at run time and kept for a while.
#[derive(Debug)]
struct LanguageCache {
    ttl: Duration,
    cached: tokio::sync::Mutex<Option<(Instant, Arc<deepl::Languages>)>>,
}

const CODE_HINT: &str = "must be a language code such as \"DE\", \"EN-GB\" or \"PT-BR\"";

/// `de`, `en-gb`, `zh-hans`: two or three letters, optionally a 2–4 character region or script.
fn normalize(code: &str) -> Option<String> {
    let upper = code.to_ascii_uppercase();
    let (lang, region) = match upper.split_once('-') {
        Some((l, r)) => (l, Some(r)),
        None => (upper.as_str(), None),
    };
    let lang_ok = (2..=3).contains(&lang.len()) && lang.bytes().all(|b| b.is_ascii_uppercase());
    let region_ok = region
        .is_none_or(|r| (2..=4).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_alphanumeric()));
    (lang_ok && region_ok).then_some(upper)
}

fn base(code: &str) -> &str {
    code.split('-').next().unwrap_or(code)
}

/// DeepL first, OpenAI as the fallback; built once per execution environment.
#[derive(Debug, Clone)]
pub struct Translator {
    deepl: Option<DeepL>,
    openai: Option<OpenAi>,
    breaker: Arc<Breaker>,
    languages: Arc<LanguageCache>,
    /// Where `POST /api/translations` holds its characters.
    pub(super) ledger: Option<Ledger>,
}

impl Translator {
    /// At least one provider must be given (the app builder checks).
    pub fn new(
        deepl: Option<DeepL>,
        openai: Option<OpenAi>,
        settings: &TranslationSettings,
    ) -> Translator {
        Translator {
            deepl,
            openai,
            breaker: Arc::new(Breaker::new(
                settings.breaker_cooldown,
                settings.quota_cooldown,
            )),
            languages: Arc::new(LanguageCache {
                ttl: settings.languages_ttl,
                cached: tokio::sync::Mutex::new(None),
            }),
            ledger: None,
        }
    }

    /// With the usage ledger (every function that translates).
    pub fn with_ledger(mut self, ledger: Ledger) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// The provider a translation is tried with first: DeepL when it is configured.
    pub fn first_provider(&self) -> Provider {
        if self.deepl.is_some() {
            Provider::Deepl
        } else {
            Provider::Openai
        }
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// DeepL's lists, cached; a stale copy (or none) when DeepL cannot be asked.
    async fn deepl_languages(&self, deadline_ms: u64) -> Option<Arc<deepl::Languages>> {
        let deepl = self.deepl.as_ref()?;
        let mut cached = self.languages.cached.lock().await;
        if let Some((at, languages)) = cached.as_ref()
            && at.elapsed() < self.languages.ttl
        {
            return Some(languages.clone());
        }
        // A short budget: validation must leave time for the translation itself.
        let budget = now_ms() + 4_000;
        let deadline = if deadline_ms == 0 {
            budget
        } else {
            deadline_ms.min(budget)
        };
        match deepl.languages(deadline).await {
            Ok(languages) => {
                let languages = Arc::new(languages);
                *cached = Some((Instant::now(), languages.clone()));
                Some(languages)
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not fetch DeepL's languages");
                cached.as_ref().map(|(_, l)| l.clone())
            }
        }
    }

    /// Checks `target_lang` and `source_lang` against what the configured providers translate;
    /// a 422 names the field neither supports. A pair DeepL lacks is marked for OpenAI.
    pub async fn validate(
        &self,
        target: &str,
        source: Option<&str>,
        deadline_ms: u64,
    ) -> Result<Pair, Error> {
        let mut problems = Vec::new();
        let target = normalize(target);
        if target.is_none() {
            problems.push(FieldError::new("target_lang", CODE_HINT));
        }
        let source = match source.map(normalize) {
            Some(None) => {
                problems.push(FieldError::new("source_lang", CODE_HINT));
                None
            }
            Some(Some(s)) => Some(s),
            None => None,
        };
        if !problems.is_empty() {
            return Err(Error::Invalid(problems));
        }
        let target = target.expect("checked above");
        let languages = self.deepl_languages(deadline_ms).await;
        if languages.is_none() && self.openai.is_none() {
            return Err(Error::Unavailable(
                "DeepL's language list could not be fetched and no fallback is configured".into(),
            ));
        }
        let deepl_target = languages.as_ref().is_some_and(|l| {
            let code = deepl::target_code(&target);
            l.target.iter().any(|x| x.language == code)
        });
        let deepl_source = |s: &str| {
            languages.as_ref().is_some_and(|l| {
                let code = deepl::source_code(s);
                l.source.iter().any(|x| x.language == code)
            })
        };
        let openai_knows =
            |c: &str| self.openai.is_some() && openai::languages::name(base(c)).is_some();
        let supported = |in_deepl: bool, c: &str| in_deepl || openai_knows(c);
        if !supported(deepl_target, &target) {
            problems.push(FieldError::new(
                "target_lang",
                format!("{target} is not a language DeepL or OpenAI translates into here"),
            ));
        }
        if let Some(s) = &source
            && !supported(deepl_source(s), s)
        {
            problems.push(FieldError::new(
                "source_lang",
                format!("{s} is not a language DeepL or OpenAI translates from here"),
            ));
        }
        if !problems.is_empty() {
            return Err(Error::Invalid(problems));
        }
        let deepl = deepl_target && source.as_deref().is_none_or(deepl_source);
        let openai = openai_knows(&target) && source.as_deref().is_none_or(openai_knows);
        if !deepl && !openai {
            // Each code is known to one provider, but no provider knows both.
            return Err(Error::invalid(
                "target_lang",
                format!(
                    "no configured provider translates from {} into {target}",
                    source.as_deref().unwrap_or("the source language")
                ),
            ));
        }
        Ok(Pair {
            target,
            source,
            deepl,
            openai,
        })
    }

    /// Translates one batch of `texts` (with `context`, not translated) by the first provider
    /// that can. `deadline_ms` bounds the whole call; DeepL gets half of it when OpenAI can follow.
    pub async fn translate(
        &self,
        texts: &[String],
        context: Option<&str>,
        pair: &Pair,
        formality: Formality,
        deadline_ms: u64,
    ) -> Result<Served, TranslateError> {
        let openai = self.openai.as_ref().filter(|_| pair.openai);
        let deepl = self.deepl.as_ref().filter(|_| pair.deepl);
        // Skip an open DeepL only when there is somewhere else to go.
        let deepl = deepl.filter(|_| openai.is_none() || !self.breaker.is_open(Provider::Deepl));
        let mut last_error = None;
        if let Some(deepl) = deepl {
            let deepl_deadline = match (openai, deadline_ms) {
                (None, _) => deadline_ms,
                (Some(_), 0) => now_ms() + 30_000,
                (Some(_), d) => {
                    let now = now_ms();
                    now + d.saturating_sub(now) / 2
                }
            };
            match self
                .translate_deepl(deepl, texts, context, pair, formality, deepl_deadline)
                .await
            {
                Ok(served) => {
                    self.breaker.close(Provider::Deepl);
                    return Ok(served);
                }
                Err(e) => {
                    if deepl_is_failing(&e) {
                        self.breaker
                            .open(Provider::Deepl, e.status() == Some(deepl::QUOTA_EXCEEDED));
                    }
                    tracing::warn!(error = %e, fallback = openai.is_some(), "DeepL did not translate");
                    last_error = Some(TranslateError::Vendor(e));
                }
            }
        }
        let Some(openai) = openai else {
            return Err(last_error.unwrap_or_else(|| {
                TranslateError::Vendor(VendorError::InvalidResponse {
                    vendor: "translation",
                    reason: format!(
                        "no configured provider translates {} to {}",
                        pair.source.as_deref().unwrap_or("the detected language"),
                        pair.target
                    ),
                })
            }));
        };
        let instructions = Instructions {
            target: format!(
                "{} ({})",
                openai::languages::name(&pair.target)
                    .or(openai::languages::name(base(&pair.target)))
                    .unwrap_or(&pair.target),
                pair.target
            ),
            source: pair
                .source
                .as_deref()
                .and_then(|s| openai::languages::name(s).or(openai::languages::name(base(s))))
                .map(str::to_owned),
            formal: formality.formal(),
            context: context.map(str::to_owned),
        };
        match openai.translate(texts, &instructions, deadline_ms).await {
            Ok(translated) => {
                self.breaker.close(Provider::Openai);
                Ok(Served {
                    texts: translated,
                    detected_source_lang: pair.source.clone(),
                    target_lang: pair.target.clone(),
                    provider: Provider::Openai,
                    billed_characters: texts.iter().map(|t| t.chars().count() as i64).sum(),
                })
            }
            Err(e) => {
                if let OpenAiError::Vendor(v) = &e
                    && (v.is_transient() || openai::is_out_of_quota(v))
                {
                    self.breaker
                        .open(Provider::Openai, openai::is_out_of_quota(v));
                }
                Err(e.into())
            }
        }
    }

    async fn translate_deepl(
        &self,
        deepl: &DeepL,
        texts: &[String],
        context: Option<&str>,
        pair: &Pair,
        formality: Formality,
        deadline_ms: u64,
    ) -> Result<Served, VendorError> {
        let target = deepl::target_code(&pair.target);
        let request = TranslateRequest {
            text: texts.to_vec(),
            target_lang: target.clone(),
            source_lang: pair.source.as_deref().map(deepl::source_code),
            formality: formality.deepl(),
            context: context.map(str::to_owned),
            show_billed_characters: true,
        };
        let translations = deepl.translate(&request, deadline_ms).await?;
        let billed = translations
            .iter()
            .zip(texts)
            .map(|(t, s)| {
                t.billed_characters
                    .unwrap_or_else(|| s.chars().count() as i64)
            })
            .sum();
        Ok(Served {
            detected_source_lang: translations
                .iter()
                .find_map(|t| t.detected_source_language.clone()),
            texts: translations.into_iter().map(|t| t.text).collect(),
            target_lang: target,
            provider: Provider::Deepl,
            billed_characters: billed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_normalized_or_refused() {
        assert_eq!(normalize("de").as_deref(), Some("DE"));
        assert_eq!(
            normalize(" de"),
            None,
            "the contract's pattern has no spaces"
        );
        assert_eq!(normalize("pt-br").as_deref(), Some("PT-BR"));
        assert_eq!(normalize("zh-Hans").as_deref(), Some("ZH-HANS"));
        for bad in ["", "d", "deutsch", "de_DE", "de-", "1e", "en-toolong"] {
            assert_eq!(normalize(bad), None, "{bad}");
        }
    }

    #[test]
    fn formality_takes_deepls_names_and_always_sends_prefer() {
        assert_eq!(Formality::parse("more"), Some(Formality::More));
        assert_eq!(Formality::parse("prefer_less"), Some(Formality::Less));
        assert_eq!(Formality::parse("casual"), None);
        assert_eq!(Formality::More.deepl().as_deref(), Some("prefer_more"));
        assert_eq!(Formality::Default.deepl(), None);
    }

    #[test]
    fn the_breaker_opens_for_its_cooldown_then_closes() {
        let b = Breaker::new(Duration::from_millis(40), Duration::from_secs(60));
        assert!(!b.is_open(Provider::Deepl));
        b.open(Provider::Deepl, false);
        assert!(b.is_open(Provider::Deepl) && !b.is_open(Provider::Openai));
        std::thread::sleep(Duration::from_millis(60));
        assert!(
            !b.is_open(Provider::Deepl),
            "half-open: the next call is a trial"
        );
        b.open(Provider::Deepl, true);
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.is_open(Provider::Deepl), "a quota is remembered longer");
        b.close(Provider::Deepl);
        assert!(!b.is_open(Provider::Deepl));
    }

    #[test]
    fn quota_and_refusals_are_not_transient() {
        let status = |s: u16, code: Option<&str>| VendorError::Status {
            vendor: "x",
            status: s,
            code: code.map(str::to_owned),
            message: String::new(),
        };
        assert!(TranslateError::Vendor(status(503, None)).is_transient());
        assert!(!TranslateError::Vendor(status(456, None)).is_transient());
        assert!(
            !TranslateError::OpenAi(OpenAiError::Vendor(status(429, Some("insufficient_quota"))))
                .is_transient()
        );
        assert!(!TranslateError::OpenAi(OpenAiError::SegmentTooLong { index: 3 }).is_transient());
        assert!(deepl_is_failing(&status(456, None)) && !deepl_is_failing(&status(400, None)));
    }
}
