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

/// The duration the header states, bounded by what a file of `file_size` bytes can hold: a header is
/// written by whoever made the file, so a 44-byte WAV that claims four billion data bytes is not four
/// billion seconds long. WAV is cut to the data actually present; a FLAC header that claims more
/// samples than its size could carry is not believed at all (`None`).
pub fn duration_seconds(extension: &str, head: &[u8], file_size: u64) -> Option<f64> {
    match extension {
        "wav" => wav_duration(head, file_size),
        "flac" => flac_duration(head, file_size),
        _ => None,
    }
}

/// The fewest bytes a FLAC frame takes (frame header, one constant subframe, CRC-16), and the most
/// samples one frame can carry: so a file of n bytes holds fewer than n / 8 * 65535 samples.
const FLAC_MIN_FRAME_BYTES: u64 = 8;
const FLAC_MAX_BLOCK_SAMPLES: u64 = 65_535;

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// RIFF chunks: `fmt ` gives the byte rate, `data` the length of the samples (at most what follows
/// the chunk's header in the file).
fn wav_duration(head: &[u8], file_size: u64) -> Option<f64> {
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
            let present = file_size.saturating_sub(body as u64);
            return Some((size as u64).min(present) as f64 / f64::from(rate));
        }
        // Chunks are padded to an even length.
        at = body.checked_add(size)?.checked_add(size & 1)?;
    }
    None
}

/// FLAC's first metadata block is STREAMINFO: 20-bit sample rate and 36-bit total samples.
fn flac_duration(head: &[u8], file_size: u64) -> Option<f64> {
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
    let most = file_size.saturating_sub(42) / FLAC_MIN_FRAME_BYTES * FLAC_MAX_BLOCK_SAMPLES;
    (sample_rate > 0 && total > 0 && total <= most).then(|| total as f64 / sample_rate as f64)
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

/// A WAV file of a quiet 440 Hz tone: audible proof that audio came back (the sandbox's speech).
pub fn tone_wav(seconds: f64, sample_rate: u32) -> Vec<u8> {
    let mut out = silent_wav(seconds, sample_rate);
    out.truncate(44);
    out.extend_from_slice(&tone_pcm(seconds, sample_rate));
    out
}

/// 16-bit little-endian mono samples of the same tone.
pub fn tone_pcm(seconds: f64, sample_rate: u32) -> Vec<u8> {
    let samples = (seconds * sample_rate as f64).round() as u32;
    let mut out = Vec::with_capacity(samples as usize * 2);
    for i in 0..samples {
        let t = i as f64 / sample_rate as f64;
        let v = (t * 440.0 * std::f64::consts::TAU).sin() * 3000.0;
        out.extend_from_slice(&(v as i16).to_le_bytes());
    }
    out
}

/// A valid MPEG Layer III stream of silent mono frames at `kbps` and `sample_rate`; `None` for a
/// combination MPEG does not define. Zeroed side information decodes as silence in every decoder.
pub fn silent_mp3(seconds: f64, sample_rate: u32, kbps: u32) -> Option<Vec<u8>> {
    const MPEG1: [u32; 15] = [
        0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
    ];
    const MPEG2: [u32; 15] = [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160];
    let (mpeg1, rate_index) = match sample_rate {
        44_100 => (true, 0u8),
        48_000 => (true, 1),
        32_000 => (true, 2),
        22_050 => (false, 0),
        24_000 => (false, 1),
        16_000 => (false, 2),
        _ => return None,
    };
    let table = if mpeg1 { &MPEG1 } else { &MPEG2 };
    let bitrate_index = table.iter().position(|&b| b == kbps && b != 0)? as u8;
    let (samples_per_frame, coefficient) = if mpeg1 { (1152, 144) } else { (576, 72) };
    let frame_len = (coefficient * kbps * 1000 / sample_rate) as usize;
    let frames = ((seconds * sample_rate as f64) / samples_per_frame as f64).ceil() as usize;
    let header = [
        0xFF,
        if mpeg1 { 0xFB } else { 0xF3 },
        (bitrate_index << 4) | (rate_index << 2),
        0xC0, // mono
    ];
    let mut out = Vec::with_capacity(frames.max(1) * frame_len);
    for _ in 0..frames.max(1) {
        out.extend_from_slice(&header);
        out.resize(out.len() + frame_len - header.len(), 0);
    }
    Some(out)
}

/// Opus's standard pre-skip (6.5 ms at 48 kHz), which decoders drop from the start.
#[cfg(feature = "local")]
const OPUS_PRE_SKIP: u16 = 312;
/// One 20 ms CELT frame that decodes as silence (TOC 0xF8: fullband, mono, one frame).
#[cfg(feature = "local")]
const OPUS_SILENT_FRAME: [u8; 3] = [0xF8, 0xFF, 0xFE];

/// An Ogg Opus stream (RFC 7845) of `seconds` of silence: real Opus with no encoder bundled.
#[cfg(feature = "local")]
pub fn silent_ogg_opus(seconds: f64) -> Vec<u8> {
    use ogg::writing::{PacketWriteEndInfo, PacketWriter};
    const SERIAL: u32 = 0x5041_524C;
    let frames = (seconds * 50.0).ceil().max(1.0) as u64;
    let mut head = b"OpusHead".to_vec();
    head.push(1); // version
    head.push(1); // channels
    head.extend_from_slice(&OPUS_PRE_SKIP.to_le_bytes());
    head.extend_from_slice(&48_000u32.to_le_bytes()); // the input's rate, for information
    head.extend_from_slice(&0i16.to_le_bytes()); // output gain
    head.push(0); // mapping family 0: mono or stereo, no table
    let vendor = b"parley sandbox";
    let mut tags = b"OpusTags".to_vec();
    tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    tags.extend_from_slice(vendor);
    tags.extend_from_slice(&0u32.to_le_bytes()); // no comments
    let mut writer = PacketWriter::new(Vec::new());
    // Writing to a Vec cannot fail; the headers each end their page, as RFC 7845 requires.
    let mut write = |packet: Vec<u8>, end: PacketWriteEndInfo, granule: u64| {
        writer
            .write_packet(packet, SERIAL, end, granule)
            .expect("writing to memory")
    };
    write(head, PacketWriteEndInfo::EndPage, 0);
    write(tags, PacketWriteEndInfo::EndPage, 0);
    for i in 1..=frames {
        let end = if i == frames {
            PacketWriteEndInfo::EndStream
        } else if i % 50 == 0 {
            PacketWriteEndInfo::EndPage
        } else {
            PacketWriteEndInfo::NormalPacket
        };
        write(
            OPUS_SILENT_FRAME.to_vec(),
            end,
            u64::from(OPUS_PRE_SKIP) + i * 960,
        );
    }
    writer.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_headers_give_format_and_duration() {
        let wav = silent_wav(2.5, 8000);
        assert!(matches("wav", &wav));
        assert_eq!(
            duration_seconds("wav", &wav[..64], wav.len() as u64),
            Some(2.5)
        );
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
    fn generated_audio_is_what_it_claims() {
        let wav = tone_wav(1.0, 16_000);
        assert!(matches("wav", &wav));
        assert_eq!(duration_seconds("wav", &wav, wav.len() as u64), Some(1.0));
        assert!(wav[44..].iter().any(|&b| b != 0), "a tone, not silence");
        let mp3 = silent_mp3(1.0, 44_100, 128).unwrap();
        assert!(matches("mp3", &mp3));
        // 39 frames of 1152 samples cover a second; each frame is 417 bytes at 128 kbit/s.
        assert_eq!(mp3.len(), 39 * 417);
        assert_eq!(&mp3[417..421], &[0xFF, 0xFB, 0x90, 0xC0]);
        assert_eq!(
            &silent_mp3(1.0, 22_050, 32).unwrap()[..4],
            &[0xFF, 0xF3, 0x40, 0xC0]
        );
        assert!(silent_mp3(1.0, 44_100, 33).is_none());
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
        // A real 2 s FLAC is tens of kilobytes; its header is believed.
        assert_eq!(duration_seconds("flac", &head, 40_000), Some(2.0));
        // The same header on a file too small to hold 88,200 samples is not.
        assert_eq!(duration_seconds("flac", &head, 42), None);
    }

    #[test]
    fn a_header_never_claims_more_than_the_file_can_hold() {
        // 44 bytes whose header says 4,294,967,295 data bytes at 1 byte a second.
        let mut wav = silent_wav(0.0, 8000);
        wav.truncate(44);
        wav[28..32].copy_from_slice(&1u32.to_le_bytes());
        wav[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(duration_seconds("wav", &wav, 44), Some(0.0));
        // A file cut short counts only the samples present.
        let real = silent_wav(2.0, 8000);
        let half = 44 + (real.len() as u64 - 44) / 2;
        assert_eq!(duration_seconds("wav", &real, half), Some(1.0));
        // 42 bytes of FLAC claiming 2^36 - 1 samples.
        let mut flac = b"fLaC".to_vec();
        flac.extend_from_slice(&[0x80, 0, 0, 34]);
        let mut info = [0u8; 34];
        info[10] = 0x0A;
        info[11] = 0xC4;
        info[12] = 0x40;
        info[13] = 0x0F;
        info[14..18].copy_from_slice(&u32::MAX.to_be_bytes());
        flac.extend_from_slice(&info);
        assert_eq!(flac.len(), 42);
        assert_eq!(duration_seconds("flac", &flac, 42), None);
    }

    #[cfg(feature = "local")]
    #[test]
    fn silent_opus_is_a_valid_ogg_opus_stream_of_the_asked_length() {
        let bytes = silent_ogg_opus(2.5);
        assert!(matches("opus", &bytes));
        // The reader checks every page's CRC and the packet boundaries.
        let mut reader = ogg::reading::PacketReader::new(std::io::Cursor::new(bytes));
        let head = reader.read_packet_expected().unwrap();
        assert!(head.data.starts_with(b"OpusHead") && head.data.len() == 19);
        assert!(head.first_in_stream() && head.last_in_page());
        let tags = reader.read_packet_expected().unwrap();
        assert!(tags.data.starts_with(b"OpusTags") && tags.last_in_page());
        let mut frames = 0u64;
        let mut last = None;
        while let Some(packet) = reader.read_packet().unwrap() {
            assert_eq!(packet.data, OPUS_SILENT_FRAME);
            frames += 1;
            last = Some(packet);
        }
        let last = last.unwrap();
        assert_eq!(frames, 125);
        assert!(last.last_in_stream());
        let seconds = (last.absgp_page() - u64::from(OPUS_PRE_SKIP)) as f64 / 48_000.0;
        assert_eq!(seconds, 2.5);
    }
}
