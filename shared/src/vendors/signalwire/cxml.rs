//! The cXML documents Parley's voice webhook answers with (vendors.md §11 B.1–B.2; SignalWire
//! `compatibility-api/pages/cxml/voice/{say,dial,number-noun,record,hangup,reject}.mdx`).
//!
//! Written with quick-xml's writer, so every text and attribute is escaped; characters XML 1.0
//! cannot carry at all (most control characters) are dropped from user text. Verbs are
//! case-sensitive, and `<Record>` always gets an `action`: without one SignalWire requests the
//! same document again and the call loops.

use std::io::Cursor;

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};

/// `<Say>`'s documented text limit.
pub const SAY_LIMIT: usize = 4096;
/// The longest `<Record maxLength>` and `<Dial timeLimit>` Parley asks for (SignalWire's default call limit).
pub const MAX_SECONDS: u32 = 14_400;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CxmlError {
    #[error("cannot build the cXML document: {0}")]
    Invalid(String),
}

/// `<Dial record="…">`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialRecord {
    DoNotRecord,
    RecordFromAnswer,
    RecordFromAnswerDual,
}

impl DialRecord {
    fn as_str(self) -> &'static str {
        match self {
            DialRecord::DoNotRecord => "do-not-record",
            DialRecord::RecordFromAnswer => "record-from-answer",
            DialRecord::RecordFromAnswerDual => "record-from-answer-dual",
        }
    }
}

/// `<Reject reason="…">`: `busy` ends as busy, `rejected` as no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    Rejected,
    Busy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Say {
    pub text: String,
    pub voice: Option<String>,
    pub language: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dial {
    /// E.164 number dialled through `<Number>`.
    pub number: String,
    pub record: DialRecord,
    /// Receives `DialCallStatus` when the dialled leg ends; the call then follows its answer.
    pub action: Option<String>,
    pub recording_status_callback: Option<String>,
    /// The caller id shown to the dialled party.
    pub caller_id: Option<String>,
    /// 5–600 s of ringing.
    pub timeout: Option<u32>,
    pub time_limit: Option<u32>,
    /// `<Number statusCallback>`, with events initiated ringing answered completed.
    pub number_status_callback: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Seconds, 1–14400.
    pub max_length: u32,
    /// Required: where SignalWire goes when recording ends (see the module note on loops).
    pub action: String,
    pub recording_status_callback: Option<String>,
    pub play_beep: Option<bool>,
    /// Seconds of silence that end the recording.
    pub timeout: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    Say(Say),
    Dial(Dial),
    Record(Record),
    Hangup,
    Reject(RejectReason),
}

/// A `<Response>` and its verbs, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    pub verbs: Vec<Verb>,
}

/// The `Content-Type` to answer with.
pub const CONTENT_TYPE: &str = "application/xml";

/// Drops characters XML 1.0 forbids even escaped (C0 controls but tab, LF, CR; U+FFFE/U+FFFF).
pub fn xml_safe(text: &str) -> String {
    text.chars()
        .filter(|&c| {
            matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
        })
        .collect()
}

fn check_url(name: &str, url: &str) -> Result<(), CxmlError> {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "https" | "http") && u.host_str().is_some() => Ok(()),
        _ => Err(CxmlError::Invalid(format!(
            "{name} must be an absolute http(s) URL"
        ))),
    }
}

fn check_seconds(name: &str, v: u32, min: u32, max: u32) -> Result<(), CxmlError> {
    if (min..=max).contains(&v) {
        Ok(())
    } else {
        Err(CxmlError::Invalid(format!(
            "{name} must be {min}–{max}; got {v}"
        )))
    }
}

impl Response {
    pub fn new() -> Response {
        Response::default()
    }

    pub fn say(mut self, text: &str) -> Response {
        self.verbs.push(Verb::Say(Say {
            text: text.to_owned(),
            voice: None,
            language: None,
        }));
        self
    }

    pub fn verb(mut self, verb: Verb) -> Response {
        self.verbs.push(verb);
        self
    }

    pub fn hangup(self) -> Response {
        self.verb(Verb::Hangup)
    }

    pub fn reject(self, reason: RejectReason) -> Response {
        self.verb(Verb::Reject(reason))
    }

    fn validate(&self) -> Result<(), CxmlError> {
        for verb in &self.verbs {
            match verb {
                Verb::Say(s) => {
                    let safe = xml_safe(&s.text);
                    let n = safe.chars().count();
                    if safe.trim().is_empty() || n > SAY_LIMIT {
                        return Err(CxmlError::Invalid(format!(
                            "<Say> text must be 1–{SAY_LIMIT} characters; got {n}"
                        )));
                    }
                }
                Verb::Dial(d) => {
                    if !crate::vendors::telnyx::client::valid_e164(&d.number) {
                        return Err(CxmlError::Invalid(
                            "<Number> must be an E.164 number".into(),
                        ));
                    }
                    if let Some(c) = &d.caller_id
                        && !crate::vendors::telnyx::client::valid_e164(c)
                    {
                        return Err(CxmlError::Invalid(
                            "callerId must be an E.164 number".into(),
                        ));
                    }
                    for (name, url) in [
                        ("action", &d.action),
                        ("recordingStatusCallback", &d.recording_status_callback),
                        ("statusCallback", &d.number_status_callback),
                    ] {
                        if let Some(u) = url {
                            check_url(name, u)?;
                        }
                    }
                    if let Some(t) = d.timeout {
                        check_seconds("timeout", t, 5, 600)?;
                    }
                    if let Some(t) = d.time_limit {
                        check_seconds("timeLimit", t, 1, MAX_SECONDS)?;
                    }
                }
                Verb::Record(r) => {
                    check_seconds("maxLength", r.max_length, 1, MAX_SECONDS)?;
                    check_url("action", &r.action)?;
                    if let Some(u) = &r.recording_status_callback {
                        check_url("recordingStatusCallback", u)?;
                    }
                    if let Some(t) = r.timeout {
                        check_seconds("timeout", t, 1, 3600)?;
                    }
                }
                Verb::Hangup | Verb::Reject(_) => {}
            }
        }
        Ok(())
    }

    /// The document, `<?xml version="1.0" encoding="UTF-8"?><Response>…</Response>`.
    pub fn render(&self) -> Result<String, CxmlError> {
        self.validate()?;
        let mut w = Writer::new(Cursor::new(Vec::new()));
        let io = |e: std::io::Error| CxmlError::Invalid(e.to_string());
        w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))
            .map_err(io)?;
        w.write_event(Event::Start(BytesStart::new("Response")))
            .map_err(io)?;
        for verb in &self.verbs {
            match verb {
                Verb::Say(s) => {
                    let mut start = BytesStart::new("Say");
                    if let Some(v) = &s.voice {
                        start.push_attribute(("voice", xml_safe(v).as_str()));
                    }
                    if let Some(l) = &s.language {
                        start.push_attribute(("language", xml_safe(l).as_str()));
                    }
                    w.write_event(Event::Start(start)).map_err(io)?;
                    w.write_event(Event::Text(BytesText::new(&xml_safe(&s.text))))
                        .map_err(io)?;
                    w.write_event(Event::End(BytesEnd::new("Say")))
                        .map_err(io)?;
                }
                Verb::Dial(d) => {
                    let mut start = BytesStart::new("Dial");
                    start.push_attribute(("record", d.record.as_str()));
                    if let Some(a) = &d.action {
                        start.push_attribute(("action", a.as_str()));
                        start.push_attribute(("method", "POST"));
                    }
                    if let Some(cb) = &d.recording_status_callback {
                        start.push_attribute(("recordingStatusCallback", cb.as_str()));
                        start.push_attribute(("recordingStatusCallbackMethod", "POST"));
                        start.push_attribute(("recordingStatusCallbackEvent", "completed"));
                    }
                    if let Some(c) = &d.caller_id {
                        start.push_attribute(("callerId", c.as_str()));
                    }
                    if let Some(t) = d.timeout {
                        start.push_attribute(("timeout", t.to_string().as_str()));
                    }
                    if let Some(t) = d.time_limit {
                        start.push_attribute(("timeLimit", t.to_string().as_str()));
                    }
                    w.write_event(Event::Start(start)).map_err(io)?;
                    let mut number = BytesStart::new("Number");
                    if let Some(cb) = &d.number_status_callback {
                        number.push_attribute(("statusCallback", cb.as_str()));
                        number.push_attribute(("statusCallbackMethod", "POST"));
                        number.push_attribute((
                            "statusCallbackEvent",
                            "initiated ringing answered completed",
                        ));
                    }
                    w.write_event(Event::Start(number)).map_err(io)?;
                    w.write_event(Event::Text(BytesText::new(&d.number)))
                        .map_err(io)?;
                    w.write_event(Event::End(BytesEnd::new("Number")))
                        .map_err(io)?;
                    w.write_event(Event::End(BytesEnd::new("Dial")))
                        .map_err(io)?;
                }
                Verb::Record(r) => {
                    let mut start = BytesStart::new("Record");
                    start.push_attribute(("action", r.action.as_str()));
                    start.push_attribute(("method", "POST"));
                    start.push_attribute(("maxLength", r.max_length.to_string().as_str()));
                    if let Some(t) = r.timeout {
                        start.push_attribute(("timeout", t.to_string().as_str()));
                    }
                    if let Some(b) = r.play_beep {
                        start.push_attribute(("playBeep", if b { "true" } else { "false" }));
                    }
                    if let Some(cb) = &r.recording_status_callback {
                        start.push_attribute(("recordingStatusCallback", cb.as_str()));
                        start.push_attribute(("recordingStatusCallbackMethod", "POST"));
                        start.push_attribute(("recordingStatusCallbackEvent", "completed"));
                    }
                    w.write_event(Event::Empty(start)).map_err(io)?;
                }
                Verb::Hangup => {
                    w.write_event(Event::Empty(BytesStart::new("Hangup")))
                        .map_err(io)?;
                }
                Verb::Reject(reason) => {
                    let mut start = BytesStart::new("Reject");
                    start.push_attribute((
                        "reason",
                        match reason {
                            RejectReason::Rejected => "rejected",
                            RejectReason::Busy => "busy",
                        },
                    ));
                    w.write_event(Event::Empty(start)).map_err(io)?;
                }
            }
        }
        w.write_event(Event::End(BytesEnd::new("Response")))
            .map_err(io)?;
        String::from_utf8(w.into_inner().into_inner())
            .map_err(|_| CxmlError::Invalid("the writer produced invalid UTF-8".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

    fn dial() -> Dial {
        Dial {
            number: "+15557654321".into(),
            record: DialRecord::RecordFromAnswerDual,
            action: Some("https://api.example.com/webhooks/signalwire/status?leg=dial".into()),
            recording_status_callback: Some(
                "https://api.example.com/webhooks/signalwire/recording".into(),
            ),
            caller_id: None,
            timeout: Some(30),
            time_limit: None,
            number_status_callback: None,
        }
    }

    #[test]
    fn an_empty_response_is_valid() {
        assert_eq!(
            Response::new().render().unwrap(),
            format!("{HEAD}<Response></Response>")
        );
    }

    #[test]
    fn greeting_then_forward_with_dual_recording() {
        let doc = Response::new()
            .say("Welcome to Acme.")
            .verb(Verb::Dial(dial()))
            .render()
            .unwrap();
        assert_eq!(
            doc,
            format!(
                "{HEAD}<Response><Say>Welcome to Acme.</Say>\
                 <Dial record=\"record-from-answer-dual\" action=\"https://api.example.com/webhooks/signalwire/status?leg=dial\" method=\"POST\" \
                 recordingStatusCallback=\"https://api.example.com/webhooks/signalwire/recording\" recordingStatusCallbackMethod=\"POST\" \
                 recordingStatusCallbackEvent=\"completed\" timeout=\"30\"><Number>+15557654321</Number></Dial></Response>"
            )
        );
    }

    #[test]
    fn greeting_then_record_then_hangup() {
        let doc = Response::new()
            .say("Leave a message.")
            .verb(Verb::Record(Record {
                max_length: 120,
                action: "https://api.example.com/webhooks/signalwire/status?after=record&a=1"
                    .into(),
                recording_status_callback: Some(
                    "https://api.example.com/webhooks/signalwire/recording".into(),
                ),
                play_beep: Some(true),
                timeout: None,
            }))
            .hangup()
            .render()
            .unwrap();
        assert_eq!(
            doc,
            format!(
                "{HEAD}<Response><Say>Leave a message.</Say>\
                 <Record action=\"https://api.example.com/webhooks/signalwire/status?after=record&amp;a=1\" method=\"POST\" maxLength=\"120\" playBeep=\"true\" \
                 recordingStatusCallback=\"https://api.example.com/webhooks/signalwire/recording\" recordingStatusCallbackMethod=\"POST\" \
                 recordingStatusCallbackEvent=\"completed\"/><Hangup/></Response>"
            )
        );
        assert_eq!(
            Response::new().reject(RejectReason::Busy).render().unwrap(),
            format!("{HEAD}<Response><Reject reason=\"busy\"/></Response>")
        );
    }

    #[test]
    fn hostile_greetings_stay_text() {
        let hostile = "</Say><Dial><Number>+19005550000</Number></Dial><Say>\"'&amp;<![CDATA[x]]><!-- \u{0}\u{7}\u{1b}\u{FFFE}";
        let doc = Response::new().say(hostile).hangup().render().unwrap();
        assert_eq!(
            doc,
            format!(
                "{HEAD}<Response><Say>&lt;/Say&gt;&lt;Dial&gt;&lt;Number&gt;+19005550000&lt;/Number&gt;&lt;/Dial&gt;&lt;Say&gt;&quot;&apos;&amp;amp;&lt;![CDATA[x]]&gt;&lt;!-- </Say><Hangup/></Response>"
            )
        );
        // Exactly one Say, one Hangup, no Dial: the markup never escaped its text node.
        let mut reader = quick_xml::Reader::from_str(&doc);
        let mut names = Vec::new();
        let mut text = String::new();
        loop {
            match reader.read_event().unwrap() {
                Event::Start(e) | Event::Empty(e) => {
                    names.push(String::from_utf8(e.name().as_ref().to_vec()).unwrap())
                }
                Event::Text(t) => text.push_str(&t.decode().unwrap()),
                Event::GeneralRef(r) => {
                    let name = String::from_utf8(r.to_vec()).unwrap();
                    text.push_str(&quick_xml::escape::unescape(&format!("&{name};")).unwrap());
                }
                Event::Eof => break,
                _ => {}
            }
        }
        assert_eq!(names, ["Response", "Say", "Hangup"]);
        assert_eq!(
            text,
            "</Say><Dial><Number>+19005550000</Number></Dial><Say>\"'&amp;<![CDATA[x]]><!-- "
        );
        let multiline = Response::new().say("Line one\nline\ttwo").render().unwrap();
        assert!(multiline.contains("<Say>Line one\nline\ttwo</Say>"));
    }

    #[test]
    fn invalid_documents_are_refused() {
        assert!(Response::new().say("   ").render().is_err());
        assert!(
            Response::new()
                .say(&"a".repeat(SAY_LIMIT + 1))
                .render()
                .is_err()
        );
        assert!(Response::new().say("\u{1}\u{2}").render().is_err());
        let mut d = dial();
        d.number = "+1555\"><Hangup/>".into();
        assert!(Response::new().verb(Verb::Dial(d)).render().is_err());
        let mut d = dial();
        d.action = Some("javascript:alert(1)".into());
        assert!(Response::new().verb(Verb::Dial(d)).render().is_err());
        let mut d = dial();
        d.timeout = Some(3);
        assert!(Response::new().verb(Verb::Dial(d)).render().is_err());
        let record = |max_length: u32, action: &str| {
            Verb::Record(Record {
                max_length,
                action: action.into(),
                recording_status_callback: None,
                play_beep: None,
                timeout: None,
            })
        };
        assert!(
            Response::new()
                .verb(record(0, "https://x.example/a"))
                .render()
                .is_err()
        );
        assert!(
            Response::new()
                .verb(record(MAX_SECONDS + 1, "https://x.example/a"))
                .render()
                .is_err()
        );
        assert!(
            Response::new()
                .verb(record(60, "/relative"))
                .render()
                .is_err()
        );
        assert!(
            Response::new()
                .verb(record(60, "https://x.example/a"))
                .render()
                .is_ok()
        );
    }
}
