//! SignalWire and Twilio-style request signatures (HMAC-SHA1). See docs/webhooks.md for sources.
//!
//! SignalWire (`X-SignalWire-Signature`, also sent as `X-Twilio-Signature`; the project's
//! Signing Key), as SignalWire's own validator (signalwire-typescript `src/WebhookValidator.ts`):
//! - scheme A: lower hex of HMAC-SHA1(key, URL + raw body), the URL exactly as signed;
//! - scheme B: base64 of HMAC-SHA1(key, URL + name+value of each form parameter, stably sorted
//!   by name so repeated names keep their submission order, no de-duplication), tried with the
//!   parsed form parameters and with none, on the URL as given and with its default port added
//!   (no port) or removed (`:443`/`:80`); a `bodySHA256` query parameter must then be the hex
//!   SHA-256 of the raw body.
//!
//! Twilio (`X-Twilio-Signature`; the account's auth token), as twilio-python
//! `request_validator.py`: base64 HMAC-SHA1 over URL + for each distinct name in sorted order,
//! for each distinct value in sorted order, name+value; URL without any port or with the default
//! port; with `bodySHA256` in the query, no parameters and the body hash must match.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use http::header::CONTENT_TYPE;
use secrecy::{ExposeSecret, SecretString};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::vendors::signature_error::{MAX_SIGNATURES, SignatureError};

pub const SIGNATURE_HEADER: &str = "x-signalwire-signature";
/// SignalWire's compatibility API also sends its signature under Twilio's name.
pub const TWILIO_SIGNATURE_HEADER: &str = "x-twilio-signature";
const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";
const BODY_SHA256: &str = "bodySHA256";

type HmacSha1 = Hmac<Sha1>;

/// Verifies a SignalWire callback: scheme A, then scheme B (see the module comment). `url` is
/// the public URL SignalWire called, query included; form parameters are read from `body` when
/// its content type is `application/x-www-form-urlencoded`.
pub fn verify(
    signing_key: &SecretString,
    url: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), SignatureError> {
    let key = non_empty_key(signing_key, "SIGNALWIRE_SIGNING_KEY")?;
    let candidates = signature_values(headers, &[SIGNATURE_HEADER, TWILIO_SIGNATURE_HEADER])?;

    let scheme_a = hmac_sha1(key, &[url.as_bytes(), body]);
    let scheme_a_hex = format!("{scheme_a:x}");
    if matches_any(&candidates, scheme_a_hex.as_bytes()) {
        return Ok(());
    }

    let form = form_params(headers, body);
    let mut shapes = vec![concat_in_submission_order(&form)];
    if !form.is_empty() {
        // A JSON body on the compatibility surface is signed with no parameters.
        shapes.push(String::new());
    }
    let mut refusal = SignatureError::Mismatch;
    for candidate_url in signalwire_url_variants(url) {
        for shape in &shapes {
            let expected = STANDARD.encode(hmac_sha1(
                key,
                &[candidate_url.as_bytes(), shape.as_bytes()],
            ));
            if matches_any(&candidates, expected.as_bytes()) {
                match check_body_sha256(&candidate_url, body) {
                    Ok(()) => return Ok(()),
                    Err(e) => refusal = e,
                }
            }
        }
    }
    Err(refusal)
}

/// Verifies a Twilio-style sender's `X-Twilio-Signature` with Twilio's SDK semantics (see the
/// module comment). SignalWire's own callbacks go through [`verify`] instead.
pub fn verify_twilio(
    auth_token: &SecretString,
    url: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), SignatureError> {
    let key = non_empty_key(auth_token, "the sender's auth token")?;
    let candidates = signature_values(headers, &[TWILIO_SIGNATURE_HEADER])?;
    let has_body_hash = query_param(url, BODY_SHA256).is_some();
    let params = if has_body_hash {
        Vec::new()
    } else {
        form_params(headers, body)
    };
    let concat = concat_sorted_distinct(&params);
    for candidate_url in twilio_url_variants(url) {
        let expected = STANDARD.encode(hmac_sha1(
            key,
            &[candidate_url.as_bytes(), concat.as_bytes()],
        ));
        if matches_any(&candidates, expected.as_bytes()) {
            return if has_body_hash {
                check_body_sha256(url, body)
            } else {
                Ok(())
            };
        }
    }
    Err(SignatureError::Mismatch)
}

/// Scheme A's signature (lower hex) of `body` posted to `url` (sandbox and tests).
pub fn sign_raw(signing_key: &SecretString, url: &str, body: &[u8]) -> String {
    format!(
        "{:x}",
        hmac_sha1(
            signing_key.expose_secret().as_bytes(),
            &[url.as_bytes(), body]
        )
    )
}

/// Scheme B's signature (base64) of form `params`, in submission order, posted to `url`, as
/// SignalWire's compatibility API signs it (sandbox and tests).
pub fn sign_form<N: AsRef<str>, V: AsRef<str>>(
    signing_key: &SecretString,
    url: &str,
    params: &[(N, V)],
) -> String {
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(n, v)| (n.as_ref().to_owned(), v.as_ref().to_owned()))
        .collect();
    let concat = concat_in_submission_order(&owned);
    STANDARD.encode(hmac_sha1(
        signing_key.expose_secret().as_bytes(),
        &[url.as_bytes(), concat.as_bytes()],
    ))
}

/// Twilio's signature (base64) of form `params` posted to `url`: sorted names, sorted distinct
/// values (tests, and a sandbox playing a Twilio-style sender).
pub fn sign_twilio<N: AsRef<str>, V: AsRef<str>>(
    auth_token: &SecretString,
    url: &str,
    params: &[(N, V)],
) -> String {
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(n, v)| (n.as_ref().to_owned(), v.as_ref().to_owned()))
        .collect();
    let concat = concat_sorted_distinct(&owned);
    STANDARD.encode(hmac_sha1(
        auth_token.expose_secret().as_bytes(),
        &[url.as_bytes(), concat.as_bytes()],
    ))
}

fn non_empty_key<'k>(
    key: &'k SecretString,
    name: &'static str,
) -> Result<&'k [u8], SignatureError> {
    let key = key.expose_secret().as_bytes();
    if key.is_empty() {
        return Err(SignatureError::EmptyKey(name));
    }
    Ok(key)
}

fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> hmac::digest::Output<HmacSha1> {
    let mut mac = HmacSha1::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes()
}

/// Every signature value sent under `names`, in that order, trimmed.
fn signature_values<'h>(
    headers: &'h HeaderMap,
    names: &[&'static str],
) -> Result<Vec<&'h [u8]>, SignatureError> {
    let mut values = Vec::new();
    for name in names {
        for value in headers.get_all(*name) {
            if values.len() == MAX_SIGNATURES {
                return Err(SignatureError::MalformedHeader {
                    header: name,
                    reason: format!("more than {MAX_SIGNATURES} signatures sent"),
                });
            }
            values.push(value.as_bytes().trim_ascii());
        }
    }
    if values.is_empty() {
        return Err(SignatureError::MissingHeader(names[0]));
    }
    Ok(values)
}

fn matches_any(candidates: &[&[u8]], expected: &[u8]) -> bool {
    // Every candidate is compared, so timing does not reveal which one matched.
    candidates
        .iter()
        .fold(subtle::Choice::from(0), |found, candidate| {
            found | candidate.ct_eq(expected)
        })
        .into()
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(FORM_CONTENT_TYPE))
}

/// The body's form parameters in submission order, decoded; none unless the body is a form.
fn form_params(headers: &HeaderMap, body: &[u8]) -> Vec<(String, String)> {
    if !is_form(headers) {
        return Vec::new();
    }
    form_urlencoded::parse(body)
        .map(|(n, v)| (n.into_owned(), v.into_owned()))
        .collect()
}

/// SignalWire's scheme B: stable sort by name, so repeated names keep submission order.
fn concat_in_submission_order(params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted.iter().map(|(n, v)| format!("{n}{v}")).collect()
}

/// Twilio's: distinct names sorted, and under each its distinct values sorted.
fn concat_sorted_distinct(params: &[(String, String)]) -> String {
    let mut by_name: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (n, v) in params {
        by_name.entry(n).or_default().insert(v);
    }
    by_name
        .iter()
        .flat_map(|(n, values)| values.iter().map(move |v| format!("{n}{v}")))
        .collect()
}

/// A URL cut where its port goes, without re-encoding anything (the signature covers the bytes).
struct UrlParts<'u> {
    scheme: &'u str,
    /// `scheme://[userinfo@]host`
    head: &'u str,
    port: Option<&'u str>,
    /// Path, query and fragment.
    tail: &'u str,
}

impl<'u> UrlParts<'u> {
    fn split(url: &'u str) -> Option<UrlParts<'u>> {
        let (scheme, after) = url.split_once("://")?;
        let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let authority = &after[..authority_end];
        let host_start = authority.rfind('@').map_or(0, |at| at + 1);
        let host_and_port = &authority[host_start..];
        // The port follows the last ':' outside an IPv6 literal's brackets.
        let port_colon = host_and_port
            .rfind(':')
            .filter(|&c| host_and_port[c..].find(']').is_none())
            .filter(|&c| {
                let digits = &host_and_port[c + 1..];
                !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
            });
        let head_len =
            scheme.len() + "://".len() + host_start + port_colon.unwrap_or(host_and_port.len());
        Some(UrlParts {
            scheme,
            head: &url[..head_len],
            port: port_colon.map(|c| &host_and_port[c + 1..]),
            tail: &after[authority_end..],
        })
    }

    fn default_port(&self) -> Option<&'static str> {
        if self.scheme.eq_ignore_ascii_case("https") {
            Some("443")
        } else if self.scheme.eq_ignore_ascii_case("http") {
            Some("80")
        } else {
            None
        }
    }

    fn with_port(&self, port: &str) -> String {
        format!("{}:{port}{}", self.head, self.tail)
    }

    fn without_port(&self) -> String {
        format!("{}{}", self.head, self.tail)
    }
}

/// SignalWire: the URL as given, plus the default port added (none given) or removed (given);
/// a non-default port is signed as-is.
fn signalwire_url_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_owned()];
    if let Some(parts) = UrlParts::split(url)
        && let Some(default) = parts.default_port()
    {
        match parts.port {
            None => variants.push(parts.with_port(default)),
            Some(port) if port == default => variants.push(parts.without_port()),
            Some(_) => {}
        }
    }
    variants
}

/// Twilio: the URL without any port, and with its port (the default one when none is given).
fn twilio_url_variants(url: &str) -> Vec<String> {
    let Some(parts) = UrlParts::split(url) else {
        return vec![url.to_owned()];
    };
    let without = parts.without_port();
    let with = match (parts.port, parts.default_port()) {
        (Some(_), _) => url.to_owned(),
        // twilio-python adds 80 for any scheme that is not https.
        (None, default) => parts.with_port(default.unwrap_or("80")),
    };
    if with == without {
        vec![without]
    } else {
        vec![without, with]
    }
}

/// The first value of query parameter `name` in `url`, decoded.
fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    form_urlencoded::parse(query.as_bytes())
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.into_owned())
}

/// With `bodySHA256` in the URL, the body must hash to it; without, nothing to check.
fn check_body_sha256(url: &str, body: &[u8]) -> Result<(), SignatureError> {
    let Some(expected) = query_param(url, BODY_SHA256) else {
        return Ok(());
    };
    let actual = format!("{:x}", Sha256::digest(body));
    if bool::from(actual.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(SignatureError::BodyHashMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn key(k: &str) -> SecretString {
        SecretString::from(k)
    }

    fn request_headers(header: &str, signature: &str, content_type: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::HeaderName::from_bytes(header.as_bytes()).unwrap(),
            HeaderValue::from_str(signature).unwrap(),
        );
        if let Some(ct) = content_type {
            h.insert(CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        }
        h
    }

    fn form_headers(signature: &str) -> HeaderMap {
        request_headers("X-SignalWire-Signature", signature, Some(FORM_CONTENT_TYPE))
    }

    fn json_headers(signature: &str) -> HeaderMap {
        request_headers(
            "X-SignalWire-Signature",
            signature,
            Some("application/json"),
        )
    }

    fn form_body(params: &[(&str, &str)]) -> String {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish()
    }

    // SignalWire's canonical vectors (signalwire-typescript tests/WebhookValidator.test.ts,
    // from porting-sdk/webhooks.md).
    const VECTOR_A_KEY: &str = "PSKtest1234567890abcdef";
    const VECTOR_A_URL: &str = "https://example.ngrok.io/webhook";
    const VECTOR_A_BODY: &str =
        r#"{"event":"call.state","params":{"call_id":"abc-123","state":"answered"}}"#;
    const VECTOR_A_SIGNATURE: &str = "c3c08c1fefaf9ee198a100d5906765a6f394bf0f";

    const COMPANY_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    /// Twilio's and SignalWire's shared example (twilio-python tests/unit/test_request_validator.py).
    const COMPANY_PARAMS: &[(&str, &str)] = &[
        ("CallSid", "CA1234567890ABCDE"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
        ("Caller", "+14158675309"),
    ];
    const COMPANY_SIGNATURE: &str = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";

    const VECTOR_C_BODY: &str = r#"{"event":"call.state"}"#;
    const VECTOR_C_URL: &str = "https://example.ngrok.io/webhook?bodySHA256=69f3cbfc18e386ef8236cb7008cd5a54b7fed637a8cb3373b5a1591d7f0fd5f4";
    const VECTOR_C_SIGNATURE: &str = "dfO9ek8mxyFtn2nMz24plPmPfIY=";

    #[test]
    fn signalwire_vector_a_scheme_a_hex_over_url_and_raw_body() {
        let k = key(VECTOR_A_KEY);
        assert_eq!(
            sign_raw(&k, VECTOR_A_URL, VECTOR_A_BODY.as_bytes()),
            VECTOR_A_SIGNATURE
        );
        let h = json_headers(VECTOR_A_SIGNATURE);
        assert_eq!(
            verify(&k, VECTOR_A_URL, &h, VECTOR_A_BODY.as_bytes()),
            Ok(())
        );
        let tampered = VECTOR_A_BODY.replace("answered", "ringing");
        assert_eq!(
            verify(&k, VECTOR_A_URL, &h, tampered.as_bytes()),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                &key("wrong-key"),
                VECTOR_A_URL,
                &h,
                VECTOR_A_BODY.as_bytes()
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                &k,
                "https://example.ngrok.io/different",
                &h,
                VECTOR_A_BODY.as_bytes()
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn signalwire_vector_b_scheme_b_over_sorted_form_params() {
        let k = key("12345");
        assert_eq!(
            sign_form(&k, COMPANY_URL, COMPANY_PARAMS),
            COMPANY_SIGNATURE
        );
        let body = form_body(COMPANY_PARAMS);
        let h = form_headers(COMPANY_SIGNATURE);
        assert_eq!(verify(&k, COMPANY_URL, &h, body.as_bytes()), Ok(()));
        // The same signature sent under Twilio's header name.
        let h = request_headers(
            "X-Twilio-Signature",
            COMPANY_SIGNATURE,
            Some(FORM_CONTENT_TYPE),
        );
        assert_eq!(verify(&k, COMPANY_URL, &h, body.as_bytes()), Ok(()));
        // A changed parameter value is refused.
        let changed = body.replace("1234&", "1235&");
        assert_ne!(changed, body);
        let h = form_headers(COMPANY_SIGNATURE);
        assert_eq!(
            verify(&k, COMPANY_URL, &h, changed.as_bytes()),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn form_params_count_only_when_the_body_is_a_form() {
        let k = key("12345");
        let body = form_body(COMPANY_PARAMS);
        for content_type in [None, Some("text/plain"), Some("application/json")] {
            let h = request_headers("x-signalwire-signature", COMPANY_SIGNATURE, content_type);
            assert_eq!(
                verify(&k, COMPANY_URL, &h, body.as_bytes()),
                Err(SignatureError::Mismatch),
                "{content_type:?}"
            );
        }
        let h = request_headers(
            "x-signalwire-signature",
            COMPANY_SIGNATURE,
            Some("Application/X-WWW-Form-Urlencoded; charset=utf-8"),
        );
        assert_eq!(verify(&k, COMPANY_URL, &h, body.as_bytes()), Ok(()));
    }

    #[test]
    fn form_params_are_signed_decoded_so_percent_case_is_no_change() {
        let k = key("test-key");
        let url = "https://example.com/hook";
        let signature = sign_form(&k, url, &[("To", "J")]);
        let h = form_headers(&signature);
        for body in ["To=J", "To=%4a", "To=%4A"] {
            assert_eq!(verify(&k, url, &h, body.as_bytes()), Ok(()), "{body}");
        }
        assert_eq!(verify(&k, url, &h, b"To=K"), Err(SignatureError::Mismatch));
    }

    #[test]
    fn signalwire_vector_c_body_sha256() {
        let k = key(VECTOR_A_KEY);
        let h = json_headers(VECTOR_C_SIGNATURE);
        assert_eq!(
            verify(&k, VECTOR_C_URL, &h, VECTOR_C_BODY.as_bytes()),
            Ok(())
        );
        // The HMAC over the URL still matches, but the body is not the one hashed into it.
        assert_eq!(
            verify(&k, VECTOR_C_URL, &h, br#"{"event":"DIFFERENT"}"#),
            Err(SignatureError::BodyHashMismatch)
        );
    }

    #[test]
    fn signalwire_port_variants() {
        let k = key("test-key");
        let no_params: &[(&str, &str)] = &[];
        let signed_443 = sign_form(&k, "https://example.com:443/webhook", no_params);
        assert_eq!(
            verify(
                &k,
                "https://example.com/webhook",
                &json_headers(&signed_443),
                b"{}"
            ),
            Ok(())
        );
        let signed_bare = sign_form(&k, "https://example.com/webhook", no_params);
        assert_eq!(
            verify(
                &k,
                "https://example.com:443/webhook",
                &json_headers(&signed_bare),
                b"{}"
            ),
            Ok(())
        );
        let signed_80 = sign_form(&k, "http://example.com:80/path", no_params);
        assert_eq!(
            verify(
                &k,
                "http://example.com/path",
                &json_headers(&signed_80),
                b""
            ),
            Ok(())
        );
        // A non-default port is signed as-is: no variants.
        let signed_8080 = sign_form(&k, "https://example.com:8080/path", no_params);
        assert_eq!(
            verify(
                &k,
                "https://example.com:8080/path",
                &json_headers(&signed_8080),
                b""
            ),
            Ok(())
        );
        assert_eq!(
            verify(
                &k,
                "https://example.com:443/path",
                &json_headers(&signed_8080),
                b""
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                &k,
                "https://example.com/path",
                &json_headers(&signed_8080),
                b""
            ),
            Err(SignatureError::Mismatch)
        );
        // Scheme A signs the URL exactly: no port variants there.
        let raw = sign_raw(&k, "https://example.com:443/webhook", b"{}");
        assert_eq!(
            verify(
                &k,
                "https://example.com/webhook",
                &json_headers(&raw),
                b"{}"
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn signalwire_repeated_names_keep_submission_order_without_dedup() {
        let k = key("test-key");
        let url = "https://example.com/hook";
        let expected =
            STANDARD.encode(hmac_sha1(b"test-key", &[format!("{url}ToaTob").as_bytes()]));
        assert_eq!(sign_form(&k, url, &[("To", "a"), ("To", "b")]), expected);
        assert_eq!(
            verify(&k, url, &form_headers(&expected), b"To=a&To=b"),
            Ok(())
        );
        assert_eq!(
            verify(&k, url, &form_headers(&expected), b"To=b&To=a"),
            Err(SignatureError::Mismatch)
        );
        let twice = sign_form(&k, url, &[("Digits", "1"), ("Digits", "1")]);
        assert_ne!(twice, sign_form(&k, url, &[("Digits", "1")]));
        assert_eq!(
            verify(&k, url, &form_headers(&twice), b"Digits=1&Digits=1"),
            Ok(())
        );
    }

    #[test]
    fn signalwire_missing_empty_and_several_signatures() {
        let k = key(VECTOR_A_KEY);
        let body = VECTOR_A_BODY.as_bytes();
        let e = verify(&k, VECTOR_A_URL, &HeaderMap::new(), body).unwrap_err();
        assert_eq!(e.to_string(), "missing header x-signalwire-signature");
        assert_eq!(e.status(), http::StatusCode::UNAUTHORIZED);
        assert_eq!(
            verify(&k, VECTOR_A_URL, &json_headers(""), body),
            Err(SignatureError::Mismatch)
        );
        let mut h = json_headers("c3c08c1fefaf9ee198a100d5906765a6f394bf00");
        h.append(
            SIGNATURE_HEADER,
            HeaderValue::from_static(VECTOR_A_SIGNATURE),
        );
        assert_eq!(verify(&k, VECTOR_A_URL, &h, body), Ok(()));
        let mut h = json_headers("garbage");
        h.insert(
            TWILIO_SIGNATURE_HEADER,
            HeaderValue::from_static(VECTOR_A_SIGNATURE),
        );
        assert_eq!(verify(&k, VECTOR_A_URL, &h, body), Ok(()));
        let mut h = HeaderMap::new();
        for _ in 0..=MAX_SIGNATURES {
            h.append(
                SIGNATURE_HEADER,
                HeaderValue::from_static(VECTOR_A_SIGNATURE),
            );
        }
        assert!(
            verify(&k, VECTOR_A_URL, &h, body)
                .unwrap_err()
                .is_malformed()
        );
        for garbage in ["xyz", "!!!!", "%%notbase64%%", &"a".repeat(100)] {
            assert_eq!(
                verify(&k, VECTOR_A_URL, &json_headers(garbage), body),
                Err(SignatureError::Mismatch)
            );
        }
    }

    #[test]
    fn an_empty_key_is_our_misconfiguration_not_the_callers() {
        let e = verify(
            &key(""),
            VECTOR_A_URL,
            &json_headers(VECTOR_A_SIGNATURE),
            b"",
        )
        .unwrap_err();
        assert_eq!(e, SignatureError::EmptyKey("SIGNALWIRE_SIGNING_KEY"));
        assert_eq!(e.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            verify_twilio(&key(""), COMPANY_URL, &HeaderMap::new(), b"")
                .unwrap_err()
                .status(),
            http::StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    fn twilio_headers(signature: &str) -> HeaderMap {
        request_headers("X-Twilio-Signature", signature, Some(FORM_CONTENT_TYPE))
    }

    #[test]
    fn twilio_docs_example() {
        // twilio.com/docs/usage/webhooks/webhooks-security, as in TwilioDevEd/api-snippets
        // security/signature_validation/signature_validation.3.x.js.
        let params = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675310"),
            ("Digits", "1234"),
            ("From", "+14158675310"),
            ("To", "+18005551212"),
        ];
        let k = key("12345");
        assert_eq!(
            sign_twilio(&k, COMPANY_URL, &params),
            "GvWf1cFY/Q7PnoempGyD5oXAezc="
        );
        let body = form_body(&params);
        let h = twilio_headers("GvWf1cFY/Q7PnoempGyD5oXAezc=");
        assert_eq!(verify_twilio(&k, COMPANY_URL, &h, body.as_bytes()), Ok(()));
        assert_eq!(
            verify_twilio(&k, COMPANY_URL, &h, body.replace("1234", "4321").as_bytes()),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn twilio_sdk_vectors() {
        // twilio-python tests/unit/test_request_validator.py.
        let k = key("12345");
        let body = form_body(COMPANY_PARAMS);
        let valid = |url: &str, signature: &str, body: &[u8]| {
            verify_twilio(&k, url, &twilio_headers(signature), body)
        };
        assert_eq!(
            valid(COMPANY_URL, COMPANY_SIGNATURE, body.as_bytes()),
            Ok(())
        );
        // Any explicit port is removed...
        let https_1234 = COMPANY_URL.replace(".com", ".com:1234");
        assert_eq!(
            valid(&https_1234, COMPANY_SIGNATURE, body.as_bytes()),
            Ok(())
        );
        let http_1234 = https_1234.replace("https", "http");
        assert_eq!(
            valid(&http_1234, "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=", body.as_bytes()),
            Ok(())
        );
        // ...and the default one added.
        assert_eq!(
            valid(COMPANY_URL, "kvajT1Ptam85bY51eRf/AJRuM3w=", body.as_bytes()),
            Ok(())
        );
        let http = COMPANY_URL.replace("https", "http");
        assert_eq!(
            valid(&http, "0ZXoZLH/DfblKGATFgpif+LLRf4=", body.as_bytes()),
            Ok(())
        );
        // Sorted names, sorted distinct values.
        let duplicates = "Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234&Digits=1234";
        assert_eq!(
            valid(
                COMPANY_URL,
                "IK+Dwps556ElfBT0I3Rgjkr1wJU=",
                duplicates.as_bytes()
            ),
            Ok(())
        );
        // SignalWire's order-keeping, non-deduplicating scheme B is a different signature.
        assert_eq!(
            verify(
                &k,
                COMPANY_URL,
                &form_headers("IK+Dwps556ElfBT0I3Rgjkr1wJU="),
                duplicates.as_bytes()
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn twilio_body_sha256() {
        let k = key("12345");
        let json = r#"{"property": "value", "boolean": true}"#;
        let url = format!(
            "{COMPANY_URL}&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
        );
        let h = request_headers(
            "x-twilio-signature",
            "a9nBmqA0ju/hNViExpshrM61xv4=",
            Some("application/json"),
        );
        assert_eq!(verify_twilio(&k, &url, &h, json.as_bytes()), Ok(()));
        assert_eq!(
            verify_twilio(&k, &url, &h, br#"{"property": "other", "boolean": true}"#),
            Err(SignatureError::BodyHashMismatch)
        );
        assert_eq!(
            verify_twilio(&k, COMPANY_URL, &h, json.as_bytes()),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn twilio_reads_only_its_own_header() {
        let k = key("12345");
        let body = form_body(COMPANY_PARAMS);
        let h = form_headers(COMPANY_SIGNATURE);
        assert_eq!(
            verify_twilio(&k, COMPANY_URL, &h, body.as_bytes()),
            Err(SignatureError::MissingHeader(TWILIO_SIGNATURE_HEADER))
        );
    }

    #[test]
    fn url_variants_keep_every_other_byte() {
        assert_eq!(
            signalwire_url_variants("https://user:pw@Example.com/a%2Fb?x=%27&y#frag"),
            vec![
                "https://user:pw@Example.com/a%2Fb?x=%27&y#frag".to_owned(),
                "https://user:pw@Example.com:443/a%2Fb?x=%27&y#frag".to_owned()
            ]
        );
        assert_eq!(
            signalwire_url_variants("http://[::1]:80?q=1"),
            vec![
                "http://[::1]:80?q=1".to_owned(),
                "http://[::1]?q=1".to_owned()
            ]
        );
        assert_eq!(
            twilio_url_variants("https://[::1]/x"),
            vec![
                "https://[::1]/x".to_owned(),
                "https://[::1]:443/x".to_owned()
            ]
        );
        assert_eq!(
            twilio_url_variants("https://h:8443/x"),
            vec!["https://h/x".to_owned(), "https://h:8443/x".to_owned()]
        );
        assert_eq!(
            signalwire_url_variants("/relative"),
            vec!["/relative".to_owned()]
        );
        assert_eq!(
            twilio_url_variants("not a url"),
            vec!["not a url".to_owned()]
        );
    }

    proptest! {
        /// Scheme A signs raw bytes: any one-byte change to the URL or body is refused.
        #[test]
        fn scheme_a_refuses_any_one_byte_change(
            path in "[a-z0-9/]{0,20}",
            body in proptest::collection::vec(any::<u8>(), 0..200),
            position in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let k = key("PSKproptest");
            let url = format!("https://example.com/{path}");
            let signature = sign_raw(&k, &url, &body);
            let h = request_headers("x-signalwire-signature", &signature, Some("application/json"));
            let mut signed = url.clone().into_bytes();
            signed.extend_from_slice(&body);
            let at = position.index(signed.len());
            signed[at] ^= flip;
            // Keep the URL part a string: change within the URL only when it stays UTF-8.
            let (changed_url, changed_body) = signed.split_at(url.len());
            let Ok(changed_url) = std::str::from_utf8(changed_url) else { return Ok(()) };
            prop_assert_eq!(
                verify(&k, changed_url, &h, changed_body),
                Err(SignatureError::Mismatch)
            );
        }

        /// Whatever the headers and URL hold, the verifiers answer and never panic.
        #[test]
        fn no_header_value_or_url_makes_a_verifier_panic(
            signatures in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..12),
            content_type in proptest::collection::vec(any::<u8>(), 0..60),
            url in any::<String>(),
            body in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let mut h = HeaderMap::new();
            for (i, signature) in signatures.iter().enumerate() {
                let name = if i % 2 == 0 { SIGNATURE_HEADER } else { TWILIO_SIGNATURE_HEADER };
                if let Ok(v) = HeaderValue::from_bytes(signature) {
                    h.append(name, v);
                }
            }
            if let Ok(v) = HeaderValue::from_bytes(&content_type) {
                h.insert(CONTENT_TYPE, v);
            }
            let _ = verify(&key("k"), &url, &h, &body);
            let _ = verify_twilio(&key("k"), &url, &h, &body);
            let _ = signalwire_url_variants(&url);
            let _ = twilio_url_variants(&url);
        }

        /// What `sign_form` signs, `verify` accepts for the same form body.
        #[test]
        fn sign_form_round_trips(
            params in proptest::collection::vec(("[A-Za-z]{1,6}", any::<String>()), 0..6),
        ) {
            let k = key("PSKround");
            let url = "https://example.com/webhooks/signalwire/status";
            let signature = sign_form(&k, url, &params);
            let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(&params).finish();
            prop_assert_eq!(verify(&k, url, &form_headers(&signature), body.as_bytes()), Ok(()));
            let twilio = sign_twilio(&k, url, &params);
            prop_assert_eq!(verify_twilio(&k, url, &twilio_headers(&twilio), body.as_bytes()), Ok(()));
        }
    }
}
