//! ElevenLabs' vocabulary: models and their character limits, `output_format` names, voice
//! settings and voice ids, exactly as its API spells them.

use serde::{Deserialize, Serialize};

use crate::platform::audio;

pub const DEFAULT_MODEL: &str = "eleven_multilingual_v2";
pub const DEFAULT_OUTPUT_FORMAT: &str = "mp3_44100_128";
/// The most audio one job stores (and the worker reads from ElevenLabs).
pub const AUDIO_LIMIT: usize = 200 * 1024 * 1024;
/// Slow speech runs ~12 characters per second of audio at speed 1.0 (ElevenLabs' `speed` scales it).
pub(crate) const SLOW_CHARACTERS_PER_SECOND: f64 = 12.0;
/// Room for a WAV header (44 bytes, more with extra chunks).
pub(crate) const WAV_HEADER_ALLOWANCE: usize = 1024;

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

pub(crate) const FORMATS: &[&str] = &[
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
        Codec::Wav => Some(audio::tone_wav(seconds, format.sample_rate)),
        Codec::Pcm => Some(audio::tone_pcm(seconds, format.sample_rate)),
        Codec::Mp3 => audio::silent_mp3(seconds, format.sample_rate, format.kbps?),
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

/// ElevenLabs voice ids are short alphanumeric tokens; nothing else may reach the URL path.
pub fn valid_voice_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}
