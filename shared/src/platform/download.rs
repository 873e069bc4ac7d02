//! Fetching a vendor's file (a call recording) into R2 without trusting its URL: `https` only, a
//! host allow-list, redirects only to the same origin (each one re-checked), and after DNS no
//! private, loopback, link-local, CGNAT, unique-local, multicast or otherwise non-public address.
//! The address check lives in the client's resolver, so the address checked is the address
//! connected to (no DNS rebinding window). The body streams into R2 (one PUT when small, multipart
//! when large), counted against a size cap; the whole file is never held in memory.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

use crate::platform::storage::{Storage, StorageError};

/// Bytes kept from the start of the file, for format sniffing and the WAV/FLAC duration header.
pub const HEAD_BYTES: usize = 64 * 1024;
/// R2 wants every part but the last the same size, and S3 at least 5 MiB: one part in memory at a time.
pub const PART_BYTES: usize = 8 * 1024 * 1024;
/// Same-origin redirects followed before giving up.
pub const MAX_REDIRECTS: u8 = 3;

/// One entry of a host allow-list: an exact host, or `*.suffix` for any host under `suffix` (not
/// `suffix` itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRule {
    Exact(String),
    Subdomains(String),
}

impl HostRule {
    /// `api.example.com` or `*.example.com`; lower-cased; no scheme, port, path or bare `*`.
    pub fn parse(raw: &str) -> Result<HostRule, String> {
        let raw = raw.trim().to_ascii_lowercase();
        let (wild, host) = match raw.strip_prefix("*.") {
            Some(rest) => (true, rest.to_owned()),
            None => (false, raw.clone()),
        };
        let labels_ok = !host.is_empty()
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        // A wildcard over a single label (`*.com`) would allow the whole internet.
        if !labels_ok || (wild && !host.contains('.')) {
            return Err(format!(
                "{raw:?} is not a host name or *.domain (no scheme, port or path)"
            ));
        }
        Ok(if wild {
            HostRule::Subdomains(host)
        } else {
            HostRule::Exact(host)
        })
    }

    pub fn matches(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        match self {
            HostRule::Exact(h) => host == *h,
            HostRule::Subdomains(d) => host
                .strip_suffix(d.as_str())
                .is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('.')),
        }
    }
}

impl std::fmt::Display for HostRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostRule::Exact(h) => f.write_str(h),
            HostRule::Subdomains(d) => write!(f, "*.{d}"),
        }
    }
}

/// A comma-separated allow-list, as configured.
pub fn parse_host_rules(list: &str) -> Result<Vec<HostRule>, String> {
    let rules = list
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(HostRule::parse)
        .collect::<Result<Vec<_>, _>>()?;
    if rules.is_empty() {
        return Err("the list is empty".to_owned());
    }
    Ok(rules)
}

/// What a download may touch.
#[derive(Debug, Clone)]
pub struct DownloadPolicy {
    pub allowed_hosts: Vec<HostRule>,
    /// The `local` stage only: plain `http` and loopback addresses, so the sandbox can serve files.
    pub allow_loopback_http: bool,
    /// Largest file accepted, by `Content-Length` and by bytes counted.
    pub max_bytes: u64,
    pub max_redirects: u8,
}

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// 403, 404 or 410: a presigned URL that expired (or a file gone). Fetch a fresh URL.
    #[error("the file's URL answered {status}: expired or gone")]
    Expired { status: u16 },
    /// The URL or an address it resolved to is outside the policy. Never retried.
    #[error("refused by the download policy: {0}")]
    Refused(String),
    #[error("the file exceeds {limit} bytes")]
    TooLarge { limit: u64 },
    /// Worth trying again: 429, 5xx, timeouts, dropped connections, R2 unavailable.
    #[error("download failed, worth retrying: {0}")]
    Transient(String),
    /// Anything else (another 4xx, an R2 refusal): retrying will not help.
    #[error("download failed: {0}")]
    Failed(String),
}

impl DownloadError {
    pub fn is_transient(&self) -> bool {
        matches!(self, DownloadError::Transient(_))
    }
}

impl From<StorageError> for DownloadError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Unavailable(m) => DownloadError::Transient(format!("R2: {m}")),
            StorageError::Failed(m) => DownloadError::Failed(format!("R2: {m}")),
        }
    }
}

/// What was stored.
#[derive(Debug, Clone)]
pub struct Downloaded {
    pub bytes: u64,
    /// The first [`HEAD_BYTES`] bytes (fewer for a shorter file), for `platform::audio`.
    pub head: Vec<u8>,
    pub content_type: Option<String>,
    /// False when a small file's key already held an object (a repeated ingest): nothing was overwritten.
    pub created: bool,
}

/// True for addresses a vendor file may never come from. `allow_loopback` admits loopback only.
pub fn is_forbidden(ip: IpAddr, allow_loopback: bool) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4, allow_loopback),
        IpAddr::V6(v6) => forbidden_v6(v6, allow_loopback),
    }
}

fn forbidden_v4(ip: Ipv4Addr, allow_loopback: bool) -> bool {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        return !allow_loopback;
    }
    a == 0                                   // "this network"
        || a == 10                           // private
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || (a == 169 && b == 254)            // link-local (cloud metadata)
        || (a == 172 && (16..32).contains(&b)) // private
        || (a == 192 && b == 0 && c == 0)    // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)    // documentation
        || (a == 192 && b == 88 && c == 99)  // 6to4 relay anycast
        || (a == 192 && b == 168)            // private
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // documentation
        || (a == 203 && b == 0 && c == 113)  // documentation
        || a >= 224 // multicast, reserved, broadcast
}

fn forbidden_v6(ip: Ipv6Addr, allow_loopback: bool) -> bool {
    if ip.is_loopback() {
        return !allow_loopback;
    }
    let s = ip.segments();
    // Addresses that carry an IPv4 address are judged by it.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4, allow_loopback);
    }
    if s[0] == 0x64 && s[1] == 0xff9b {
        // NAT64 (64:ff9b::/96 and the local-use 64:ff9b:1::/48) reaches the embedded IPv4 address.
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return forbidden_v4(v4, false);
    }
    if s[0] == 0x2002 {
        // 6to4 embeds the IPv4 address in bits 16..48.
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        return forbidden_v4(v4, false);
    }
    ip.is_unspecified()
        || s[0..6] == [0; 6]                 // IPv4-compatible (deprecated) and other ::/96
        || (s[0] & 0xfe00) == 0xfc00         // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80         // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0         // site-local (deprecated) fec0::/10
        || (s[0] & 0xff00) == 0xff00         // multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x2001 && s[1] == 0)     // Teredo tunnels to anything
        || (s[0] == 0x0100 && s[1..4] == [0; 3]) // discard-only 100::/64
}

/// Resolves with the system resolver, then drops every forbidden address; when none is left the
/// connection fails with [`Blocked`].
#[derive(Debug, Clone, Copy)]
struct PublicOnly {
    allow_loopback: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("{0} resolves only to addresses outside the public internet")]
struct Blocked(String);

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let allow_loopback = self.allow_loopback;
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept = filter_addrs(found, allow_loopback);
            if kept.is_empty() {
                return Err(Box::new(Blocked(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

/// The resolved addresses a connection may use.
pub fn filter_addrs(found: Vec<SocketAddr>, allow_loopback: bool) -> Vec<SocketAddr> {
    found
        .into_iter()
        .filter(|a| !is_forbidden(a.ip(), allow_loopback))
        .collect()
}

/// Downloads vendor files under one policy. Built once per cold start.
#[derive(Clone)]
pub struct Downloader {
    http: reqwest::Client,
    policy: Arc<DownloadPolicy>,
}

impl std::fmt::Debug for Downloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Downloader")
            .field("policy", &self.policy)
            .finish()
    }
}

/// A request's target, checked: scheme, host and (for IP literals, which skip DNS) the address.
fn check_url(policy: &DownloadPolicy, url: &Url) -> Result<(), DownloadError> {
    let refuse = |why: String| Err(DownloadError::Refused(why));
    if !url.username().is_empty() || url.password().is_some() {
        return refuse("URLs with credentials are not fetched".to_owned());
    }
    let host = match url.host() {
        Some(h) => h,
        None => return refuse("the URL has no host".to_owned()),
    };
    let loopback_name =
        matches!(&host, url::Host::Domain(d) if d.eq_ignore_ascii_case("localhost"));
    let literal: Option<IpAddr> = match &host {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(*v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(*v6)),
        url::Host::Domain(_) => None,
    };
    let local_loopback = policy.allow_loopback_http
        && (loopback_name || literal.is_some_and(|ip| ip.to_canonical().is_loopback()));
    match url.scheme() {
        "https" => {}
        "http" if local_loopback => {}
        other => return refuse(format!("scheme {other:?} (only https)")),
    }
    if local_loopback {
        return Ok(());
    }
    if let Some(ip) = literal {
        // An IP literal never reaches the resolver, so it is judged here.
        if is_forbidden(ip, false) {
            return refuse(format!("address {ip} is not public"));
        }
    }
    let name = match &host {
        url::Host::Domain(d) => d.to_string(),
        url::Host::Ipv4(v4) => v4.to_string(),
        url::Host::Ipv6(v6) => v6.to_string(),
    };
    if !policy.allowed_hosts.iter().any(|r| r.matches(&name)) {
        return refuse(format!("host {name:?} is not on the allow-list"));
    }
    Ok(())
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str().map(str::to_ascii_lowercase) == b.host_str().map(str::to_ascii_lowercase)
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Names the policy's resolver refusal, wherever reqwest and hyper wrapped it.
fn blocked_reason(e: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(b) = err.downcast_ref::<Blocked>() {
            return Some(b.to_string());
        }
        source = err.source();
    }
    None
}

fn transport(e: reqwest::Error) -> DownloadError {
    match blocked_reason(&e) {
        Some(why) => DownloadError::Refused(why),
        None => DownloadError::Transient(format!("{e}")),
    }
}

impl Downloader {
    pub fn new(policy: DownloadPolicy) -> Downloader {
        // The same TLS as `http_client`: rustls on ring with the Mozilla roots compiled in.
        let roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .dns_resolver(Arc::new(PublicOnly {
                allow_loopback: policy.allow_loopback_http,
            }))
            // Redirects are followed by hand, each one checked; a proxy would bypass the resolver.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(20))
            .user_agent(concat!("parley/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client configuration is static");
        Downloader {
            http,
            policy: Arc::new(policy),
        }
    }

    pub fn policy(&self) -> &DownloadPolicy {
        &self.policy
    }

    /// Whether `url` passes the static checks (scheme, allow-list, IP literals); DNS comes later.
    pub fn check(&self, url: &str) -> Result<Url, DownloadError> {
        let parsed =
            Url::parse(url).map_err(|e| DownloadError::Refused(format!("not a URL: {e}")))?;
        check_url(&self.policy, &parsed)?;
        Ok(parsed)
    }

    /// GETs `url`, following at most `max_redirects` same-origin redirects, and returns the 2xx.
    async fn open(&self, url: &str) -> Result<reqwest::Response, DownloadError> {
        let first = self.check(url)?;
        let mut current = first.clone();
        let mut redirects = 0u8;
        loop {
            let response = self
                .http
                .get(current.clone())
                .send()
                .await
                .map_err(transport)?;
            let status = response.status();
            if status.is_redirection() {
                redirects += 1;
                if redirects > self.policy.max_redirects {
                    return Err(DownloadError::Refused(format!(
                        "more than {} redirects",
                        self.policy.max_redirects
                    )));
                }
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| {
                        DownloadError::Failed(format!("{status} without a Location header"))
                    })?;
                let next = current.join(location).map_err(|e| {
                    DownloadError::Refused(format!("an unusable redirect target: {e}"))
                })?;
                if !same_origin(&first, &next) {
                    return Err(DownloadError::Refused(format!(
                        "a redirect to another origin ({})",
                        next.host_str().unwrap_or("no host")
                    )));
                }
                check_url(&self.policy, &next)?;
                current = next;
                continue;
            }
            return match status.as_u16() {
                200..=299 => Ok(response),
                403 | 404 | 410 => Err(DownloadError::Expired {
                    status: status.as_u16(),
                }),
                408 | 425 | 429 | 500..=599 => Err(DownloadError::Transient(format!(
                    "the file's URL answered {status}"
                ))),
                _ => Err(DownloadError::Failed(format!(
                    "the file's URL answered {status}"
                ))),
            };
        }
    }

    /// Streams the file at `url` into R2 under `key`: one conditional PUT (never overwriting) when it
    /// fits in one part, else a multipart upload that is aborted on any failure.
    pub async fn to_storage(
        &self,
        url: &str,
        storage: &Storage,
        key: &str,
        content_type: &str,
    ) -> Result<Downloaded, DownloadError> {
        let mut response = self.open(url).await?;
        let limit = self.policy.max_bytes;
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(DownloadError::TooLarge { limit });
        }
        let served_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut total = 0u64;
        let mut head = Vec::new();
        let mut part = Vec::with_capacity(PART_BYTES.min(limit as usize + 1));
        let mut upload: Option<Multipart> = None;
        let outcome: Result<(), DownloadError> = async {
            while let Some(chunk) = response.chunk().await.map_err(transport)? {
                total += chunk.len() as u64;
                if total > limit {
                    return Err(DownloadError::TooLarge { limit });
                }
                if head.len() < HEAD_BYTES {
                    let take = (HEAD_BYTES - head.len()).min(chunk.len());
                    head.extend_from_slice(&chunk[..take]);
                }
                let mut rest = &chunk[..];
                while !rest.is_empty() {
                    let take = (PART_BYTES - part.len()).min(rest.len());
                    part.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    if part.len() == PART_BYTES {
                        let started = match upload.as_mut() {
                            Some(u) => u,
                            None => {
                                upload.insert(Multipart::start(storage, key, content_type).await?)
                            }
                        };
                        started.send(std::mem::take(&mut part)).await?;
                        part.reserve(PART_BYTES);
                    }
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = outcome {
            if let Some(u) = upload {
                u.abort().await;
            }
            return Err(e);
        }
        if total == 0 {
            return Err(DownloadError::Failed("the file is empty".to_owned()));
        }
        let created = match upload {
            None => {
                storage
                    .put_new(key, bytes::Bytes::from(part), content_type)
                    .await?
            }
            Some(mut u) => {
                let finished = async {
                    if !part.is_empty() {
                        u.send(part).await?;
                    }
                    u.complete().await
                }
                .await;
                if let Err(e) = finished {
                    u.abort().await;
                    return Err(e);
                }
                true
            }
        };
        Ok(Downloaded {
            bytes: total,
            head,
            content_type: served_type,
            created,
        })
    }
}

/// An R2 multipart upload in progress.
struct Multipart {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    upload_id: String,
    parts: Vec<CompletedPart>,
}

fn s3_error<E: std::error::Error + 'static>(
    what: &str,
    e: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> DownloadError {
    use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
    let text = format!("R2 {what}: {}", DisplayErrorContext(&e));
    match &e {
        SdkError::ServiceError(s) if !s.raw().status().is_server_error() => {
            DownloadError::Failed(text)
        }
        SdkError::ConstructionFailure(_) => DownloadError::Failed(text),
        _ => DownloadError::Transient(text),
    }
}

/// Parts are large: allow a slow 2 MB/s for each before calling it a timeout.
fn part_timeouts() -> aws_sdk_s3::config::Builder {
    let attempt = Duration::from_secs(5 + (PART_BYTES / (2 * 1024 * 1024)) as u64);
    aws_sdk_s3::config::Builder::default().timeout_config(
        aws_sdk_s3::config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_attempt_timeout(attempt)
            .operation_timeout(attempt * 3)
            .build(),
    )
}

impl Multipart {
    async fn start(
        storage: &Storage,
        key: &str,
        content_type: &str,
    ) -> Result<Multipart, DownloadError> {
        let client = storage.s3().clone();
        let created = client
            .create_multipart_upload()
            .bucket(storage.bucket())
            .key(key)
            .content_type(content_type)
            .send()
            .await
            .map_err(|e| s3_error("CreateMultipartUpload", e))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| DownloadError::Failed("R2 gave no upload id".to_owned()))?
            .to_owned();
        Ok(Multipart {
            client,
            bucket: storage.bucket().to_owned(),
            key: key.to_owned(),
            upload_id,
            parts: Vec::new(),
        })
    }

    async fn send(&mut self, bytes: Vec<u8>) -> Result<(), DownloadError> {
        let number = self.parts.len() as i32 + 1;
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .part_number(number)
            .body(ByteStream::from(bytes))
            .customize()
            .config_override(part_timeouts())
            .send()
            .await
            .map_err(|e| s3_error("UploadPart", e))?;
        self.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_owned))
                .build(),
        );
        Ok(())
    }

    async fn complete(&mut self) -> Result<(), DownloadError> {
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(self.parts.clone()))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| s3_error("CompleteMultipartUpload", e))?;
        Ok(())
    }

    /// Best effort: an upload left behind is removed by the bucket's lifecycle rule.
    async fn abort(self) {
        if let Err(e) = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .send()
            .await
        {
            tracing::warn!(error = %aws_sdk_s3::error::DisplayErrorContext(&e), "could not abort a multipart upload");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(hosts: &str, local: bool) -> DownloadPolicy {
        DownloadPolicy {
            allowed_hosts: parse_host_rules(hosts).unwrap(),
            allow_loopback_http: local,
            max_bytes: 1024,
            max_redirects: MAX_REDIRECTS,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_and_special_ipv4_ranges_are_forbidden() {
        for bad in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.8.9.10",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(is_forbidden(ip(bad), false), "{bad}");
        }
        for good in [
            "1.1.1.1",
            "52.216.0.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.169.0.1",
        ] {
            assert!(!is_forbidden(ip(good), false), "{good}");
        }
    }

    #[test]
    fn private_and_special_ipv6_ranges_and_embedded_ipv4_are_forbidden() {
        for bad in [
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "2001:0:4136:e378::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:c0a8:0101::1",
            "100::1",
        ] {
            assert!(is_forbidden(ip(bad), false), "{bad}");
        }
        for good in [
            "2606:4700:4700::1111",
            "::ffff:1.1.1.1",
            "64:ff9b::101:101",
            "2002:0101:0101::1",
        ] {
            assert!(!is_forbidden(ip(good), false), "{good}");
        }
    }

    #[test]
    fn the_local_stage_admits_loopback_and_nothing_else() {
        for ok in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            assert!(!is_forbidden(ip(ok), true), "{ok}");
        }
        for bad in ["10.0.0.1", "169.254.169.254", "fd00::1", "0.0.0.0"] {
            assert!(is_forbidden(ip(bad), true), "{bad}");
        }
        let kept = filter_addrs(
            vec![
                "10.0.0.1:443".parse().unwrap(),
                "1.2.3.4:443".parse().unwrap(),
                "[fe80::1]:443".parse().unwrap(),
            ],
            false,
        );
        assert_eq!(kept, vec!["1.2.3.4:443".parse::<SocketAddr>().unwrap()]);
    }

    #[test]
    fn host_rules_match_exactly_or_strict_subdomains() {
        let exact = HostRule::parse("S3.amazonaws.com").unwrap();
        assert!(exact.matches("s3.amazonaws.com"));
        assert!(!exact.matches("evil-s3.amazonaws.com"));
        assert!(!exact.matches("s3.amazonaws.com.evil.net"));
        let sub = HostRule::parse("*.signalwire.com").unwrap();
        assert!(sub.matches("acme.signalwire.com"));
        assert!(sub.matches("a.b.signalwire.com"));
        assert!(!sub.matches("signalwire.com"));
        assert!(!sub.matches("evilsignalwire.com"));
        assert!(!sub.matches(".signalwire.com"));
        assert_eq!(sub.to_string(), "*.signalwire.com");
        for bad in [
            "*",
            "*.com",
            "https://x.com",
            "x.com:443",
            "x.com/p",
            "",
            "-x.com",
            "a..b",
        ] {
            assert!(HostRule::parse(bad).is_err(), "{bad}");
        }
        assert!(parse_host_rules(" , ").is_err());
        assert_eq!(
            parse_host_rules("a.com, *.b.com").unwrap(),
            vec![
                HostRule::Exact("a.com".into()),
                HostRule::Subdomains("b.com".into())
            ]
        );
    }

    #[test]
    fn urls_are_checked_for_scheme_host_credentials_and_literals() {
        let strict = Downloader::new(policy("s3.amazonaws.com,*.signalwire.com", false));
        assert!(
            strict
                .check("https://s3.amazonaws.com/b/k.wav?X-Amz-Expires=600")
                .is_ok()
        );
        assert!(strict.check("https://acme.signalwire.com/api/x").is_ok());
        let refused = |url: &str| matches!(strict.check(url), Err(DownloadError::Refused(_)));
        assert!(refused("http://s3.amazonaws.com/b/k.wav"));
        assert!(refused("ftp://s3.amazonaws.com/b/k.wav"));
        assert!(refused("file:///etc/passwd"));
        assert!(refused("https://evil.example/k.wav"));
        assert!(refused("https://user:pw@s3.amazonaws.com/k"));
        assert!(refused("https://169.254.169.254/latest/meta-data"));
        assert!(refused("https://[::ffff:127.0.0.1]/x"));
        // Numeric host spellings are normalised to IP literals before they are judged.
        assert!(refused("https://2130706433/x"));
        assert!(refused("https://0x7f.1/x"));
        assert!(refused("https://[fd00::1]/x"));
        assert!(refused("http://127.0.0.1:9010/x"));
        assert!(refused("https://localhost/x"));
        assert!(refused("not a url"));
        let local = Downloader::new(policy("s3.amazonaws.com", true));
        assert!(local.check("http://127.0.0.1:9010/rec.wav").is_ok());
        assert!(local.check("http://localhost:9010/rec.wav").is_ok());
        assert!(local.check("http://[::1]:9010/rec.wav").is_ok());
        assert!(matches!(
            local.check("http://10.0.0.1/rec.wav"),
            Err(DownloadError::Refused(_))
        ));
        assert!(matches!(
            local.check("http://s3.amazonaws.com/rec.wav"),
            Err(DownloadError::Refused(_))
        ));
    }

    #[test]
    fn redirects_stay_on_the_same_origin() {
        let a = Url::parse("https://acme.signalwire.com/a").unwrap();
        assert!(same_origin(
            &a,
            &Url::parse("https://ACME.signalwire.com:443/b").unwrap()
        ));
        assert!(!same_origin(
            &a,
            &Url::parse("https://other.signalwire.com/b").unwrap()
        ));
        assert!(!same_origin(
            &a,
            &Url::parse("http://acme.signalwire.com/b").unwrap()
        ));
        assert!(!same_origin(
            &a,
            &Url::parse("https://acme.signalwire.com:8443/b").unwrap()
        ));
    }
}
