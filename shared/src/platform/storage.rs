//! Cloudflare R2 through its S3 API: presigned PUT and GET, HEAD, ranged GET and DELETE.
//!
//! Built once per cold start from static credentials (no credential-chain lookups), path-style, region
//! `auto`, and checksums only when an operation requires them: R2 rejects the SDK's default checksum
//! headers.

use std::time::Duration;

use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::presigning::PresigningConfig;
use secrecy::ExposeSecret;

use std::fmt;

use secrecy::SecretString;

use crate::platform::settings::Reader;

/// A request the client must make exactly as given: method, URL and every header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presigned {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// What HEAD says about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub size: u64,
    pub content_type: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// R2 could not be reached or answered 5xx; worth retrying.
    #[error("object storage unavailable: {0}")]
    Unavailable(String),
    /// Any other failure: a bug, bad credentials or a refused request.
    #[error("object storage error: {0}")]
    Failed(String),
}

fn classify<E>(
    err: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> StorageError
where
    E: std::error::Error + 'static,
{
    use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
    let text = DisplayErrorContext(&err).to_string();
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StorageError::Unavailable(text)
        }
        SdkError::ServiceError(e) if e.raw().status().is_server_error() => {
            StorageError::Unavailable(text)
        }
        _ => StorageError::Failed(text),
    }
}

#[derive(Clone)]
pub struct StorageSettings {
    /// `R2_ENDPOINT`, or `https://<R2_ACCOUNT_ID>.r2.cloudflarestorage.com`.
    pub endpoint: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: SecretString,
}

impl fmt::Debug for StorageSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageSettings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .finish()
    }
}

/// The variables R2 access needs, for error messages.
pub const STORAGE_VARIABLES: &str =
    "R2_ENDPOINT or R2_ACCOUNT_ID, R2_BUCKET_NAME, R2_ACCESS_KEY_ID, R2_SECRET_ACCESS_KEY";

/// R2's single-PUT limit (5 GiB less 5 MiB): presigned uploads are single PUTs.
pub const R2_MAX_PUT_BYTES: u64 = 5 * 1024 * 1024 * 1024 - 5 * 1024 * 1024;

impl StorageSettings {
    /// All of the `R2_*` variables or none: `None` when none is set.
    pub fn read(r: &mut Reader) -> Option<StorageSettings> {
        let endpoint = r.get("R2_ENDPOINT");
        let account = r.get("R2_ACCOUNT_ID");
        let bucket = r.get("R2_BUCKET_NAME");
        let key_id = r.get("R2_ACCESS_KEY_ID");
        let secret = r.get("R2_SECRET_ACCESS_KEY");
        if [&endpoint, &account, &bucket, &key_id, &secret]
            .iter()
            .all(|v| v.is_none())
        {
            return None;
        }
        let endpoint = match (endpoint, account) {
            (Some(e), _) if e.starts_with("https://") || e.starts_with("http://") => {
                Some(e.trim_end_matches('/').to_owned())
            }
            (Some(_), _) => {
                r.problem("R2_ENDPOINT", "must be an http(s) URL");
                None
            }
            (None, Some(a)) if a.len() <= 64 && a.chars().all(|c| c.is_ascii_alphanumeric()) => {
                Some(format!("https://{a}.r2.cloudflarestorage.com"))
            }
            (None, Some(_)) => {
                r.problem(
                    "R2_ACCOUNT_ID",
                    "must be the alphanumeric Cloudflare account id",
                );
                None
            }
            (None, None) => {
                r.problem(
                    "R2_ENDPOINT",
                    "is required with the other R2 settings (or set R2_ACCOUNT_ID)",
                );
                None
            }
        };
        let bucket = bucket.filter(|b| {
            b.len() >= 3
                && b.len() <= 63
                && b.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        });
        if bucket.is_none() {
            r.problem(
                "R2_BUCKET_NAME",
                "is required: 3-63 lowercase letters, digits or hyphens",
            );
        }
        if key_id.is_none() {
            r.problem("R2_ACCESS_KEY_ID", "is required with the other R2 settings");
        }
        if secret.is_none() {
            r.problem(
                "R2_SECRET_ACCESS_KEY",
                "is required with the other R2 settings",
            );
        }
        Some(StorageSettings {
            endpoint: endpoint?,
            bucket: bucket?,
            access_key_id: key_id?,
            secret_access_key: SecretString::from(secret?),
        })
    }
}

#[derive(Debug, Clone)]
pub struct Storage {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl Storage {
    pub fn new(settings: &StorageSettings) -> Storage {
        let credentials = Credentials::new(
            settings.access_key_id.clone(),
            settings.secret_access_key.expose_secret().to_owned(),
            None,
            None,
            "parley-r2",
        );
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("auto"))
            .endpoint_url(settings.endpoint.clone())
            .credentials_provider(credentials)
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .http_client(crate::platform::aws::https_client())
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    // Well inside the API functions' 10 s Lambda timeout, so callers get a clean 503.
                    .operation_attempt_timeout(Duration::from_secs(3))
                    .operation_timeout(Duration::from_secs(7))
                    .build(),
            )
            .build();
        Storage {
            client: aws_sdk_s3::Client::from_conf(config),
            bucket: settings.bucket.clone(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The S3 client, for the multipart upload of `platform::download` (streamed vendor files).
    pub(crate) fn s3(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    /// A PUT that only succeeds with exactly this type and length, and never overwrites.
    pub async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        content_length: u64,
        expires_in: Duration,
    ) -> Result<Presigned, StorageError> {
        let length = i64::try_from(content_length)
            .map_err(|_| StorageError::Failed("length overflow".into()))?;
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .content_length(length)
            .if_none_match("*")
            .presigned(presigning(expires_in)?)
            .await
            .map_err(classify)?;
        Ok(to_presigned(&request))
    }

    fn get_object(
        &self,
        key: &str,
    ) -> aws_sdk_s3::operation::get_object::builders::GetObjectFluentBuilder {
        self.client.get_object().bucket(&self.bucket).key(key)
    }

    /// A GET that downloads as an attachment named `file_name`.
    pub async fn presign_get(
        &self,
        key: &str,
        file_name: &str,
        content_type: &str,
        expires_in: Duration,
    ) -> Result<Presigned, StorageError> {
        let request = self
            .get_object(key)
            .response_content_disposition(attachment(file_name))
            .response_content_type(content_type)
            .presigned(presigning(expires_in)?)
            .await
            .map_err(classify)?;
        Ok(to_presigned(&request))
    }

    /// A plain GET for a vendor that fetches the object itself (AssemblyAI reads recordings this way).
    pub async fn presign_read(
        &self,
        key: &str,
        expires_in: Duration,
    ) -> Result<Presigned, StorageError> {
        let request = self
            .get_object(key)
            .presigned(presigning(expires_in)?)
            .await
            .map_err(classify)?;
        Ok(to_presigned(&request))
    }

    /// Size and type of an object, or `None` if there is none.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectInfo {
                size: out.content_length().unwrap_or(0).max(0) as u64,
                content_type: out.content_type().map(str::to_owned),
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(classify(e)),
        }
    }

    /// The first `n` bytes of an object (fewer if it is shorter).
    pub async fn first_bytes(&self, key: &str, n: u64) -> Result<Vec<u8>, StorageError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes=0-{}", n.saturating_sub(1)))
            .send()
            .await
            .map_err(classify)?;
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| StorageError::Unavailable(e.to_string()))?;
        let mut bytes = bytes.into_bytes().to_vec();
        bytes.truncate(n as usize);
        Ok(bytes)
    }

    /// Stores `bytes` under `key` unless an object is already there (`If-None-Match: *`): a
    /// repeated store of the same job never overwrites. `Ok(false)` means it already existed.
    /// `Bytes` so a caller's retries share one buffer instead of copying up to 200 MB each.
    pub async fn put_new(
        &self,
        key: &str,
        bytes: bytes::Bytes,
        content_type: &str,
    ) -> Result<bool, StorageError> {
        // The client's 3 s/7 s limits suit API calls, not large uploads: allow 4 MB/s at worst.
        let attempt = Duration::from_secs(5 + bytes.len() as u64 / (4 * 1024 * 1024));
        let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_attempt_timeout(attempt)
            .operation_timeout(attempt * 2)
            .build();
        let result = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .if_none_match("*")
            .body(aws_sdk_s3::primitives::ByteStream::from(bytes))
            .customize()
            .config_override(aws_sdk_s3::config::Builder::default().timeout_config(timeouts))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => Ok(false),
            Err(e) => Err(classify(e)),
        }
    }

    /// Deletes an object; deleting one that is already gone succeeds.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Every key under `prefix`, page by page (ListObjectsV2 returns at most 1,000 at a time).
    pub async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(classify)?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => return Ok(keys),
            }
        }
    }

    /// Stores `bytes` under `key`, replacing any object there.
    pub async fn put(
        &self,
        key: &str,
        bytes: bytes::Bytes,
        content_type: &str,
    ) -> Result<(), StorageError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(aws_sdk_s3::primitives::ByteStream::from(bytes))
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Creates the bucket if missing (the local stack; R2 buckets are made in Cloudflare's dashboard).
    pub async fn ensure_bucket(&self) -> Result<(), StorageError> {
        if self
            .client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        // The signing region is `auto`; S3 stand-ins want it echoed as the location.
        let location = aws_sdk_s3::types::CreateBucketConfiguration::builder()
            .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from("auto"))
            .build();
        let created = self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .create_bucket_configuration(location)
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            // The SDK retried a create whose first answer was lost: the bucket is ours already.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_bucket_already_owned_by_you()) =>
            {
                Ok(())
            }
            Err(e) => Err(classify(e)),
        }
    }
}

fn presigning(expires_in: Duration) -> Result<PresigningConfig, StorageError> {
    PresigningConfig::expires_in(expires_in).map_err(|e| StorageError::Failed(e.to_string()))
}

fn to_presigned(request: &aws_sdk_s3::presigning::PresignedRequest) -> Presigned {
    let url = request.uri().to_owned();
    Presigned {
        method: request.method().to_owned(),
        headers: signed_only(&url, request.headers()),
        url,
    }
}

/// The request's headers that its signature covers, lower-cased and sorted. The SDK also puts
/// unsigned ones on a presigned request: in a Lambda, its recursion-detection interceptor adds
/// `x-amzn-trace-id` from `_X_AMZN_TRACE_ID` before signing (aws-runtime's `recursion_detection`),
/// and SigV4 leaves that header unsigned. Passed on, it would leak the trace id and make a browser
/// send a header R2's CORS rule does not allow.
fn signed_only<'a>(
    url: &str,
    headers: impl Iterator<Item = (&'a str, &'a str)>,
) -> Vec<(String, String)> {
    let signed: Vec<String> = url
        .split_once('?')
        .map(|(_, query)| query)
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("X-Amz-SignedHeaders="))
        .map(|list| {
            list.replace("%3B", ";")
                .replace("%3b", ";")
                .split(';')
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .unwrap_or_default();
    let mut kept: Vec<(String, String)> = headers
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .filter(|(k, _)| signed.iter().any(|s| s == k))
        .collect();
    kept.sort();
    kept
}

/// `attachment` with an ASCII fallback and the UTF-8 name (RFC 6266), safe in a header.
pub fn attachment(file_name: &str) -> String {
    let ascii: String = file_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ' ') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = file_name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_signed_headers_are_handed_to_the_uploader() {
        let url = "https://r2.example/b/k.wav?X-Amz-Algorithm=AWS4-HMAC-SHA256\
                   &X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost%3Bif-none-match\
                   &X-Amz-Signature=abc";
        let headers = [
            ("content-type", "audio/wav"),
            ("Content-Length", "44"),
            ("if-none-match", "*"),
            (
                "x-amzn-trace-id",
                "Root=1-5759e988-bd862e3fe1be46a994272793",
            ),
            ("user-agent", "aws-sdk-rust"),
        ];
        let kept = signed_only(url, headers.into_iter());
        assert_eq!(
            kept,
            vec![
                ("content-length".to_owned(), "44".to_owned()),
                ("content-type".to_owned(), "audio/wav".to_owned()),
                ("if-none-match".to_owned(), "*".to_owned()),
            ]
        );
        assert!(signed_only("https://r2.example/b/k", headers.into_iter()).is_empty());
    }

    #[test]
    fn attachment_names_cannot_break_the_header() {
        let value = attachment("my \"call\";\r\nx.wav");
        assert!(!value.contains('\r') && !value.contains('\n'));
        assert!(
            value.starts_with("attachment; filename=\"my _call____x.wav\""),
            "{value}"
        );
        assert!(
            value.contains("filename*=UTF-8''my%20%22call%22%3B%0D%0Ax.wav"),
            "{value}"
        );
    }
}
