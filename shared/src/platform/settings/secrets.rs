//! Reading Secrets Manager secrets at cold start: one `BatchGetSecretValue` call for every secret a
//! function names, signed with SigV4 over the HTTP client every function already links, so a
//! function needs neither the AWS SDK's Secrets Manager client nor its credential chain. Lambda
//! gives the role's credentials in the environment; errors never contain a secret's value.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use serde::Deserialize;

/// `BatchGetSecretValue` takes at most 20 ids per call.
const BATCH: usize = 20;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchResponse {
    #[serde(default)]
    secret_values: Vec<SecretValue>,
    #[serde(default)]
    errors: Vec<BatchError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SecretValue {
    #[serde(rename = "ARN")]
    arn: Option<String>,
    name: Option<String>,
    secret_string: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchError {
    secret_id: Option<String>,
    error_code: Option<String>,
}

/// Where Secrets Manager answers: `AWS_ENDPOINT_URL_SECRETS_MANAGER`, `AWS_ENDPOINT_URL`, or the
/// regional endpoint.
fn endpoint(region: &str) -> String {
    ["AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
        .map(|url| url.trim().trim_end_matches('/').to_owned())
        .unwrap_or_else(|| format!("https://secretsmanager.{region}.amazonaws.com"))
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| format!("{name} is not set, so the secrets cannot be read"))
}

/// Every secret's JSON object merged into one map. A key two secrets both define is refused,
/// since which value wins would otherwise depend on the order of an environment variable.
pub async fn fetch_all(ids: &[String]) -> Result<HashMap<String, String>, String> {
    let region = env("AWS_REGION").or_else(|_| env("AWS_DEFAULT_REGION"))?;
    let credentials = Credentials::new(
        env("AWS_ACCESS_KEY_ID")?,
        env("AWS_SECRET_ACCESS_KEY")?,
        std::env::var("AWS_SESSION_TOKEN")
            .ok()
            .filter(|v| !v.is_empty()),
        None,
        "lambda-environment",
    );
    let http = crate::platform::http_client::http_client(Duration::from_secs(3));
    let url = endpoint(&region);
    let mut merged: HashMap<String, String> = HashMap::new();
    let mut origin: HashMap<String, String> = HashMap::new();
    for chunk in ids.chunks(BATCH) {
        let response = batch_get(&http, &url, &region, &credentials, chunk).await?;
        if let Some(error) = response.errors.first() {
            return Err(format!(
                "could not read the secret {}: {}",
                error.secret_id.as_deref().unwrap_or("?"),
                error.error_code.as_deref().unwrap_or("unknown error")
            ));
        }
        for value in response.secret_values {
            let name = value.name.or(value.arn).unwrap_or_else(|| "?".to_owned());
            let text = value
                .secret_string
                .ok_or_else(|| format!("the secret {name} has no SecretString"))?;
            for (key, v) in parse_secret_json(&text).map_err(|e| format!("{name}: {e}"))? {
                if let Some(first) = origin.get(&key) {
                    return Err(format!("the secrets {first} and {name} both set {key}"));
                }
                origin.insert(key.clone(), name.clone());
                merged.insert(key, v);
            }
        }
    }
    Ok(merged)
}

async fn batch_get(
    http: &reqwest::Client,
    url: &str,
    region: &str,
    credentials: &Credentials,
    ids: &[String],
) -> Result<BatchResponse, String> {
    let body = serde_json::json!({ "SecretIdList": ids }).to_string();
    let headers = [
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", "secretsmanager.BatchGetSecretValue"),
    ];
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("secretsmanager")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("could not sign the secrets request: {e}"))?
        .into();
    let signable = SignableRequest::new(
        "POST",
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body.as_bytes()),
    )
    .map_err(|e| format!("could not sign the secrets request: {e}"))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| format!("could not sign the secrets request: {e}"))?
        .into_parts();
    let mut request = http.post(url).body(body.clone());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    for (name, value) in instructions.headers() {
        request = request.header(name, value);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("could not reach Secrets Manager: {e}"))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| format!("could not read Secrets Manager's answer: {e}"))?;
    if !status.is_success() {
        // AWS's error bodies name the error type and never echo secret values.
        let kind = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["__type"].as_str().map(str::to_owned))
            .unwrap_or_default();
        return Err(format!("Secrets Manager answered {status} {kind}"));
    }
    serde_json::from_str(&text)
        .map_err(|_| "Secrets Manager's answer is not the documented JSON".to_owned())
}

/// The secret must be a flat JSON object; numbers and booleans are accepted as their text.
pub fn parse_secret_json(text: &str) -> Result<HashMap<String, String>, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|_| "the secret is not a JSON object".to_owned())?;
    let object = value.as_object().ok_or("the secret is not a JSON object")?;
    let mut out = HashMap::new();
    for (key, value) in object {
        let text = match value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            _ => return Err(format!("the secret's key {key:?} must hold a string")),
        };
        out.insert(key.clone(), text);
    }
    Ok(out)
}
