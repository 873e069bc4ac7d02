//! Translation: DeepL first, OpenAI as the fallback ([`provider`]), for a text answered at once
//! (`POST /api/translations`) and for whole transcripts as jobs ([`jobs`]). Characters go through
//! the usage-ledger hook in [`quota`] (a no-op until billing lands).

use serde::{Deserialize, Serialize};

use crate::domain::{Error, FieldError, UserId};

pub mod config;
pub mod jobs;
pub mod provider;
pub mod quota;

pub use provider::{Formality, Pair, Provider, Served, TranslateError, Translator};

/// The most characters `POST /api/translations` takes.
pub const MAX_TEXT_CHARS: usize = 5_000;

/// The body of `POST /api/translations`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextRequest {
    pub text: String,
    pub target_lang: String,
    #[serde(default)]
    pub source_lang: Option<String>,
    #[serde(default)]
    pub formality: Option<String>,
}

/// The body of `POST /api/transcriptions/{id}/translations`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscriptRequest {
    pub target_lang: String,
    #[serde(default)]
    pub source_lang: Option<String>,
    #[serde(default)]
    pub formality: Option<String>,
}

/// A translated text as the API answers it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TextTranslation {
    pub text: String,
    pub detected_source_lang: Option<String>,
    pub target_lang: String,
    pub provider: Provider,
    pub billed_characters: i64,
}

/// A C0 control character other than tab, line feed and carriage return (NUL breaks Postgres).
fn forbidden_control(c: char) -> bool {
    c < ' ' && !matches!(c, '\t' | '\n' | '\r')
}

fn parse_formality(raw: Option<&str>, problems: &mut Vec<FieldError>) -> Formality {
    match raw.map(Formality::parse) {
        None => Formality::Default,
        Some(Some(f)) => f,
        Some(None) => {
            problems.push(FieldError::new(
                "formality",
                "must be one of default, more, less, prefer_more, prefer_less",
            ));
            Formality::Default
        }
    }
}

/// Field checks that need no provider; language codes are checked by [`Translator::validate`].
pub fn check_text(text: &str, formality: Option<&str>) -> Result<Formality, Error> {
    let mut problems = Vec::new();
    let characters = text.chars().count();
    if text.trim().is_empty() {
        problems.push(FieldError::new("text", "must not be empty"));
    } else if characters > MAX_TEXT_CHARS {
        problems.push(FieldError::new(
            "text",
            format!("has {characters} characters; at most {MAX_TEXT_CHARS} are translated at once"),
        ));
    } else if let Some(c) = text.chars().find(|c| forbidden_control(*c)) {
        problems.push(FieldError::new(
            "text",
            format!(
                "must not contain control characters other than tab, line feed and carriage return; found U+{:04X}",
                c as u32
            ),
        ));
    }
    let formality = parse_formality(formality, &mut problems);
    if problems.is_empty() {
        Ok(formality)
    } else {
        Err(Error::Invalid(problems))
    }
}

/// Formality alone, for a transcript request.
pub fn check_formality(formality: Option<&str>) -> Result<Formality, Error> {
    let mut problems = Vec::new();
    let f = parse_formality(formality, &mut problems);
    if problems.is_empty() {
        Ok(f)
    } else {
        Err(Error::Invalid(problems))
    }
}

impl Translator {
    /// `POST /api/translations`: validates, reserves the characters, translates, commits them.
    pub async fn translate_text(
        &self,
        owner: UserId,
        request: TextRequest,
        deadline_ms: u64,
    ) -> Result<TextTranslation, Error> {
        let formality = check_text(&request.text, request.formality.as_deref());
        let pair = self
            .validate(
                &request.target_lang,
                request.source_lang.as_deref(),
                deadline_ms,
            )
            .await;
        // Every field problem at once.
        let (formality, pair) = match (formality, pair) {
            (Ok(f), Ok(p)) => (f, p),
            (Err(Error::Invalid(mut a)), Err(Error::Invalid(b))) => {
                a.extend(b);
                return Err(Error::Invalid(a));
            }
            (Err(e), _) | (_, Err(e)) => return Err(e),
        };
        let characters = request.text.chars().count() as i64;
        let ledger = self
            .ledger
            .as_ref()
            .ok_or_else(|| Error::Internal("built without the usage ledger".into()))?;
        let subject = format!("text-translation:{}", uuid::Uuid::now_v7());
        let reservation =
            quota::reserve_characters(ledger, owner, &subject, characters, self.first_provider())
                .await?;
        let texts = [request.text];
        match self
            .translate(&texts, None, &pair, formality, deadline_ms)
            .await
        {
            Ok(served) => {
                quota::commit_characters(
                    ledger,
                    reservation,
                    served.provider,
                    served.billed_characters,
                )
                .await?;
                Ok(TextTranslation {
                    text: served.texts.into_iter().next().unwrap_or_default(),
                    detected_source_lang: served.detected_source_lang,
                    target_lang: served.target_lang,
                    provider: served.provider,
                    billed_characters: served.billed_characters,
                })
            }
            Err(e) => {
                quota::release_characters(ledger, reservation).await?;
                Err(e.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_checked_for_emptiness_size_and_control_characters() {
        let field = |text: &str| match check_text(text, None) {
            Err(Error::Invalid(p)) => Some(p[0].message.clone()),
            _ => None,
        };
        assert!(field("   ").unwrap().contains("empty"));
        assert!(field(&"a".repeat(5_001)).unwrap().contains("5001"));
        assert!(field("a\u{0}b").unwrap().contains("U+0000"));
        assert_eq!(field(&"é".repeat(5_000)), None);
        assert!(check_text("hi", Some("casual")).is_err());
    }
}
