//! The six meters: the names they carry everywhere (problems, logs, the CLI, `GET /api/billing`).

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Meter {
    TranscriptionSeconds,
    SpeechCharacters,
    TranslationCharacters,
    RealtimeSeconds,
    CallMinutes,
    StorageBytes,
}

impl Meter {
    pub const ALL: [Meter; 6] = [
        Meter::TranscriptionSeconds,
        Meter::SpeechCharacters,
        Meter::TranslationCharacters,
        Meter::RealtimeSeconds,
        Meter::CallMinutes,
        Meter::StorageBytes,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Meter::TranscriptionSeconds => "transcription_seconds",
            Meter::SpeechCharacters => "speech_characters",
            Meter::TranslationCharacters => "translation_characters",
            Meter::RealtimeSeconds => "realtime_seconds",
            Meter::CallMinutes => "call_minutes",
            Meter::StorageBytes => "storage_bytes",
        }
    }

    pub fn parse(name: &str) -> Option<Meter> {
        Meter::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// Storage is a ceiling on what is held at any moment; every other meter resets each period.
    pub fn resets(self) -> bool {
        self != Meter::StorageBytes
    }
}

impl fmt::Display for Meter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A paid vendor as the operator caps name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vendor {
    AssemblyAi,
    ElevenLabs,
    DeepL,
    OpenAi,
    Telnyx,
    SignalWire,
}

impl Vendor {
    pub const ALL: [Vendor; 6] = [
        Vendor::AssemblyAi,
        Vendor::ElevenLabs,
        Vendor::DeepL,
        Vendor::OpenAi,
        Vendor::Telnyx,
        Vendor::SignalWire,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::AssemblyAi => "assemblyai",
            Vendor::ElevenLabs => "elevenlabs",
            Vendor::DeepL => "deepl",
            Vendor::OpenAi => "openai",
            Vendor::Telnyx => "telnyx",
            Vendor::SignalWire => "signalwire",
        }
    }

    /// The variable holding this vendor's daily cap, in the unit its meters count.
    pub fn cap_variable(self) -> &'static str {
        match self {
            Vendor::AssemblyAi => "ASSEMBLYAI_DAILY_SECONDS_CAP",
            Vendor::ElevenLabs => "ELEVENLABS_DAILY_CHARACTERS_CAP",
            Vendor::DeepL => "DEEPL_DAILY_CHARACTERS_CAP",
            Vendor::OpenAi => "OPENAI_DAILY_CHARACTERS_CAP",
            Vendor::Telnyx => "TELNYX_DAILY_MINUTES_CAP",
            Vendor::SignalWire => "SIGNALWIRE_DAILY_MINUTES_CAP",
        }
    }
}

impl Serialize for Vendor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The most seconds of audio a file can hold, for reserving transcription before AssemblyAI bills
/// it. WAV and FLAC durations come from their headers already bounded by the file's size
/// (`platform::audio`); the compressed formats are bounded by the lowest bitrate their codecs
/// encode speech at, so a file cannot be longer than its size allows at that rate. A little is
/// added for the vendor's rounding, so an honest file never commits more than it held.
pub fn audio_seconds_bound(
    content_type: &str,
    size_bytes: i64,
    header_seconds: Option<f64>,
) -> i64 {
    // Bytes per second at the floor: MP3 (MPEG-1 layer III's lowest, 32 kbit/s), AAC-HE (16 kbit/s),
    // Opus/Vorbis in Ogg or WebM (6 kbit/s), and for WAV/FLAC without a usable header, 8 kbit/s.
    let floor_bytes_per_second: i64 = match content_type {
        "audio/mpeg" => 4_000,
        "audio/mp4" | "audio/x-m4a" => 2_000,
        "audio/ogg" | "audio/opus" | "audio/webm" => 750,
        _ => 1_000,
    };
    let by_size = (size_bytes.max(0) + floor_bytes_per_second - 1) / floor_bytes_per_second;
    let seconds = match header_seconds {
        Some(s) if s.is_finite() && s >= 0.0 => (s.ceil() as i64).min(by_size),
        _ => by_size,
    };
    seconds + seconds / 50 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meters_round_trip_their_names() {
        for m in Meter::ALL {
            assert_eq!(Meter::parse(m.as_str()), Some(m));
        }
        assert_eq!(Meter::parse("minutes"), None);
    }

    #[test]
    fn audio_bounds_come_from_the_size_not_the_header_alone() {
        // A WAV header claiming an hour in a 44-byte file is bounded by the size (1 s, plus 1 s of rounding room).
        assert_eq!(audio_seconds_bound("audio/wav", 44, Some(3600.0)), 2);
        // An honest 60 s WAV (16 kHz, 16-bit mono) reserves 60 s plus rounding room.
        assert_eq!(audio_seconds_bound("audio/wav", 1_920_044, Some(60.0)), 62);
        // 1 MB of MP3 is at most 250 s at 32 kbit/s.
        assert_eq!(audio_seconds_bound("audio/mpeg", 1_000_000, None), 256);
        assert_eq!(audio_seconds_bound("audio/ogg", 750, None), 2);
        assert_eq!(audio_seconds_bound("audio/flac", 10, Some(f64::NAN)), 2);
    }
}
