//! Transcript translation jobs: `POST /api/transcriptions/{id}/translations` queues one,
//! `translation-worker` translates every utterance (speaker labels and timestamps kept, the
//! neighbouring utterances as context, batched to DeepL's limits), `GET /api/translations/{id}`
//! reads it. The full text is the translated utterances joined, so nothing is paid twice; a
//! transcript without utterances has its text translated in pieces instead.
//!
//! A delivery holds the job's idempotency lease while it translates, so two never run at once. A
//! delivery that dies mid-way leaves the job `processing`; a later delivery (or the reconciler
//! after an hour) translates it again: translation is cheap and has no side effect to undo.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use super::provider::{Formality, Pair, Provider, Translator};
use super::quota;
use crate::domain::Error;
use crate::domain::billing::{Ledger, Meter};
use crate::domain::ids::UserId;
use crate::domain::jobs::{self, ErrorCode, JobTable, Pending, PublicError, Retry, Status};
use crate::domain::owned::owned_row;
use crate::domain::paging::{Cursors, Keyed, Page, Position};
use crate::platform::db::{self, DbError, DbPool, Type};
use crate::platform::idempotency::{Claim, Idempotency, IdempotencyError};
use crate::platform::queue::{Delivery, JobQueue};
use crate::vendors::deepl;

pub const DEFAULT_PAGE: i64 = 20;
pub const MAX_PAGE: i64 = 100;
/// Idempotency scope of the translation lease; the key is the job id.
pub const TRANSLATE_SCOPE: &str = "translation-worker:translate";
/// Utterances on each side of a batch given as its context.
const CONTEXT_UTTERANCES: usize = 2;
/// Context kept per side, in characters.
const CONTEXT_CHARS: usize = 1_000;
/// Pieces a transcript without utterances is cut into.
const PIECE_CHARS: usize = 4_000;
const TRANSLATING_ELSEWHERE: &str = "another delivery is translating this job";

const TABLE: JobTable = JobTable {
    name: "translations",
    mark_sent: "UPDATE translations SET message_sent_at = now(), updated_at = now() WHERE id = $1",
    lease_column: "translate_started_at",
    cleared_on_failure: "",
    resend_stale_processing: true,
};

/// Translate job `translation_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranslationJob {
    pub translation_id: Uuid,
}

/// One translated utterance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranslatedUtterance {
    pub speaker: String,
    pub start: i64,
    pub end: i64,
    pub text: String,
    pub translated_text: String,
    pub provider: Provider,
}

/// A list item: everything but the text and utterances.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub id: Uuid,
    pub transcription_id: Uuid,
    pub status: Status,
    pub target_lang: String,
    pub source_lang: Option<String>,
    pub formality: String,
    /// `deepl`, `openai`, or `mixed` when DeepL failed part-way and OpenAI finished.
    pub provider: Option<String>,
    pub translated_lang: Option<String>,
    pub detected_source_lang: Option<String>,
    pub billed_characters: Option<i64>,
    pub error: Option<PublicError>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub completed_at: Option<OffsetDateTime>,
}

/// A job as `GET /api/translations/{id}` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Translation {
    #[serde(flatten)]
    pub summary: Summary,
    pub text: Option<String>,
    pub utterances: Vec<TranslatedUtterance>,
}

impl Keyed for Summary {
    fn position(&self) -> Position {
        Position {
            created_at: self.created_at,
            id: self.id,
        }
    }
}

const SUMMARY_COLUMNS: &str = "id, transcription_id, status, target_lang, source_lang, formality, \
     provider, translated_lang, detected_source_lang, billed_characters, error, created_at, \
     updated_at, completed_at";
const FULL_COLUMNS: &str = "id, transcription_id, status, target_lang, source_lang, formality, \
     provider, translated_lang, detected_source_lang, billed_characters, error, created_at, \
     updated_at, completed_at, text, utterances";

impl Summary {
    fn from_row(row: &tokio_postgres::Row) -> Summary {
        Summary {
            id: row.get(0),
            transcription_id: row.get(1),
            status: Status::parse(row.get(2)),
            target_lang: row.get(3),
            source_lang: row.get(4),
            formality: row.get(5),
            provider: row.get(6),
            translated_lang: row.get(7),
            detected_source_lang: row.get(8),
            billed_characters: row.get(9),
            error: PublicError::from_stored(row.get::<_, Option<&str>>(10)),
            created_at: row.get(11),
            updated_at: row.get(12),
            completed_at: row.get(13),
        }
    }
}

impl Translation {
    fn from_row(row: &tokio_postgres::Row) -> Translation {
        let utterances: Option<Value> = row.get(15);
        Translation {
            summary: Summary::from_row(row),
            text: row.get(14),
            utterances: utterances
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or_default(),
        }
    }
}

/// A validated job request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTranslation {
    pub pair: Pair,
    pub formality: Formality,
}

/// The API side: create, read and list, by owner only (someone else's id is a 404).
#[derive(Debug, Clone)]
pub struct TranslationJobs {
    db: DbPool,
    /// `None` in the read-only functions, which build no SQS client.
    queue: Option<JobQueue>,
    cursors: Cursors,
    /// The ledger, and the provider tried first (whose daily cap a reservation holds).
    ledger: Option<(Ledger, Provider)>,
}

/// The ledger subject of a translation job's characters.
pub fn usage_subject(id: Uuid) -> String {
    format!("translation:{id}")
}

impl TranslationJobs {
    pub fn new(
        db: DbPool,
        queue: JobQueue,
        cursors: Cursors,
        ledger: Ledger,
        first_provider: Provider,
    ) -> Self {
        TranslationJobs {
            db,
            queue: Some(queue),
            cursors,
            ledger: Some((ledger, first_provider)),
        }
    }

    pub fn read_only(db: DbPool, cursors: Cursors) -> Self {
        TranslationJobs {
            db,
            queue: None,
            cursors,
            ledger: None,
        }
    }

    fn queue(&self) -> Result<&JobQueue, Error> {
        self.queue.as_ref().ok_or_else(|| {
            Error::Internal("this function was built read-only, without its queue".into())
        })
    }

    /// Queues a translation of a completed transcription; 404 for one the owner lacks, 409 for
    /// one not completed. If the queue is down the reconciler sends the job.
    pub async fn create(
        &self,
        owner: UserId,
        transcription_id: Uuid,
        request: NewTranslation,
    ) -> Result<Translation, Error> {
        let queue = self.queue()?;
        let (ledger, first_provider) = self
            .ledger
            .as_ref()
            .ok_or_else(|| Error::Internal("built without the usage ledger".into()))?;
        let id = Uuid::now_v7();
        // The transcript's characters are what the providers will bill (at most): held before
        // queuing, with no connection held across the reservation (it takes its own).
        let source = db::fetch(
            &self.db,
            "SELECT char_length(coalesce(text, '')) FROM transcriptions
              WHERE id = $1 AND owner_id = $2 AND status = 'completed'",
            &[(&transcription_id, Type::UUID), (&owner, Type::INT4)],
        )
        .await?;
        let hold = match source.first() {
            Some(row) => Some(
                quota::reserve_characters(
                    ledger,
                    owner,
                    &usage_subject(id),
                    i64::from(row.get::<_, i32>(0)),
                    *first_provider,
                )
                .await?,
            ),
            None => None,
        };
        let client = db::client(&self.db).await?;
        let rows = db::query(
            &client,
            &format!(
                "INSERT INTO translations (id, owner_id, transcription_id, status, target_lang,
                                           source_lang, formality)
                 SELECT $1, $2, t.id, 'queued', $4, $5, $6 FROM transcriptions t
                  WHERE t.id = $3 AND t.owner_id = $2 AND t.status = 'completed'
                 RETURNING {FULL_COLUMNS}"
            ),
            &[
                (&id, Type::UUID),
                (&owner, Type::INT4),
                (&transcription_id, Type::UUID),
                (&request.pair.target, Type::TEXT),
                (&request.pair.source, Type::TEXT),
                (&request.formality.as_str(), Type::TEXT),
            ],
        )
        .await
        .map_err(DbError::from);
        let rows = match rows {
            Ok(rows) if !rows.is_empty() => rows,
            other => {
                if let Some(hold) = hold {
                    quota::release_characters(ledger, hold).await?;
                }
                other?
            }
        };
        let Some(row) = rows.first() else {
            let status = db::query(
                &client,
                "SELECT status FROM transcriptions WHERE id = $1 AND owner_id = $2",
                &[(&transcription_id, Type::UUID), (&owner, Type::INT4)],
            )
            .await
            .map_err(DbError::from)?;
            return Err(match status.first() {
                None => Error::NotFound,
                Some(row) => Error::Conflict(format!(
                    "the transcription is {}; only a completed transcription can be translated",
                    row.get::<_, &str>(0)
                )),
            });
        };
        let translation = Translation::from_row(row);
        drop(client);
        queue
            .send_and_mark(
                &self.db,
                TABLE.mark_sent,
                id,
                &TranslationJob { translation_id: id },
            )
            .await;
        Ok(translation)
    }

    pub async fn get(&self, owner: UserId, id: Uuid) -> Result<Translation, Error> {
        let sql =
            format!("SELECT {FULL_COLUMNS} FROM translations WHERE id = $1 AND owner_id = $2");
        Ok(Translation::from_row(
            &owned_row(&self.db, &sql, id, owner).await?,
        ))
    }

    /// A transcription's translations, newest first; a foreign or unknown one is a 404.
    pub async fn list(
        &self,
        owner: UserId,
        transcription_id: Uuid,
        limit: i64,
        cursor: Option<&str>,
    ) -> Result<Page<Summary>, Error> {
        let owned = db::fetch(
            &self.db,
            "SELECT 1 FROM transcriptions WHERE id = $1 AND owner_id = $2",
            &[(&transcription_id, Type::UUID), (&owner, Type::INT4)],
        )
        .await?;
        if owned.is_empty() {
            return Err(Error::NotFound);
        }
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM translations
             WHERE transcription_id = $1 AND owner_id = $2
               AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
             ORDER BY created_at DESC, id DESC LIMIT $5"
        );
        self.cursors
            .fetch_page(
                &self.db,
                &sql,
                &[(&transcription_id, Type::UUID), (&owner, Type::INT4)],
                owner,
                cursor,
                limit,
                Summary::from_row,
            )
            .await
    }

    /// Sends jobs whose message never left (or was lost), like the other reconcilers.
    pub async fn reconcile(&self, batch: i64) -> Result<u64, DbError> {
        let Some(queue) = &self.queue else {
            return Ok(0);
        };
        let mut sent = 0;
        for id in TABLE.unsent(&self.db, batch).await? {
            if queue
                .send_and_mark(
                    &self.db,
                    TABLE.mark_sent,
                    id,
                    &TranslationJob { translation_id: id },
                )
                .await
            {
                sent += 1;
            }
        }
        Ok(sent)
    }
}

/// What one delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advance {
    Gone,
    AlreadyFinal,
    Completed { provider: String, segments: usize },
    Failed { reason: String },
}

struct JobRow {
    status: Status,
    owner: UserId,
    transcription_id: Uuid,
    target_lang: String,
    source_lang: Option<String>,
    formality: String,
}

/// A source utterance as the transcription stores it.
#[derive(Debug, Clone, Deserialize)]
struct SourceUtterance {
    speaker: String,
    text: String,
    start: i64,
    end: i64,
}

/// `text` cut into pieces of at most `limit` characters, at whitespace where there is some.
fn pieces(text: &str, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for word in text.split_inclusive(char::is_whitespace) {
        if !current.is_empty() && current.chars().count() + word.chars().count() > limit {
            out.push(current.trim().to_owned());
            current.clear();
        }
        current.push_str(word);
        // A single word longer than the limit is cut by characters.
        while current.chars().count() > limit {
            let cut: String = current.chars().take(limit).collect();
            current = current.chars().skip(limit).collect();
            out.push(cut);
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_owned());
    }
    out
}

/// The last `n` characters of `s`, or the first when `head`.
fn clip(s: &str, n: usize, head: bool) -> String {
    let count = s.chars().count();
    if count <= n {
        return s.to_owned();
    }
    if head {
        s.chars().take(n).collect()
    } else {
        s.chars().skip(count - n).collect()
    }
}

/// The utterances around `range` as `Speaker X: text` lines, for DeepL's `context`.
fn context_for(utterances: &[SourceUtterance], range: &std::ops::Range<usize>) -> Option<String> {
    let line = |u: &SourceUtterance| format!("Speaker {}: {}", u.speaker, u.text);
    let before: Vec<String> = utterances
        [range.start.saturating_sub(CONTEXT_UTTERANCES)..range.start]
        .iter()
        .map(line)
        .collect();
    let after_end = (range.end + CONTEXT_UTTERANCES).min(utterances.len());
    let after: Vec<String> = utterances[range.end..after_end].iter().map(line).collect();
    let text = [
        clip(&before.join("\n"), CONTEXT_CHARS, false),
        clip(&after.join("\n"), CONTEXT_CHARS, true),
    ]
    .into_iter()
    .filter(|s| !s.is_empty())
    .collect::<Vec<_>>()
    .join("\n");
    (!text.is_empty()).then_some(text)
}

/// A run of consecutive segments sent together, with the context around them.
type Batch = (std::ops::Range<usize>, Option<String>);

/// The worker and what it needs.
#[derive(Debug, Clone)]
pub struct TranslationWorker {
    pub db: DbPool,
    pub translator: Translator,
    pub idempotency: Idempotency,
    pub ledger: Ledger,
    /// The queue's `maxReceiveCount`: the delivery on which a failing job is marked failed.
    pub max_receive_count: u32,
}

/// What all batches of a job came to.
struct Outcome {
    translated: Vec<(String, Provider)>,
    detected: Option<String>,
    translated_lang: Option<String>,
    billed: i64,
}

impl TranslationWorker {
    pub async fn process(
        &self,
        job: &TranslationJob,
        delivery: &Delivery,
        deadline_ms: u64,
    ) -> Result<Advance, Retry> {
        let outcome = self.advance(job.translation_id, deadline_ms).await;
        let fail = |reason: String| async move {
            TABLE
                .fail(
                    &self.db,
                    job.translation_id,
                    ErrorCode::VendorUnavailable,
                    &reason,
                )
                .await
        };
        jobs::settle(
            outcome,
            delivery,
            self.max_receive_count,
            TRANSLATING_ELSEWHERE,
            fail,
        )
        .await
    }

    async fn load(&self, id: Uuid) -> Result<Option<JobRow>, DbError> {
        let rows = db::fetch(
            &self.db,
            "SELECT status, owner_id, transcription_id, target_lang, source_lang, formality
               FROM translations WHERE id = $1",
            &[(&id, Type::UUID)],
        )
        .await?;
        Ok(rows.first().map(|r| JobRow {
            status: Status::parse(r.get(0)),
            owner: r.get(1),
            transcription_id: r.get(2),
            target_lang: r.get(3),
            source_lang: r.get(4),
            formality: r.get(5),
        }))
    }

    async fn advance(&self, id: Uuid, deadline_ms: u64) -> Result<Advance, Pending> {
        let Some(row) = self.load(id).await? else {
            return Ok(Advance::Gone);
        };
        if row.status.is_final() {
            return Ok(Advance::AlreadyFinal);
        }
        let payload = json!({ "translation_id": id });
        let lease = match self
            .idempotency
            .claim(TRANSLATE_SCOPE, &id.to_string(), &payload, deadline_ms)
            .await
        {
            Ok(Claim::Acquired(lease)) => lease,
            Ok(Claim::Completed(_)) => return Ok(Advance::AlreadyFinal),
            Err(IdempotencyError::AlreadyInProgress) => return Err(Pending::Held),
            Err(e) => return Err(e.into()),
        };
        let outcome = self.advance_claimed(id, row, deadline_ms).await;
        let kept = match &outcome {
            Ok(_) => self.idempotency.complete(lease, &payload).await,
            Err(_) => self.idempotency.release(lease).await,
        };
        if let Err(e) = kept {
            tracing::warn!(translation_id = %id, error = %e, "could not settle the translation lease");
        }
        Ok(outcome?)
    }

    async fn advance_claimed(
        &self,
        id: Uuid,
        row: JobRow,
        deadline_ms: u64,
    ) -> Result<Advance, Retry> {
        let started = db::fetch(
            &self.db,
            "UPDATE translations SET status = 'processing', translate_started_at = now(), updated_at = now()
              WHERE id = $1 AND status IN ('queued', 'processing') RETURNING 1",
            &[(&id, Type::UUID)],
        )
        .await?;
        if started.is_empty() {
            return Ok(Advance::AlreadyFinal);
        }
        let source = db::fetch(
            &self.db,
            "SELECT text, utterances FROM transcriptions
              WHERE id = $1 AND owner_id = $2 AND status = 'completed'",
            &[
                (&row.transcription_id, Type::UUID),
                (&row.owner, Type::INT4),
            ],
        )
        .await?;
        let Some(source) = source.first() else {
            return self
                .fail(
                    id,
                    ErrorCode::RecordingDeleted,
                    "the transcription is no longer available",
                )
                .await;
        };
        let text: Option<String> = source.get(0);
        let utterances: Vec<SourceUtterance> = source
            .get::<_, Option<Value>>(1)
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        let utterances: Vec<SourceUtterance> = utterances
            .into_iter()
            .filter(|u| !u.text.trim().is_empty())
            .collect();
        let formality = Formality::parse(&row.formality).unwrap_or_default();
        let pair = match self
            .translator
            .validate(&row.target_lang, row.source_lang.as_deref(), deadline_ms)
            .await
        {
            Ok(pair) => pair,
            Err(Error::Invalid(problems)) => {
                let reason = problems
                    .iter()
                    .map(|p| format!("{}: {}", p.field, p.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                return self.fail(id, ErrorCode::UnsupportedInput, &reason).await;
            }
            Err(e) => return Err(Retry(e.to_string())),
        };
        let (segments, contexts): (Vec<String>, Vec<Batch>) = if utterances.is_empty() {
            let segments = pieces(text.as_deref().unwrap_or_default(), PIECE_CHARS);
            let ranges = deepl::batch_ranges(&segments, 0);
            (segments, ranges.into_iter().map(|r| (r, None)).collect())
        } else {
            let segments: Vec<String> = utterances.iter().map(|u| u.text.clone()).collect();
            // Room for the context in DeepL's body limit: two sides, up to 4 bytes a
            // character, doubled for JSON escaping.
            let ranges = deepl::batch_ranges(&segments, 2 * CONTEXT_CHARS * 4 * 2);
            let contexts = ranges
                .into_iter()
                .map(|r| {
                    let c = context_for(&utterances, &r);
                    (r, c)
                })
                .collect();
            (segments, contexts)
        };
        if segments.is_empty() {
            return self
                .fail(
                    id,
                    ErrorCode::UnsupportedInput,
                    "the transcript has no text to translate",
                )
                .await;
        }
        let characters = segments.iter().map(|s| s.chars().count() as i64).sum();
        let ledger = &self.ledger;
        let reservation = match quota::reserve_characters(
            ledger,
            row.owner,
            &usage_subject(id),
            characters,
            self.translator.first_provider(),
        )
        .await
        {
            Ok(hold) => hold,
            // Held at creation and given back by a failed attempt; the allowance no longer covers it.
            Err(e @ (Error::QuotaExceeded(_) | Error::BudgetExhausted(_))) => {
                return self
                    .fail(id, ErrorCode::QuotaExceeded, &e.to_string())
                    .await;
            }
            Err(e) => return Err(Retry(e.to_string())),
        };
        let outcome = self
            .translate_all(&segments, &contexts, &pair, formality, deadline_ms)
            .await;
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(e) => {
                quota::release_characters(ledger, reservation)
                    .await
                    .map_err(|e| Retry(e.to_string()))?;
                if e.is_transient() {
                    return Err(Retry(e.to_string()));
                }
                return self
                    .fail(id, ErrorCode::VendorRejected, &e.to_string())
                    .await;
            }
        };
        let providers: Vec<Provider> = outcome.translated.iter().map(|(_, p)| *p).collect();
        let provider = if providers.iter().all(|p| *p == Provider::Deepl) {
            "deepl"
        } else if providers.iter().all(|p| *p == Provider::Openai) {
            "openai"
        } else {
            "mixed"
        };
        // A lost commit is settled by the usage reconciler from the stored row; never retried
        // here, which would translate (and pay) again.
        if let Err(e) = quota::commit_characters(
            ledger,
            reservation,
            if provider == "openai" {
                Provider::Openai
            } else {
                Provider::Deepl
            },
            outcome.billed,
        )
        .await
        {
            tracing::warn!(translation_id = %id, error = %e, "could not commit the translated characters");
        }
        let (full_text, translated_utterances) = if utterances.is_empty() {
            let joined = outcome
                .translated
                .iter()
                .map(|(t, _)| t.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            (joined, Vec::new())
        } else {
            let list: Vec<TranslatedUtterance> = utterances
                .iter()
                .zip(&outcome.translated)
                .map(|(u, (t, p))| TranslatedUtterance {
                    speaker: u.speaker.clone(),
                    start: u.start,
                    end: u.end,
                    text: u.text.clone(),
                    translated_text: t.clone(),
                    provider: *p,
                })
                .collect();
            let joined = list
                .iter()
                .map(|u| u.translated_text.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            (joined, list)
        };
        let utterances_json =
            serde_json::to_value(&translated_utterances).map_err(|e| Retry(e.to_string()))?;
        let updated = db::fetch(
            &self.db,
            "UPDATE translations SET status = 'completed', provider = $2, text = $3, utterances = $4,
                    billed_characters = $5, detected_source_lang = $6, translated_lang = $7,
                    error = NULL, updated_at = now(), completed_at = now()
              WHERE id = $1 AND status = 'processing' RETURNING 1",
            &[
                (&id, Type::UUID),
                (&provider, Type::TEXT),
                (&full_text, Type::TEXT),
                (&utterances_json, Type::JSONB),
                (&outcome.billed, Type::INT8),
                (&outcome.detected, Type::TEXT),
                (&outcome.translated_lang, Type::TEXT),
            ],
        )
        .await?;
        if updated.is_empty() {
            return Ok(Advance::AlreadyFinal);
        }
        Ok(Advance::Completed {
            provider: provider.to_owned(),
            segments: segments.len(),
        })
    }

    async fn translate_all(
        &self,
        segments: &[String],
        batches: &[Batch],
        pair: &Pair,
        formality: Formality,
        deadline_ms: u64,
    ) -> Result<Outcome, super::TranslateError> {
        let mut outcome = Outcome {
            translated: Vec::with_capacity(segments.len()),
            detected: None,
            translated_lang: None,
            billed: 0,
        };
        for (range, context) in batches {
            let served = self
                .translator
                .translate(
                    &segments[range.clone()],
                    context.as_deref(),
                    pair,
                    formality,
                    deadline_ms,
                )
                .await?;
            outcome.detected = outcome.detected.or(served.detected_source_lang);
            outcome.translated_lang = outcome.translated_lang.or(Some(served.target_lang));
            outcome.billed += served.billed_characters;
            outcome
                .translated
                .extend(served.texts.into_iter().map(|t| (t, served.provider)));
        }
        Ok(outcome)
    }

    async fn fail(&self, id: Uuid, code: ErrorCode, reason: &str) -> Result<Advance, Retry> {
        TABLE.fail(&self.db, id, code, reason).await?;
        self.ledger
            .release(Meter::TranslationCharacters, &usage_subject(id))
            .await?;
        Ok(Advance::Failed {
            reason: reason.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_at_whitespace_within_the_limit() {
        let text = "word ".repeat(2_000);
        let p = pieces(&text, 4_000);
        assert!(p.iter().all(|x| x.chars().count() <= 4_000));
        assert_eq!(p.join(" "), text.trim());
        assert_eq!(pieces(&"x".repeat(9), 4), vec!["xxxx", "xxxx", "x"]);
        assert!(pieces("  ", 10).is_empty());
    }

    #[test]
    fn context_is_the_neighbouring_utterances() {
        let u: Vec<SourceUtterance> = (0..6)
            .map(|i| SourceUtterance {
                speaker: if i % 2 == 0 { "A".into() } else { "B".into() },
                text: format!("line {i}"),
                start: i * 1000,
                end: i * 1000 + 900,
            })
            .collect();
        let c = context_for(&u, &(2..4)).unwrap();
        assert_eq!(
            c,
            "Speaker A: line 0\nSpeaker B: line 1\nSpeaker A: line 4\nSpeaker B: line 5"
        );
        assert_eq!(context_for(&u, &(0..6)), None);
    }
}
