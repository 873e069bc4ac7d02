//! SignalWire's Compatibility (LaML) REST API over [`VendorClient`]: create a call, hang one up,
//! delete a recording. Base `{space}/api/laml/2010-04-01/Accounts/{project}`, HTTP Basic
//! `project:token`, form-encoded bodies (vendors.md §11 B.5; developer.signalwire.com
//! compatibility-api/client-sdks/methods/calls/create, …/calls/update, …/recordings/delete).

use secrecy::SecretString;
use serde_json::Value;

use crate::platform::http_client::{Replay, VendorClient, VendorError, VendorMessage};

use super::config::SignalWireSettings;
use super::wire::CallResource;

pub const VENDOR: &str = "SignalWire";
pub const API_VERSION: &str = "2010-04-01";
const RESPONSE_LIMIT: usize = 256 * 1024;

/// `{"code":20404,"message":"…","more_info":"…","status":404}`, or a create call's
/// `{"errors":[{"code":"…","message":"…"}]}`.
pub fn parse_error(body: &[u8]) -> Option<VendorMessage> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let node = match value["errors"].as_array().and_then(|a| a.first()) {
        Some(first) => first,
        None => &value,
    };
    let message = node["message"]
        .as_str()
        .or_else(|| node["detail"].as_str())?
        .to_owned();
    let code = match &node["code"] {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    Some(VendorMessage { code, message })
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SignalWireError {
    #[error("not sent to SignalWire: {0}")]
    Invalid(String),
    #[error(transparent)]
    Vendor(#[from] VendorError),
}

impl SignalWireError {
    pub fn is_transient(&self) -> bool {
        match self {
            SignalWireError::Invalid(_) => false,
            SignalWireError::Vendor(e) => e.is_transient(),
        }
    }

    pub fn certainly_not_processed(&self) -> bool {
        match self {
            SignalWireError::Invalid(_) => true,
            SignalWireError::Vendor(e) => e.certainly_not_processed(),
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            SignalWireError::Vendor(e) => e.status(),
            SignalWireError::Invalid(_) => None,
        }
    }
}

/// `StatusCallbackEvent` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEvent {
    Initiated,
    Ringing,
    Answered,
    Completed,
}

impl CallEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            CallEvent::Initiated => "initiated",
            CallEvent::Ringing => "ringing",
            CallEvent::Answered => "answered",
            CallEvent::Completed => "completed",
        }
    }

    pub const ALL: [CallEvent; 4] = [
        CallEvent::Initiated,
        CallEvent::Ringing,
        CallEvent::Answered,
        CallEvent::Completed,
    ];
}

/// `POST …/Calls.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateCall {
    pub to: String,
    pub from: String,
    /// The cXML document's URL (Parley's voice webhook), fetched with POST.
    pub url: String,
    pub status_callback: Option<String>,
    /// Sent as repeated `StatusCallbackEvent` keys (the Twilio convention SignalWire follows).
    pub status_callback_events: Vec<CallEvent>,
    /// Records the whole call in two channels when set, with this recording status callback.
    pub record: Option<Recording>,
    /// 1–600 s of ringing.
    pub timeout: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    pub status_callback: String,
}

/// How a hangup ends the call: `completed` for a connected call, `canceled` for one still queued
/// or ringing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangupStatus {
    Completed,
    Canceled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    Done,
    AlreadyGone,
}

fn valid_e164(n: &str) -> bool {
    crate::vendors::telnyx::client::valid_e164(n)
}

fn valid_sid(sid: &str) -> bool {
    !sid.is_empty()
        && sid.len() <= 64
        && sid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn valid_callback(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "https" | "http"))
}

#[derive(Debug, Clone)]
pub struct SignalWire {
    client: VendorClient,
    project_id: String,
    space_url: String,
}

impl SignalWire {
    pub fn new(
        settings: &SignalWireSettings,
        http: reqwest::Client,
        timeout: std::time::Duration,
    ) -> SignalWire {
        let token = settings
            .api_token
            .clone()
            .unwrap_or_else(|| SecretString::from(""));
        SignalWire::with_client(
            VendorClient::new(VENDOR, http, timeout, token, parse_error),
            settings.project_id.as_deref().unwrap_or_default(),
            settings.space_url.as_deref().unwrap_or_default(),
        )
    }

    pub fn with_client(client: VendorClient, project_id: &str, space_url: &str) -> SignalWire {
        SignalWire {
            client,
            project_id: project_id.to_owned(),
            space_url: space_url.trim_end_matches('/').to_owned(),
        }
    }

    /// `{space}/api/laml/2010-04-01/Accounts/{project}`.
    pub fn account_url(&self) -> String {
        format!(
            "{}/api/laml/{API_VERSION}/Accounts/{}",
            self.space_url, self.project_id
        )
    }

    /// Where a recording's WAV media is served (no credentials needed, vendors.md §11 B.4).
    pub fn recording_media_url(&self, recording_sid: &str) -> Option<String> {
        valid_sid(recording_sid)
            .then(|| format!("{}/Recordings/{recording_sid}.wav", self.account_url()))
    }

    async fn form(
        &self,
        method: reqwest::Method,
        url: &str,
        fields: &[(&str, String)],
        replay: Replay,
        deadline_ms: u64,
    ) -> Result<reqwest::Response, SignalWireError> {
        let body = serde_urlencoded::to_string(fields)
            .map_err(|e| SignalWireError::Invalid(format!("form encoding: {e}")))?;
        Ok(self
            .client
            .send(
                |http| {
                    http.request(method.clone(), url)
                        .basic_auth(&self.project_id, Some(self.client.key()))
                        .header("accept", "application/json")
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(body.clone())
                },
                replay,
                deadline_ms,
            )
            .await?)
    }

    /// Places an outbound call. Billable, so repeated only when SignalWire certainly did not act.
    pub async fn create_call(
        &self,
        call: &CreateCall,
        deadline_ms: u64,
    ) -> Result<CallResource, SignalWireError> {
        if !valid_e164(&call.to) || !valid_e164(&call.from) {
            return Err(SignalWireError::Invalid(
                "To and From must be E.164 numbers".into(),
            ));
        }
        if !valid_callback(&call.url) {
            return Err(SignalWireError::Invalid(
                "Url must be an http(s) URL".into(),
            ));
        }
        let mut fields: Vec<(&str, String)> = vec![
            ("To", call.to.clone()),
            ("From", call.from.clone()),
            ("Url", call.url.clone()),
            ("Method", "POST".into()),
        ];
        if let Some(cb) = &call.status_callback {
            if !valid_callback(cb) {
                return Err(SignalWireError::Invalid(
                    "StatusCallback must be an http(s) URL".into(),
                ));
            }
            fields.push(("StatusCallback", cb.clone()));
            fields.push(("StatusCallbackMethod", "POST".into()));
            for event in &call.status_callback_events {
                fields.push(("StatusCallbackEvent", event.as_str().into()));
            }
        }
        if let Some(rec) = &call.record {
            if !valid_callback(&rec.status_callback) {
                return Err(SignalWireError::Invalid(
                    "RecordingStatusCallback must be an http(s) URL".into(),
                ));
            }
            fields.push(("Record", "true".into()));
            fields.push(("RecordingChannels", "dual".into()));
            fields.push(("RecordingStatusCallback", rec.status_callback.clone()));
            fields.push(("RecordingStatusCallbackMethod", "POST".into()));
            fields.push(("RecordingStatusCallbackEvent", "completed".into()));
        }
        if let Some(t) = call.timeout {
            if !(1..=600).contains(&t) {
                return Err(SignalWireError::Invalid("Timeout must be 1–600".into()));
            }
            fields.push(("Timeout", t.to_string()));
        }
        let url = format!("{}/Calls.json", self.account_url());
        let response = self
            .form(
                reqwest::Method::POST,
                &url,
                &fields,
                Replay::OnlyIfRefused,
                deadline_ms,
            )
            .await?;
        self.call_resource(response).await
    }

    /// `POST …/Calls/{sid}.json` with `Status=completed|canceled`.
    pub async fn hangup(
        &self,
        call_sid: &str,
        status: HangupStatus,
        deadline_ms: u64,
    ) -> Result<CallResource, SignalWireError> {
        if !valid_sid(call_sid) {
            return Err(SignalWireError::Invalid(
                "a CallSid with unexpected characters".into(),
            ));
        }
        let status = match status {
            HangupStatus::Completed => "completed",
            HangupStatus::Canceled => "canceled",
        };
        let url = format!("{}/Calls/{call_sid}.json", self.account_url());
        let response = self
            .form(
                reqwest::Method::POST,
                &url,
                &[("Status", status.to_owned())],
                Replay::Safe,
                deadline_ms,
            )
            .await?;
        self.call_resource(response).await
    }

    /// `DELETE …/Recordings/{sid}.json` → 204; a recording already gone (404) counts as deleted.
    pub async fn delete_recording(
        &self,
        recording_sid: &str,
        deadline_ms: u64,
    ) -> Result<Deleted, SignalWireError> {
        if !valid_sid(recording_sid) {
            return Err(SignalWireError::Invalid(
                "a RecordingSid with unexpected characters".into(),
            ));
        }
        let url = format!("{}/Recordings/{recording_sid}.json", self.account_url());
        let sent = self
            .client
            .send(
                |http| {
                    http.delete(&url)
                        .basic_auth(&self.project_id, Some(self.client.key()))
                        .header("accept", "application/json")
                },
                Replay::Safe,
                deadline_ms,
            )
            .await;
        match sent {
            Ok(_) => Ok(Deleted::Done),
            Err(e) if e.status() == Some(404) => Ok(Deleted::AlreadyGone),
            Err(e) => Err(e.into()),
        }
    }

    async fn call_resource(
        &self,
        response: reqwest::Response,
    ) -> Result<CallResource, SignalWireError> {
        let call: CallResource = self.client.json(response, RESPONSE_LIMIT).await?;
        if !valid_sid(&call.sid) {
            return Err(VendorError::InvalidResponse {
                vendor: VENDOR,
                reason: "sid is empty or malformed".into(),
            }
            .into());
        }
        Ok(call)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_error_shapes_are_read() {
        let m = parse_error(br#"{"code":20404,"message":"The requested resource was not found","more_info":"https://x","status":404}"#).unwrap();
        assert_eq!(
            (m.code.as_deref(), m.message.as_str()),
            (Some("20404"), "The requested resource was not found")
        );
        let e = parse_error(br#"{"errors":[{"code":"invalid_parameter","message":"To is invalid","more_info":"https://x"}]}"#).unwrap();
        assert_eq!(
            (e.code.as_deref(), e.message.as_str()),
            (Some("invalid_parameter"), "To is invalid")
        );
        assert!(parse_error(b"nope").is_none());
    }

    #[test]
    fn sids_and_media_urls_are_safe() {
        let sw = SignalWire::with_client(
            VendorClient::new(
                VENDOR,
                crate::platform::http_client::http_client(std::time::Duration::from_secs(1)),
                std::time::Duration::from_secs(1),
                SecretString::from("PT"),
                parse_error,
            ),
            "p-1",
            "https://acme.signalwire.com/",
        );
        assert_eq!(
            sw.account_url(),
            "https://acme.signalwire.com/api/laml/2010-04-01/Accounts/p-1"
        );
        assert_eq!(
            sw.recording_media_url("RE0123-ab").as_deref(),
            Some(
                "https://acme.signalwire.com/api/laml/2010-04-01/Accounts/p-1/Recordings/RE0123-ab.wav"
            )
        );
        assert!(sw.recording_media_url("../x").is_none());
        assert!(
            !valid_sid("a/b")
                && !valid_sid("")
                && valid_sid("b3877c40-da60-4998-90ad-b792e98472pa")
        );
    }
}
