//! What the first bytes of an audio file say: whether it is the format it claims, and, for WAV and
//! FLAC, its duration straight from the header (no decoding, no full download).

/// True when `head` starts like a file of this extension.
pub fn matches(extension: &str, head: &[u8]) -> bool {
    match extension {
        "wav" => head.len() >= 12 && &head[0..4] == b"RIFF" && &head[8..12] == b"WAVE",
        "mp3" => {
            head.starts_with(b"ID3")
                || (head.len() >= 2 && head[0] == 0xFF && head[1] & 0xE0 == 0xE0)
        }
        "m4a" => head.len() >= 8 && &head[4..8] == b"ftyp",
        "ogg" | "opus" => head.starts_with(b"OggS"),
        "webm" => head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]),
        "flac" => head.starts_with(b"fLaC"),
        _ => false,
    }
}

/// The duration the header states, when it states one.
pub fn duration_seconds(extension: &str, head: &[u8]) -> Option<f64> {
    match extension {
        "wav" => wav_duration(head),
        "flac" => flac_duration(head),
        _ => None,
    }
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// RIFF chunks: `fmt ` gives the byte rate, `data` the length of the samples.
fn wav_duration(head: &[u8]) -> Option<f64> {
    let mut at = 12;
    let mut byte_rate = None;
    while at + 8 <= head.len() {
        let id = &head[at..at + 4];
        let size = le_u32(&head[at + 4..at + 8]) as usize;
        let body = at + 8;
        if id == b"fmt " && body + 12 <= head.len() {
            byte_rate = Some(le_u32(&head[body + 8..body + 12]));
        }
        if id == b"data" {
            let rate = byte_rate.filter(|r| *r > 0)?;
            return Some(size as f64 / rate as f64);
        }
        // Chunks are padded to an even length.
        at = body.checked_add(size)?.checked_add(size & 1)?;
    }
    None
}

/// FLAC's first metadata block is STREAMINFO: 20-bit sample rate and 36-bit total samples.
fn flac_duration(head: &[u8]) -> Option<f64> {
    if head.len() < 8 + 34 || head[4] & 0x7F != 0 {
        return None;
    }
    let info = &head[8..8 + 34];
    let sample_rate =
        (u32::from(info[10]) << 12) | (u32::from(info[11]) << 4) | (u32::from(info[12]) >> 4);
    let total = (u64::from(info[13] & 0x0F) << 32)
        | (u64::from(info[14]) << 24)
        | (u64::from(info[15]) << 16)
        | (u64::from(info[16]) << 8)
        | u64::from(info[17]);
    (sample_rate > 0 && total > 0).then(|| total as f64 / sample_rate as f64)
}

/// A valid PCM WAV file of `seconds` of silence: for tests and the local sandbox.
pub fn silent_wav(seconds: f64, sample_rate: u32) -> Vec<u8> {
    let samples = (seconds * sample_rate as f64).round() as u32;
    let data_len = samples * 2;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&sample_rate.to_le_bytes());
    out.extend_from_slice(&(sample_rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    out.resize(44 + data_len as usize, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_headers_give_format_and_duration() {
        let wav = silent_wav(2.5, 8000);
        assert!(matches("wav", &wav));
        assert_eq!(duration_seconds("wav", &wav[..64]), Some(2.5));
        assert!(!matches("flac", &wav) && !matches("mp3", &wav));
    }

    #[test]
    fn every_format_is_recognised_by_its_magic_bytes() {
        assert!(matches("mp3", b"ID3\x04\x00"));
        assert!(matches("mp3", &[0xFF, 0xFB, 0x90, 0x00]));
        assert!(matches("m4a", b"\x00\x00\x00\x20ftypM4A "));
        assert!(matches("ogg", b"OggS\x00\x02"));
        assert!(matches("opus", b"OggS\x00\x02"));
        assert!(matches("webm", &[0x1A, 0x45, 0xDF, 0xA3, 0x9F]));
        assert!(matches("flac", b"fLaC\x00\x00\x00\x22"));
        for lie in [
            &b"<html><script>"[..],
            b"%PDF-1.7",
            b"",
            b"RIFF\x00\x00\x00\x00AVI ",
        ] {
            for ext in ["wav", "mp3", "m4a", "ogg", "webm", "flac"] {
                assert!(!matches(ext, lie), "{ext} accepted {lie:?}");
            }
        }
    }

    #[test]
    fn flac_streaminfo_gives_the_duration() {
        let mut head = b"fLaC".to_vec();
        head.extend_from_slice(&[0x80, 0, 0, 34]); // last block, STREAMINFO, 34 bytes
        let mut info = [0u8; 34];
        // 44100 Hz = 0xAC44 over 20 bits; 88200 samples.
        info[10] = 0x0A;
        info[11] = 0xC4;
        info[12] = 0x40;
        info[14..18].copy_from_slice(&88_200u32.to_be_bytes());
        head.extend_from_slice(&info);
        assert_eq!(duration_seconds("flac", &head), Some(2.0));
    }
}
