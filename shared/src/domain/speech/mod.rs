//! Speech: validating a `POST /api/tts` request against ElevenLabs' models and formats, and (in
//! [`jobs`]) the jobs that speak it into R2.

use serde::Deserialize;

use crate::domain::{Error, FieldError};
pub use crate::vendors::elevenlabs::wire::{
    AUDIO_LIMIT, Codec, DEFAULT_MODEL, DEFAULT_OUTPUT_FORMAT, MODELS, OutputFormat, VoiceSettings,
    character_limit, synthetic_audio, valid_voice_id,
};

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
    pub fn validate(self) -> Result<NewTts, Error> {
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
            return Err(Error::Invalid(problems));
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
    use crate::vendors::elevenlabs::wire::{
        FORMATS, SLOW_CHARACTERS_PER_SECOND, WAV_HEADER_ALLOWANCE,
    };

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
            Err(Error::Invalid(problems)) => {
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

pub mod jobs;
