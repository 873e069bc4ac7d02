//! Copies of a user's data held outside Parley's database (a transcript at AssemblyAI, a history
//! item at ElevenLabs, an object in R2, later telephony recordings and translations), and their
//! deletion until the holder confirms. A deletion is recorded in `vendor_deletions` before it is
//! tried, so a holder that is down never blocks the user's answer: the sweeper retries it with
//! backoff until it succeeds.
//!
//! Adding a kind of copy is one [`Kind`] variant with its stored names, and one arm in
//! [`Holders::delete`] calling that vendor's client.

use std::time::Duration;

use crate::domain::ids::UserId;
use crate::platform::db::{self, DbError, DbPool, Type};
use crate::platform::storage::Storage;
use crate::vendors::assemblyai::AssemblyAi;
use crate::vendors::elevenlabs::ElevenLabs;

/// What kind of copy a row names, stored as `(vendor, kind)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `DELETE /v2/transcript/{id}` at AssemblyAI.
    AssemblyAiTranscript,
    /// `DELETE /v1/history/{history_item_id}` at ElevenLabs.
    ElevenLabsHistoryItem,
    /// An object in Parley's R2 bucket, by key.
    R2Object,
    /// `DELETE /v2/recordings/{id}` at Telnyx: a call's recording.
    TelnyxRecording,
    /// The Recordings resource at SignalWire (`DELETE …/Recordings/{sid}.json`).
    SignalWireRecording,
}

impl Kind {
    pub const ALL: &'static [Kind] = &[
        Kind::AssemblyAiTranscript,
        Kind::ElevenLabsHistoryItem,
        Kind::R2Object,
        Kind::TelnyxRecording,
        Kind::SignalWireRecording,
    ];

    /// `(vendor, kind)` as stored in `vendor_deletions`.
    pub const fn names(self) -> (&'static str, &'static str) {
        match self {
            Kind::AssemblyAiTranscript => ("assemblyai", "transcript"),
            Kind::ElevenLabsHistoryItem => ("elevenlabs", "history_item"),
            Kind::R2Object => ("r2", "object"),
            Kind::TelnyxRecording => ("telnyx", "recording"),
            Kind::SignalWireRecording => ("signalwire", "recording"),
        }
    }

    /// The kind stored as `(vendor, kind)`; `None` for one this build does not know (a row
    /// written by a newer release stays pending instead of being misread).
    pub fn parse(vendor: &str, kind: &str) -> Option<Kind> {
        Kind::ALL
            .iter()
            .copied()
            .find(|k| k.names() == (vendor, kind))
    }
}

/// One copy to delete.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VendorCopy {
    pub kind: Kind,
    pub object_id: String,
}

impl VendorCopy {
    pub fn new(kind: Kind, object_id: impl Into<String>) -> VendorCopy {
        VendorCopy {
            kind,
            object_id: object_id.into(),
        }
    }
}

/// The clients of the holders this function may delete at. A holder left out (its key is not
/// given to this function) leaves its copies pending for a function that has it.
#[derive(Debug, Clone, Default)]
pub struct Holders {
    pub assemblyai: Option<AssemblyAi>,
    pub elevenlabs: Option<ElevenLabs>,
    pub storage: Option<Storage>,
    pub telnyx: Option<crate::vendors::telnyx::client::Telnyx>,
    pub signalwire: Option<crate::vendors::signalwire::client::SignalWire>,
}

fn holder<'a, T>(client: &'a Option<T>, name: &str) -> Result<&'a T, String> {
    client
        .as_ref()
        .ok_or_else(|| format!("{name} is not configured in this function"))
}

impl Holders {
    /// Deletes one copy; `Ok` once the holder confirms (a copy already gone counts).
    pub async fn delete(&self, copy: &VendorCopy, deadline_ms: u64) -> Result<(), String> {
        let id = copy.object_id.as_str();
        match copy.kind {
            Kind::AssemblyAiTranscript => holder(&self.assemblyai, "AssemblyAI")?
                .delete_transcript(id, deadline_ms)
                .await
                .map_err(|e| e.to_string()),
            Kind::ElevenLabsHistoryItem => holder(&self.elevenlabs, "ElevenLabs")?
                .delete_history_item(id, deadline_ms)
                .await
                .map_err(|e| e.to_string()),
            Kind::R2Object => holder(&self.storage, "R2")?
                .delete(id)
                .await
                .map_err(|e| e.to_string()),
            Kind::TelnyxRecording => holder(&self.telnyx, "Telnyx")?
                .delete_recording(id, deadline_ms)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Kind::SignalWireRecording => holder(&self.signalwire, "SignalWire")?
                .delete_recording(id, deadline_ms)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
        }
    }
}

/// The telephony vendor's copy of a recording taken from a call, when its id is one the vendor's
/// Recordings API knows (a UUID; an id Parley made up for an event without one is not).
pub fn call_recording_copy(source_vendor: &str, recording_id: &str) -> Option<VendorCopy> {
    uuid::Uuid::parse_str(recording_id).ok()?;
    match source_vendor {
        "telnyx" => Some(VendorCopy::new(
            Kind::TelnyxRecording,
            recording_id.to_owned(),
        )),
        "signalwire" => Some(VendorCopy::new(
            Kind::SignalWireRecording,
            recording_id.to_owned(),
        )),
        _ => None,
    }
}

/// The copies a speech job leaves outside the database: its audio in R2 and at ElevenLabs.
pub fn speech_copies(
    object_key: Option<String>,
    history_item_id: Option<String>,
) -> Vec<VendorCopy> {
    let mut found = Vec::new();
    if let Some(key) = object_key {
        found.push(VendorCopy::new(Kind::R2Object, key));
    }
    if let Some(item) = history_item_id {
        found.push(VendorCopy::new(Kind::ElevenLabsHistoryItem, item));
    }
    found
}

/// What a pass over pending deletions did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Settled {
    pub deleted: u64,
    pub deferred: u64,
}

/// A claimed row is not handed to another sweeper for this long.
const LEASE: Duration = Duration::from_secs(300);

/// The `vendor_deletions` table and the holders to delete at.
#[derive(Debug, Clone)]
pub struct VendorCopies {
    db: DbPool,
    holders: Holders,
}

impl VendorCopies {
    pub fn new(db: DbPool, holders: Holders) -> VendorCopies {
        VendorCopies { db, holders }
    }

    /// Records copies to delete (again pending if a previous deletion had finished: the holder
    /// may have a new copy under the same id, and deleting twice is harmless).
    pub async fn record(&self, subject: UserId, copies: &[VendorCopy]) -> Result<(), DbError> {
        if copies.is_empty() {
            return Ok(());
        }
        let vendors: Vec<&str> = copies.iter().map(|c| c.kind.names().0).collect();
        let kinds: Vec<&str> = copies.iter().map(|c| c.kind.names().1).collect();
        let ids: Vec<&str> = copies.iter().map(|c| c.object_id.as_str()).collect();
        db::fetch(
            &self.db,
            "INSERT INTO vendor_deletions (vendor, kind, object_id, subject_user_id)
             SELECT DISTINCT v, k, o, $4::int4 FROM unnest($1::text[], $2::text[], $3::text[]) AS c(v, k, o)
             ON CONFLICT (vendor, kind, object_id)
             DO UPDATE SET done_at = NULL, next_attempt_at = now(),
                           subject_user_id = COALESCE(vendor_deletions.subject_user_id, EXCLUDED.subject_user_id)",
            &[
                (&vendors, Type::TEXT_ARRAY),
                (&kinds, Type::TEXT_ARRAY),
                (&ids, Type::TEXT_ARRAY),
                (&subject, Type::INT4),
            ],
        )
        .await?;
        Ok(())
    }

    /// Tries each copy now and records the outcome; a failure stays pending for the sweeper and
    /// never fails the caller (the user's deletion has already been recorded).
    pub async fn settle(&self, copies: &[VendorCopy], deadline_ms: u64) -> Settled {
        let mut settled = Settled::default();
        for copy in copies {
            let outcome = self.holders.delete(copy, deadline_ms).await;
            if let Err(e) = self.mark(copy, outcome.as_ref().err()).await {
                tracing::warn!(error = %e, "could not record a vendor deletion's outcome");
            }
            match outcome {
                Ok(()) => settled.deleted += 1,
                Err(reason) => {
                    let (vendor, kind) = copy.kind.names();
                    tracing::warn!(vendor, kind, error = %reason, "vendor deletion deferred to the sweeper");
                    settled.deferred += 1;
                }
            }
        }
        settled
    }

    async fn mark(&self, copy: &VendorCopy, failure: Option<&String>) -> Result<(), DbError> {
        let (vendor, kind) = copy.kind.names();
        let id = copy.object_id.as_str();
        match failure {
            None => {
                db::fetch(
                    &self.db,
                    "UPDATE vendor_deletions SET attempts = attempts + 1, done_at = now(), last_error = NULL
                     WHERE vendor = $1 AND kind = $2 AND object_id = $3",
                    &[(&vendor, Type::TEXT), (&kind, Type::TEXT), (&id, Type::TEXT)],
                )
                .await?
            }
            // One minute, doubling per failure, at most six hours.
            Some(reason) => {
                db::fetch(
                    &self.db,
                    "UPDATE vendor_deletions SET attempts = attempts + 1, last_error = left($4, 500),
                            next_attempt_at = now() + make_interval(secs => least(60 * power(2, least(attempts, 16)), 21600))
                     WHERE vendor = $1 AND kind = $2 AND object_id = $3 AND done_at IS NULL",
                    &[
                        (&vendor, Type::TEXT),
                        (&kind, Type::TEXT),
                        (&id, Type::TEXT),
                        (reason, Type::TEXT),
                    ],
                )
                .await?
            }
        };
        Ok(())
    }

    /// Claims up to `batch` deletions that are due (a lease keeps two sweepers apart) and tries them.
    pub async fn sweep(&self, batch: i64, deadline_ms: u64) -> Result<Settled, DbError> {
        let rows = db::fetch(
            &self.db,
            "UPDATE vendor_deletions SET next_attempt_at = now() + make_interval(secs => $2)
             WHERE id IN (SELECT id FROM vendor_deletions
                          WHERE done_at IS NULL AND next_attempt_at <= now()
                          ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING vendor, kind, object_id",
            &[(&batch, Type::INT8), (&LEASE.as_secs_f64(), Type::FLOAT8)],
        )
        .await?;
        let mut copies = Vec::new();
        for row in rows {
            let (vendor, kind, id): (String, String, String) = (row.get(0), row.get(1), row.get(2));
            match Kind::parse(&vendor, &kind) {
                Some(kind) => copies.push(VendorCopy::new(kind, id)),
                None => tracing::warn!(
                    vendor,
                    kind,
                    "a vendor deletion of a kind this build does not know"
                ),
            }
        }
        Ok(self.settle(&copies, deadline_ms).await)
    }

    /// Deletions not yet confirmed for `subject`.
    pub async fn pending_for(&self, subject: UserId) -> Result<i64, DbError> {
        let rows = db::fetch(
            &self.db,
            "SELECT count(*) FROM vendor_deletions WHERE subject_user_id = $1 AND done_at IS NULL",
            &[(&subject, Type::INT4)],
        )
        .await?;
        Ok(rows[0].get(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_stored_names() {
        for kind in Kind::ALL {
            let (vendor, name) = kind.names();
            assert_eq!(Kind::parse(vendor, name), Some(*kind));
        }
        assert_eq!(Kind::parse("stripe", "customer"), None);
    }
}
