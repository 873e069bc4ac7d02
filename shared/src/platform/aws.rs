//! The one way Parley builds AWS SDK plumbing: ring-backed rustls (the same TLS stack as the
//! database and the vendor client, no C build for arm64) and the shared SDK config, loaded once.

use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::client::http::SharedHttpClient;

/// The HTTPS client every AWS SDK client in Parley uses.
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// The standard AWS environment (`AWS_REGION`, the Lambda role's credentials,
/// `AWS_ENDPOINT_URL_<SERVICE>` locally) with bounded timeouts; one per cold start.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(3))
                .operation_timeout(Duration::from_secs(6))
                .build(),
        )
        .load()
        .await
}
