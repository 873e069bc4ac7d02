//! Deployed functions read their secrets from one Secrets Manager secret at cold start: exercised with
//! the real AWS SDK against moto_server.

use parley_tests::Moto;
use serde_json::{Value, json};
use shared::api::settings::Settings;

async fn secretsmanager(endpoint: &str, action: &str, body: Value) -> Value {
    let response = reqwest::Client::new()
        .post(endpoint)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", format!("secretsmanager.{action}"))
        // moto_server routes by the service named in the credential scope; it checks no signature.
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20261122/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{action}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

#[tokio::test]
async fn settings_are_filled_from_the_secret_named_by_parley_secret_arn() {
    let moto = Moto::start().await;
    let endpoint = moto.endpoint.clone();
    let secret = json!({
        "DATABASE_URL": "postgres://parley:s3cret-from-sm@db.example.com:5432/parley?sslmode=require",
        "DB_POOL_MAX_SIZE": 4
    });
    let created = secretsmanager(
        &endpoint,
        "CreateSecret",
        json!({"Name": "parley-test", "SecretString": secret.to_string()}),
    )
    .await;
    let arn = created["ARN"].as_str().unwrap().to_owned();

    // This binary holds this one test, so changing the process environment races with nothing.
    unsafe {
        for (k, v) in [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", endpoint.as_str()),
            ("PARLEY_SECRET_ARN", arn.as_str()),
            ("DB_POOL_MAX_SIZE", ""),
        ] {
            std::env::set_var(k, v);
        }
        std::env::remove_var("DATABASE_URL");
        std::env::remove_var("NEON_PG_CONN");
    }
    let settings = Settings::load()
        .await
        .expect("settings load from the secret");
    assert_eq!(settings.database.pg.get_dbname(), Some("parley"));
    assert_eq!(settings.database.pool_max_size, 4);
    assert_eq!(
        settings.database.pg.get_ssl_mode(),
        tokio_postgres::config::SslMode::Require
    );
    assert!(!format!("{settings:?}").contains("s3cret-from-sm"));

    // A secret that cannot be read fails init, naming the variable and not any value.
    unsafe { std::env::set_var("PARLEY_SECRET_ARN", format!("{arn}-missing")) };
    let err = Settings::load().await.unwrap_err();
    assert_eq!(err.problems.len(), 1);
    assert_eq!(err.problems[0].variable, "PARLEY_SECRET_ARN");
    drop(moto);
}
