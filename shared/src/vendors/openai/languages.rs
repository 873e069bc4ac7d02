//! The languages Parley asks OpenAI to translate: OpenAI publishes no list, so this is the set its
//! chat models are documented to handle well (the languages of Whisper's list with a written
//! standard), by ISO 639-1 code, plus the regional targets DeepL names.

const LANGUAGES: &[(&str, &str)] = &[
    ("AF", "Afrikaans"),
    ("AR", "Arabic"),
    ("BG", "Bulgarian"),
    ("BN", "Bengali"),
    ("CA", "Catalan"),
    ("CS", "Czech"),
    ("CY", "Welsh"),
    ("DA", "Danish"),
    ("DE", "German"),
    ("EL", "Greek"),
    ("EN", "English"),
    ("ES", "Spanish"),
    ("ET", "Estonian"),
    ("FA", "Persian"),
    ("FI", "Finnish"),
    ("FR", "French"),
    ("GL", "Galician"),
    ("HE", "Hebrew"),
    ("HI", "Hindi"),
    ("HR", "Croatian"),
    ("HU", "Hungarian"),
    ("HY", "Armenian"),
    ("ID", "Indonesian"),
    ("IS", "Icelandic"),
    ("IT", "Italian"),
    ("JA", "Japanese"),
    ("KK", "Kazakh"),
    ("KN", "Kannada"),
    ("KO", "Korean"),
    ("LT", "Lithuanian"),
    ("LV", "Latvian"),
    ("MK", "Macedonian"),
    ("MR", "Marathi"),
    ("MS", "Malay"),
    ("NB", "Norwegian Bokmål"),
    ("NE", "Nepali"),
    ("NL", "Dutch"),
    ("PL", "Polish"),
    ("PT", "Portuguese"),
    ("RO", "Romanian"),
    ("RU", "Russian"),
    ("SK", "Slovak"),
    ("SL", "Slovenian"),
    ("SR", "Serbian"),
    ("SV", "Swedish"),
    ("SW", "Swahili"),
    ("TA", "Tamil"),
    ("TH", "Thai"),
    ("TL", "Tagalog"),
    ("TR", "Turkish"),
    ("UK", "Ukrainian"),
    ("UR", "Urdu"),
    ("VI", "Vietnamese"),
    ("ZH", "Chinese"),
];

const REGIONAL: &[(&str, &str)] = &[
    ("EN-GB", "English (British)"),
    ("EN-US", "English (American)"),
    ("ES-419", "Spanish (Latin American)"),
    ("PT-BR", "Portuguese (Brazilian)"),
    ("PT-PT", "Portuguese (European)"),
    ("ZH-HANS", "Chinese (simplified)"),
    ("ZH-HANT", "Chinese (traditional)"),
];

/// The English name of an upper-case code OpenAI is asked to translate, if it is one.
pub fn name(code: &str) -> Option<&'static str> {
    LANGUAGES
        .iter()
        .chain(REGIONAL)
        .find(|(c, _)| *c == code)
        .map(|(_, n)| *n)
}

/// Every code, for the union of supported languages.
pub fn codes() -> impl Iterator<Item = &'static str> {
    LANGUAGES.iter().chain(REGIONAL).map(|(c, _)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_upper_case_and_named_once() {
        let all: Vec<_> = codes().collect();
        for c in &all {
            assert_eq!(c.to_ascii_uppercase(), *c);
            assert_eq!(all.iter().filter(|x| *x == c).count(), 1, "{c}");
        }
        assert_eq!(name("PT-BR"), Some("Portuguese (Brazilian)"));
        assert_eq!(name("XX"), None);
    }
}
