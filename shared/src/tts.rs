//! Text-to-speech vocabulary shared by the API, the worker and the sandbox: ElevenLabs' output
//! formats (vendors.md §2), model character limits, and request validation.

use serde::{Deserialize, Serialize};

use crate::http::{ApiError, FieldError};

pub const DEFAULT_MODEL: &str = "eleven_multilingual_v2";
pub const DEFAULT_OUTPUT_FORMAT: &str = "mp3_44100_128";
/// The most audio one job stores (and the worker reads from ElevenLabs).
pub const AUDIO_LIMIT: usize = 200 * 1024 * 1024;
/// Slow speech runs ~12 characters per second of audio at speed 1.0 (ElevenLabs' `speed` scales it).
const SLOW_CHARACTERS_PER_SECOND: f64 = 12.0;
/// Room for a WAV header (44 bytes, more with extra chunks).
const WAV_HEADER_ALLOWANCE: usize = 1024;

/// Characters per request, by model (ElevenLabs' `max_character_limit_exceeded` rule).
pub fn character_limit(model_id: &str) -> Option<usize> {
    match model_id {
        "eleven_multilingual_v2" => Some(10_000),
        "eleven_flash_v2_5" | "eleven_turbo_v2_5" => Some(40_000),
        "eleven_flash_v2" | "eleven_turbo_v2" => Some(30_000),
        _ => None,
    }
}

pub const MODELS: &[&str] = &[
    "eleven_multilingual_v2",
    "eleven_flash_v2_5",
    "eleven_turbo_v2_5",
    "eleven_flash_v2",
    "eleven_turbo_v2",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Mp3,
    Opus,
    Pcm,
    Wav,
    Ulaw,
    Alaw,
}

/// One of ElevenLabs' `output_format` values: `codec_samplerate[_bitrate]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputFormat {
    pub name: &'static str,
    pub codec: Codec,
    pub sample_rate: u32,
    pub kbps: Option<u32>,
}

const FORMATS: &[&str] = &[
    "alaw_8000",
    "mp3_22050_32",
    "mp3_24000_48",
    "mp3_44100_32",
    "mp3_44100_64",
    "mp3_44100_96",
    "mp3_44100_128",
    "mp3_44100_192",
    "opus_48000_32",
    "opus_48000_64",
    "opus_48000_96",
    "opus_48000_128",
    "opus_48000_192",
    "pcm_8000",
    "pcm_16000",
    "pcm_22050",
    "pcm_24000",
    "pcm_32000",
    "pcm_44100",
    "pcm_48000",
    "ulaw_8000",
    "wav_8000",
    "wav_16000",
    "wav_22050",
    "wav_24000",
    "wav_32000",
    "wav_44100",
    "wav_48000",
];

impl OutputFormat {
    /// Only names on ElevenLabs' list are accepted.
    pub fn parse(name: &str) -> Option<OutputFormat> {
        let name = *FORMATS.iter().find(|f| **f == name)?;
        let mut parts = name.split('_');
        let codec = match parts.next()? {
            "mp3" => Codec::Mp3,
            "opus" => Codec::Opus,
            "pcm" => Codec::Pcm,
            "wav" => Codec::Wav,
            "ulaw" => Codec::Ulaw,
            "alaw" => Codec::Alaw,
            _ => return None,
        };
        let sample_rate = parts.next()?.parse().ok()?;
        let kbps = parts.next().and_then(|b| b.parse().ok());
        Some(OutputFormat {
            name,
            codec,
            sample_rate,
            kbps,
        })
    }

    pub fn content_type(&self) -> &'static str {
        match self.codec {
            Codec::Mp3 => "audio/mpeg",
            Codec::Opus => "audio/ogg",
            Codec::Pcm => "audio/pcm",
            Codec::Wav => "audio/wav",
            // RFC 2046's audio/basic is 8 kHz mono µ-law, exactly ulaw_8000.
            Codec::Ulaw => "audio/basic",
            Codec::Alaw => "audio/x-alaw-basic",
        }
    }

    /// Bytes per second of audio for the uncompressed formats (16-bit mono PCM, 8-bit G.711);
    /// `None` for MP3 and Opus, whose largest bitrate keeps every model's limit far below [`AUDIO_LIMIT`].
    pub fn bytes_per_second(&self) -> Option<u64> {
        match self.codec {
            Codec::Pcm | Codec::Wav => Some(2 * u64::from(self.sample_rate)),
            Codec::Ulaw | Codec::Alaw => Some(u64::from(self.sample_rate)),
            Codec::Mp3 | Codec::Opus => None,
        }
    }

    /// The most characters whose audio, spoken slowly at `speed`, still fits in [`AUDIO_LIMIT`];
    /// `None` when the format sets no limit of its own.
    pub fn character_limit(&self, speed: f64) -> Option<usize> {
        let rate = self.bytes_per_second()? as f64;
        let header = if self.codec == Codec::Wav {
            WAV_HEADER_ALLOWANCE
        } else {
            0
        };
        let seconds = (AUDIO_LIMIT - header) as f64 / rate;
        Some((seconds * SLOW_CHARACTERS_PER_SECOND * speed).floor() as usize)
    }

    pub fn extension(&self) -> &'static str {
        match self.codec {
            Codec::Mp3 => "mp3",
            Codec::Opus => "opus",
            Codec::Pcm => "pcm",
            Codec::Wav => "wav",
            Codec::Ulaw => "ulaw",
            Codec::Alaw => "alaw",
        }
    }
}

/// Audio in `format` lasting `seconds`, for the sandbox; `None` for Opus (no encoder bundled).
pub fn synthetic_audio(format: OutputFormat, seconds: f64) -> Option<Vec<u8>> {
    let samples = (seconds * format.sample_rate as f64).round() as usize;
    match format.codec {
        Codec::Wav => Some(crate::audio::tone_wav(seconds, format.sample_rate)),
        Codec::Pcm => Some(crate::audio::tone_pcm(seconds, format.sample_rate)),
        Codec::Mp3 => crate::audio::silent_mp3(seconds, format.sample_rate, format.kbps?),
        // G.711 silence.
        Codec::Ulaw => Some(vec![0xFF; samples]),
        Codec::Alaw => Some(vec![0xD5; samples]),
        Codec::Opus => None,
    }
}

/// ElevenLabs' `voice_settings`; every field optional, each range-checked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoiceSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stability: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity_boost: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_speaker_boost: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
}

/// The body of `POST /api/tts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TtsRequest {
    pub text: String,
    pub voice_id: String,
    #[serde(default)]
    pub model_id: Option<String>,
    #[serde(default)]
    pub output_format: Option<String>,
    #[serde(default)]
    pub voice_settings: Option<VoiceSettings>,
}

/// A validated request.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTts {
    pub text: String,
    pub voice_id: String,
    pub model_id: String,
    pub output_format: OutputFormat,
    pub voice_settings: Option<VoiceSettings>,
    pub characters: usize,
}

/// ElevenLabs voice ids are short alphanumeric tokens; nothing else may reach the URL path.
pub fn valid_voice_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A C0 control character Postgres or a voice cannot take (NUL fails the insert); tab, line feed
/// and carriage return are ordinary text.
fn forbidden_control(c: char) -> bool {
    c < ' ' && !matches!(c, '\t' | '\n' | '\r')
}

/// Why `text` is too long for the model and the format together, if it is.
fn text_length_problem(
    characters: usize,
    model_id: &str,
    format: Option<OutputFormat>,
    speed: f64,
) -> Option<String> {
    let model_limit = character_limit(model_id);
    let format_limit = format.and_then(|f| f.character_limit(speed));
    match (model_limit, format_limit) {
        (_, Some(limit)) if characters > limit && model_limit.is_none_or(|m| limit < m) => {
            let format = format.expect("a format limit comes from a format").name;
            let at_speed = if speed == 1.0 {
                String::new()
            } else {
                format!(" at voice_settings.speed {speed}")
            };
            Some(format!(
                "has {characters} characters; output_format {format}{at_speed} takes at most {limit}, \
                 so that its audio stays under {} MB; choose a compressed format (mp3, opus) or a shorter text",
                AUDIO_LIMIT / (1024 * 1024)
            ))
        }
        (Some(limit), _) if characters > limit => Some(format!(
            "has {characters} characters; {model_id} takes at most {limit}"
        )),
        _ => None,
    }
}

impl TtsRequest {
    pub fn validate(self) -> Result<NewTts, ApiError> {
        let mut problems = Vec::new();
        let model_id = self.model_id.unwrap_or_else(|| DEFAULT_MODEL.to_owned());
        if character_limit(&model_id).is_none() {
            problems.push(FieldError::new(
                "model_id",
                format!("must be one of {}", MODELS.join(", ")),
            ));
        }
        let format_name = self
            .output_format
            .unwrap_or_else(|| DEFAULT_OUTPUT_FORMAT.to_owned());
        let output_format = OutputFormat::parse(&format_name);
        // An out-of-range speed is reported below; the length check uses the nearest valid one.
        let speed = self
            .voice_settings
            .as_ref()
            .and_then(|v| v.speed)
            .map_or(1.0, |s| s.clamp(0.7, 1.2));
        let characters = self.text.chars().count();
        if self.text.trim().is_empty() {
            problems.push(FieldError::new("text", "must not be empty"));
        } else if let Some((at, c)) = self
            .text
            .chars()
            .enumerate()
            .find(|(_, c)| forbidden_control(*c))
        {
            problems.push(FieldError::new(
                "text",
                format!(
                    "must not contain control characters other than tab, line feed and carriage \
                     return; found U+{:04X} at character {}",
                    c as u32,
                    at + 1
                ),
            ));
        } else if let Some(problem) =
            text_length_problem(characters, &model_id, output_format, speed)
        {
            problems.push(FieldError::new("text", problem));
        }
        if !valid_voice_id(&self.voice_id) {
            problems.push(FieldError::new(
                "voice_id",
                "must be an ElevenLabs voice id (1 to 64 letters and digits)",
            ));
        }
        if output_format.is_none() {
            problems.push(FieldError::new(
                "output_format",
                "must be one of ElevenLabs' formats, e.g. mp3_44100_128, wav_16000 or ulaw_8000",
            ));
        }
        if let Some(v) = &self.voice_settings {
            let unit = |name: &str, value: Option<f64>, problems: &mut Vec<FieldError>| {
                if value.is_some_and(|x| !(0.0..=1.0).contains(&x)) {
                    problems.push(FieldError::new(
                        format!("voice_settings.{name}"),
                        "must be from 0.0 to 1.0",
                    ));
                }
            };
            unit("stability", v.stability, &mut problems);
            unit("similarity_boost", v.similarity_boost, &mut problems);
            unit("style", v.style, &mut problems);
            if v.speed.is_some_and(|s| !(0.7..=1.2).contains(&s)) {
                problems.push(FieldError::new(
                    "voice_settings.speed",
                    "must be from 0.7 to 1.2",
                ));
            }
        }
        if !problems.is_empty() {
            return Err(ApiError::Validation(problems));
        }
        Ok(NewTts {
            text: self.text,
            voice_id: self.voice_id,
            model_id,
            output_format: output_format.expect("checked above"),
            voice_settings: self.voice_settings,
            characters,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_format_parses_and_others_do_not() {
        for name in FORMATS {
            let f = OutputFormat::parse(name).unwrap();
            assert_eq!(f.name, *name);
        }
        let mp3 = OutputFormat::parse("mp3_44100_128").unwrap();
        assert_eq!(
            (mp3.codec, mp3.sample_rate, mp3.kbps),
            (Codec::Mp3, 44_100, Some(128))
        );
        assert_eq!(mp3.content_type(), "audio/mpeg");
        assert!(OutputFormat::parse("mp3_44100_129").is_none());
        assert!(OutputFormat::parse("flac_44100").is_none());
        assert!(OutputFormat::parse("").is_none());
    }

    #[test]
    fn no_accepted_text_can_outgrow_the_audio_limit() {
        let longest_model = MODELS
            .iter()
            .filter_map(|m| character_limit(m))
            .max()
            .unwrap();
        for name in FORMATS {
            let f = OutputFormat::parse(name).unwrap();
            for speed in [0.7, 1.0, 1.2] {
                let characters = f
                    .character_limit(speed)
                    .map_or(longest_model, |l| l.min(longest_model));
                let seconds = characters as f64 / (SLOW_CHARACTERS_PER_SECOND * speed);
                let rate = f
                    .bytes_per_second()
                    .unwrap_or_else(|| u64::from(f.kbps.unwrap()) * 1000 / 8);
                let header = if f.codec == Codec::Wav {
                    WAV_HEADER_ALLOWANCE
                } else {
                    0
                };
                let bytes = seconds * rate as f64 + header as f64;
                assert!(bytes <= AUDIO_LIMIT as f64, "{name} at {speed}: {bytes}");
            }
        }
        let wav = OutputFormat::parse("wav_44100").unwrap();
        assert_eq!(wav.character_limit(1.0), Some(28_532));
        assert_eq!(
            OutputFormat::parse("pcm_48000")
                .unwrap()
                .character_limit(1.0),
            Some(26_214)
        );
        assert_eq!(
            OutputFormat::parse("pcm_24000")
                .unwrap()
                .character_limit(1.0),
            Some(52_428)
        );
        assert!(wav.character_limit(0.7) < wav.character_limit(1.0));
        assert_eq!(
            OutputFormat::parse("mp3_44100_192")
                .unwrap()
                .character_limit(1.0),
            None
        );
    }

    fn request(text: &str, model: &str, format: &str, speed: Option<f64>) -> TtsRequest {
        TtsRequest {
            text: text.to_owned(),
            voice_id: "21m00Tcm4TlvDq8ikWAM".to_owned(),
            model_id: Some(model.to_owned()),
            output_format: Some(format.to_owned()),
            voice_settings: speed.map(|s| VoiceSettings {
                speed: Some(s),
                ..VoiceSettings::default()
            }),
        }
    }

    fn text_problem(r: TtsRequest) -> Option<String> {
        match r.validate() {
            Ok(_) => None,
            Err(ApiError::Validation(problems)) => {
                let p = problems.into_iter().find(|p| p.field == "text")?;
                Some(p.message)
            }
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_tighter_of_the_model_and_format_limits_applies() {
        let turbo = "eleven_turbo_v2_5";
        let at = |n: usize, format: &str, speed: Option<f64>| {
            text_problem(request(&"a".repeat(n), turbo, format, speed))
        };
        assert_eq!(at(28_532, "wav_44100", None), None);
        let over = at(28_533, "wav_44100", None).unwrap();
        assert!(
            over.contains("wav_44100") && over.contains("28532"),
            "{over}"
        );
        // The model binds where the format's own limit is looser.
        let model = at(40_001, "pcm_24000", None).unwrap();
        assert!(
            model.contains("eleven_turbo_v2_5 takes at most 40000"),
            "{model}"
        );
        assert_eq!(at(40_000, "pcm_24000", None), None);
        // Slower speech is longer audio.
        let slow = at(40_000, "pcm_24000", Some(0.7)).unwrap();
        assert!(
            slow.contains("speed 0.7") && slow.contains("36700"),
            "{slow}"
        );
        assert_eq!(at(40_000, "mp3_44100_192", Some(0.7)), None);
    }

    #[test]
    fn control_characters_other_than_whitespace_are_refused() {
        let model = "eleven_flash_v2_5";
        let nul = text_problem(request("Hello\u{0}world", model, "mp3_44100_128", None)).unwrap();
        assert!(nul.contains("U+0000 at character 6"), "{nul}");
        assert!(text_problem(request("a\u{1b}[31m", model, "mp3_44100_128", None)).is_some());
        assert!(text_problem(request("a\u{1f}", model, "mp3_44100_128", None)).is_some());
        assert_eq!(
            text_problem(request(
                "Line one,\r\n\tline two.",
                model,
                "mp3_44100_128",
                None
            )),
            None
        );
    }

    #[test]
    fn the_sandbox_can_voice_every_format_but_opus() {
        for name in FORMATS {
            let f = OutputFormat::parse(name).unwrap();
            let audio = synthetic_audio(f, 1.0);
            assert_eq!(audio.is_none(), f.codec == Codec::Opus, "{name}");
        }
    }
}

pub mod jobs {
    //! Speech jobs: `POST /api/tts` queues one, `tts-worker` speaks it into R2, `GET /api/tts/{id}`
    //! hands back a presigned link. A checkpoint before the paid call means a job is never paid twice.

    use std::time::Duration;

    use serde::Serialize;
    use serde_json::{Value, json};
    use time::OffsetDateTime;
    use uuid::Uuid;

    use super::{NewTts, OutputFormat, VoiceSettings};
    use crate::db::{self, DbError, DbPool, Type};
    use crate::elevenlabs::{ElevenLabs, SpeechRequest, SynthesisError};
    use crate::http::ApiError;
    use crate::idempotency::{Claim, Idempotency, IdempotencyError};
    use crate::queue::{Delivery, JobQueue, TtsJob};
    use crate::storage::Storage;
    use crate::transcriptions::Retry;
    use crate::vendor::VendorError;

    /// Idempotency scope of the synthesis lease; the key is the job id, the payload `{"tts_id": id}`.
    pub const SYNTH_SCOPE: &str = "tts-worker:synthesize";
    const AUDIO_URL_TTL: Duration = Duration::from_secs(3600);

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "snake_case")]
    pub enum Status {
        Queued,
        Processing,
        Completed,
        Failed,
    }

    impl Status {
        fn parse(s: &str) -> Status {
            match s {
                "queued" => Status::Queued,
                "processing" => Status::Processing,
                "completed" => Status::Completed,
                _ => Status::Failed,
            }
        }
    }

    /// A speech job as the API shows it.
    #[derive(Debug, Clone, Serialize)]
    pub struct Tts {
        pub id: Uuid,
        pub status: Status,
        pub characters: i32,
        pub voice_id: String,
        pub model_id: String,
        pub output_format: String,
        pub content_type: Option<String>,
        pub size_bytes: Option<i64>,
        /// A presigned download (`attachment; filename="speech-<id>.<ext>"`), once `completed`.
        pub audio_url: Option<String>,
        #[serde(with = "time::serde::rfc3339::option")]
        pub audio_url_expires_at: Option<OffsetDateTime>,
        pub error: Option<String>,
        #[serde(with = "time::serde::rfc3339")]
        pub created_at: OffsetDateTime,
        #[serde(with = "time::serde::rfc3339")]
        pub updated_at: OffsetDateTime,
        #[serde(with = "time::serde::rfc3339::option")]
        pub completed_at: Option<OffsetDateTime>,
        #[serde(skip)]
        pub object_key: Option<String>,
    }

    const COLUMNS: &str = "id, status, characters, voice_id, model_id, output_format, content_type, \
                           size_bytes, error, created_at, updated_at, completed_at, object_key";

    impl Tts {
        fn from_row(row: &tokio_postgres::Row) -> Tts {
            Tts {
                id: row.get(0),
                status: Status::parse(row.get(1)),
                characters: row.get(2),
                voice_id: row.get(3),
                model_id: row.get(4),
                output_format: row.get(5),
                content_type: row.get(6),
                size_bytes: row.get(7),
                audio_url: None,
                audio_url_expires_at: None,
                error: row.get(8),
                created_at: row.get(9),
                updated_at: row.get(10),
                completed_at: row.get(11),
                object_key: row.get(12),
            }
        }
    }

    /// The API side.
    #[derive(Debug, Clone)]
    pub struct TtsJobs {
        db: DbPool,
        storage: Storage,
        queue: JobQueue,
    }

    impl TtsJobs {
        pub fn new(db: DbPool, storage: Storage, queue: JobQueue) -> Self {
            TtsJobs { db, storage, queue }
        }

        /// Stores a queued job and enqueues it; if the queue is down the reconciler sends it.
        pub async fn create(&self, owner: i32, request: NewTts) -> Result<Tts, ApiError> {
            let id = Uuid::now_v7();
            let settings = request
                .voice_settings
                .as_ref()
                .map(serde_json::to_value)
                .transpose()
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            let characters = i32::try_from(request.characters)
                .map_err(|_| ApiError::Internal("character count overflow".into()))?;
            let client = db::client(&self.db).await?;
            let rows = client
                .query_typed(
                    &format!(
                        "INSERT INTO tts_jobs (id, owner_id, status, text, characters, voice_id, model_id,
                                               output_format, voice_settings, content_type)
                         VALUES ($1, $2, 'queued', $3, $4, $5, $6, $7, $8, $9)
                         RETURNING {COLUMNS}"
                    ),
                    &[
                        (&id, Type::UUID),
                        (&owner, Type::INT4),
                        (&request.text, Type::TEXT),
                        (&characters, Type::INT4),
                        (&request.voice_id, Type::TEXT),
                        (&request.model_id, Type::TEXT),
                        (&request.output_format.name, Type::TEXT),
                        (&settings, Type::JSONB),
                        (&request.output_format.content_type(), Type::TEXT),
                    ],
                )
                .await
                .map_err(DbError::from)?;
            let tts = Tts::from_row(rows.first().ok_or(ApiError::Internal("no row".into()))?);
            drop(client);
            self.queue
                .send_and_mark(&self.db, MARK_SENT, id, &TtsJob { tts_id: id })
                .await;
            Ok(tts)
        }

        /// The owner's job, with a presigned link to the audio once it is there.
        pub async fn get(&self, owner: i32, id: Uuid) -> Result<Tts, ApiError> {
            let client = db::client(&self.db).await?;
            let rows = client
                .query_typed(
                    &format!("SELECT {COLUMNS} FROM tts_jobs WHERE id = $1 AND owner_id = $2"),
                    &[(&id, Type::UUID), (&owner, Type::INT4)],
                )
                .await
                .map_err(DbError::from)?;
            let mut tts = rows.first().map(Tts::from_row).ok_or(ApiError::NotFound)?;
            drop(client);
            if let (Status::Completed, Some(key)) = (tts.status, tts.object_key.as_deref()) {
                let format = OutputFormat::parse(&tts.output_format);
                let extension = format.map_or("bin", |f| f.extension());
                let content_type = tts
                    .content_type
                    .as_deref()
                    .or(format.map(|f| f.content_type()))
                    .unwrap_or("application/octet-stream");
                let presigned = self
                    .storage
                    .presign_get(
                        key,
                        &format!("speech-{}.{extension}", tts.id),
                        content_type,
                        AUDIO_URL_TTL,
                    )
                    .await?;
                tts.audio_url = Some(presigned.url);
                tts.audio_url_expires_at = Some(OffsetDateTime::now_utc() + AUDIO_URL_TTL);
            }
            Ok(tts)
        }
    }

    /// Records that a job's message went (the outbox's mark).
    const MARK_SENT: &str =
        "UPDATE tts_jobs SET message_sent_at = now(), updated_at = now() WHERE id = $1";

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Advance {
        Gone,
        AlreadyFinal,
        Completed { object_key: String },
        Failed { reason: String },
    }

    /// Why a delivery left its job unfinished.
    enum Pending {
        /// Another delivery holds the synthesis lease: it finishes the job.
        Held,
        Retry(Retry),
    }

    impl From<Retry> for Pending {
        fn from(r: Retry) -> Self {
            Pending::Retry(r)
        }
    }

    impl From<DbError> for Pending {
        fn from(e: DbError) -> Self {
            Pending::Retry(e.into())
        }
    }

    impl From<IdempotencyError> for Pending {
        fn from(e: IdempotencyError) -> Self {
            Pending::Retry(e.into())
        }
    }

    struct JobRow {
        status: Status,
        owner: i32,
        text: Option<String>,
        voice_id: String,
        model_id: String,
        output_format: String,
        voice_settings: Option<Value>,
        synth_started: bool,
    }

    /// Where a job's audio lives: fixed, so a later delivery can find audio an earlier one stored.
    pub fn audio_key(owner: i32, id: Uuid, format: OutputFormat) -> String {
        format!("users/{owner}/tts/{id}.{}", format.extension())
    }

    /// The worker and its reconciler.
    #[derive(Debug, Clone)]
    pub struct TtsWorker {
        db: DbPool,
        storage: Storage,
        vendor: ElevenLabs,
        idempotency: Idempotency,
        queue: JobQueue,
        max_receive_count: u32,
    }

    impl TtsWorker {
        pub fn new(
            db: DbPool,
            storage: Storage,
            vendor: ElevenLabs,
            idempotency: Idempotency,
            queue: JobQueue,
            max_receive_count: u32,
        ) -> Self {
            TtsWorker {
                db,
                storage,
                vendor,
                idempotency,
                queue,
                max_receive_count,
            }
        }

        pub async fn process(
            &self,
            job: &TtsJob,
            delivery: &Delivery,
            deadline_ms: u64,
        ) -> Result<Advance, Retry> {
            match self.advance(job.tts_id, deadline_ms).await {
                Ok(advance) => Ok(advance),
                // Even on the last delivery: failing the job could discard audio being paid for now.
                Err(Pending::Held) => {
                    Err(Retry("another delivery is synthesizing this job".into()))
                }
                Err(Pending::Retry(Retry(reason)))
                    if delivery.receive_count >= self.max_receive_count =>
                {
                    let reason = format!(
                        "gave up after {} attempts: {reason}",
                        delivery.receive_count
                    );
                    if let Err(e) = self.fail(job.tts_id, &reason).await {
                        tracing::error!(tts_id = %job.tts_id, error = %e, "could not mark the job failed");
                    }
                    Err(Retry(reason))
                }
                Err(Pending::Retry(retry)) => Err(retry),
            }
        }

        async fn load(&self, id: Uuid) -> Result<Option<JobRow>, DbError> {
            let client = db::client(&self.db).await?;
            let rows = client
                .query_typed(
                    "SELECT status, owner_id, text, voice_id, model_id, output_format, voice_settings,
                            synth_started_at IS NOT NULL
                     FROM tts_jobs WHERE id = $1",
                    &[(&id, Type::UUID)],
                )
                .await?;
            Ok(rows.first().map(|r| JobRow {
                status: Status::parse(r.get(0)),
                owner: r.get(1),
                text: r.get(2),
                voice_id: r.get(3),
                model_id: r.get(4),
                output_format: r.get(5),
                voice_settings: r.get(6),
                synth_started: r.get(7),
            }))
        }

        async fn advance(&self, id: Uuid, deadline_ms: u64) -> Result<Advance, Pending> {
            let Some(row) = self.load(id).await? else {
                return Ok(Advance::Gone);
            };
            if matches!(row.status, Status::Completed | Status::Failed) {
                return Ok(Advance::AlreadyFinal);
            }
            let payload = json!({ "tts_id": id });
            let lease = match self
                .idempotency
                .claim(SYNTH_SCOPE, &id.to_string(), &payload, deadline_ms)
                .await
            {
                Ok(Claim::Acquired(lease)) => lease,
                Ok(Claim::Completed(_)) => return Ok(Advance::AlreadyFinal),
                Err(IdempotencyError::AlreadyInProgress) => return Err(Pending::Held),
                Err(e) => return Err(e.into()),
            };
            let outcome = self.advance_claimed(id, row, deadline_ms).await;
            // A settled job keeps the record, so no later delivery pays again; a retry frees it for
            // the next delivery, which finds any stored audio through the checkpoint.
            let kept = match &outcome {
                Ok(_) => self.idempotency.complete(lease, &payload).await,
                Err(_) => self.idempotency.release(lease).await,
            };
            if let Err(e) = kept {
                tracing::warn!(tts_id = %id, error = %e, "could not settle the synthesis record");
            }
            Ok(outcome?)
        }

        /// The job's next step, with the synthesis lease held.
        async fn advance_claimed(
            &self,
            id: Uuid,
            row: JobRow,
            deadline_ms: u64,
        ) -> Result<Advance, Retry> {
            let format = OutputFormat::parse(&row.output_format)
                .ok_or_else(|| Retry(format!("unknown output format {}", row.output_format)))?;
            let key = audio_key(row.owner, id, format);
            if row.synth_started {
                return self.resume(id, &key, format).await;
            }
            let client = db::client(&self.db).await?;
            let claimed = client
                .query_typed(
                    "UPDATE tts_jobs SET synth_started_at = now(), status = 'processing', updated_at = now()
                     WHERE id = $1 AND status = 'queued' AND synth_started_at IS NULL RETURNING 1",
                    &[(&id, Type::UUID)],
                )
                .await
                .map_err(DbError::from)?;
            drop(client);
            if claimed.is_empty() {
                return Ok(Advance::AlreadyFinal);
            }
            let voice_settings: Option<VoiceSettings> = row
                .voice_settings
                .and_then(|v| serde_json::from_value(v).ok());
            let request = SpeechRequest {
                text: row.text.unwrap_or_default(),
                model_id: row.model_id,
                voice_settings,
            };
            match self
                .vendor
                .synthesize(&row.voice_id, format, &request, deadline_ms)
                .await
            {
                Ok(speech) => {
                    let size = speech.audio.len() as i64;
                    match self.store(&key, speech.audio, format.content_type()).await {
                        Ok(()) => {
                            self.complete(
                                id,
                                &key,
                                size,
                                format.content_type(),
                                speech.request_id.as_deref(),
                            )
                            .await
                        }
                        Err(reason) => {
                            let reason = format!("the audio could not be stored: {reason}");
                            self.fail(id, &reason).await?;
                            Ok(Advance::Failed { reason })
                        }
                    }
                }
                Err(e) if e.certainly_not_processed() => {
                    self.undo_checkpoint(id).await?;
                    if e.is_transient() {
                        Err(Retry(e.to_string()))
                    } else {
                        let reason = vendor_reason(&e);
                        self.fail(id, &reason).await?;
                        Ok(Advance::Failed { reason })
                    }
                }
                Err(e) => {
                    let reason = format!(
                        "{e}; the request may have been billed, so it is not repeated; request it again"
                    );
                    self.fail(id, &reason).await?;
                    Ok(Advance::Failed { reason })
                }
            }
        }

        /// A synthesis started and no delivery holds it any more. If its audio reached R2 (only
        /// recording it failed), the job completes from the object; otherwise the audio is lost
        /// with the process that made it, and calling again could pay twice, so the job ends here.
        async fn resume(
            &self,
            id: Uuid,
            key: &str,
            format: OutputFormat,
        ) -> Result<Advance, Retry> {
            let stored = self
                .storage
                .head(key)
                .await
                .map_err(|e| Retry(format!("could not look for stored audio: {e}")))?;
            if let Some(object) = stored {
                tracing::info!(tts_id = %id, key, "completing from audio stored by an earlier delivery");
                let size = i64::try_from(object.size).unwrap_or(i64::MAX);
                return self
                    .complete(id, key, size, format.content_type(), None)
                    .await;
            }
            let reason = "speech synthesis was interrupted after the request was sent to ElevenLabs \
                          and no audio was stored; it is not repeated, so it is never paid twice; \
                          request it again";
            self.fail(id, reason).await?;
            Ok(Advance::Failed {
                reason: reason.to_owned(),
            })
        }

        /// The audio is paid for: try hard to keep it. Every attempt shares the one buffer.
        async fn store(&self, key: &str, audio: Vec<u8>, content_type: &str) -> Result<(), String> {
            const ATTEMPTS: u64 = 3;
            let audio = bytes::Bytes::from(audio);
            let mut last = String::new();
            for attempt in 1..=ATTEMPTS {
                match self.storage.put_new(key, audio.clone(), content_type).await {
                    Ok(_) => return Ok(()),
                    Err(e) => {
                        last = e.to_string();
                        tracing::warn!(key, attempt, error = %last, "storing speech failed");
                        if attempt < ATTEMPTS {
                            tokio::time::sleep(Duration::from_millis(300 * attempt)).await;
                        }
                    }
                }
            }
            Err(last)
        }

        /// Records the stored audio. Only a job still `processing` completes; if nothing was
        /// updated, another outcome was recorded first and this one is not reported.
        async fn complete(
            &self,
            id: Uuid,
            key: &str,
            size: i64,
            content_type: &str,
            request_id: Option<&str>,
        ) -> Result<Advance, Retry> {
            let client = db::client(&self.db).await?;
            let updated = client
                .query_typed(
                    "UPDATE tts_jobs SET status = 'completed', object_key = $2, size_bytes = $3, content_type = $4,
                            vendor_request_id = COALESCE($5, vendor_request_id), text = NULL, error = NULL,
                            updated_at = now(), completed_at = now()
                     WHERE id = $1 AND status = 'processing' RETURNING 1",
                    &[
                        (&id, Type::UUID),
                        (&key, Type::TEXT),
                        (&size, Type::INT8),
                        (&content_type, Type::TEXT),
                        (&request_id, Type::TEXT),
                    ],
                )
                .await
                .map_err(DbError::from)?;
            if updated.is_empty() {
                tracing::warn!(tts_id = %id, key, "the job was no longer processing; its audio is not attached");
                return Ok(Advance::AlreadyFinal);
            }
            Ok(Advance::Completed {
                object_key: key.to_owned(),
            })
        }

        async fn undo_checkpoint(&self, id: Uuid) -> Result<(), Retry> {
            let client = db::client(&self.db).await?;
            client
                .query_typed(
                    "UPDATE tts_jobs SET synth_started_at = NULL, status = 'queued', updated_at = now()
                     WHERE id = $1 AND status = 'processing'",
                    &[(&id, Type::UUID)],
                )
                .await
                .map_err(DbError::from)?;
            Ok(())
        }

        async fn fail(&self, id: Uuid, reason: &str) -> Result<(), Retry> {
            let client = db::client(&self.db).await?;
            client
                .query_typed(
                    "UPDATE tts_jobs SET status = 'failed', error = $2, text = NULL, updated_at = now()
                     WHERE id = $1 AND status IN ('queued', 'processing')",
                    &[(&id, Type::UUID), (&reason, Type::TEXT)],
                )
                .await
                .map_err(DbError::from)?;
            Ok(())
        }

        /// Sends jobs whose message never left (or was lost), as the transcription reconciler does.
        pub async fn reconcile(&self, batch: i64) -> Result<u64, DbError> {
            let client = db::client(&self.db).await?;
            let unsent = client
                .query_typed(
                    // A job left `processing` for an hour outlived every delivery (Lambda runs at most
                    // 15 minutes): its message is gone, so a new one lets the worker settle it.
                    "SELECT id FROM tts_jobs
                     WHERE (status = 'queued' AND synth_started_at IS NULL
                            AND ((message_sent_at IS NULL AND created_at < now() - interval '1 minute')
                                 OR updated_at < now() - interval '1 hour'))
                        OR (status = 'processing' AND updated_at < now() - interval '1 hour')
                     ORDER BY updated_at LIMIT $1",
                    &[(&batch, Type::INT8)],
                )
                .await?;
            drop(client);
            let mut sent = 0;
            for row in &unsent {
                let id: Uuid = row.get(0);
                if self
                    .queue
                    .send_and_mark(&self.db, MARK_SENT, id, &TtsJob { tts_id: id })
                    .await
                {
                    sent += 1;
                }
            }
            Ok(sent)
        }
    }

    fn vendor_reason(e: &SynthesisError) -> String {
        match e {
            SynthesisError::Vendor(VendorError::Status {
                status, message, ..
            }) => format!("ElevenLabs refused the job ({status}): {message}"),
            other => other.to_string(),
        }
    }
}
