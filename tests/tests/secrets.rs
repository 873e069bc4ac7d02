//! Deployed functions read their secrets from Secrets Manager at cold start (one
//! BatchGetSecretValue, SigV4-signed by aws-sigv4): exercised against moto_server.

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

    // Split secrets: each concern in its own secret, all read in one BatchGetSecretValue.
    let storage = secretsmanager(
        &endpoint,
        "CreateSecret",
        json!({"Name": "parley-test-storage", "SecretString": json!({
            "R2_ACCOUNT_ID": "0123abcd",
            "R2_BUCKET_NAME": "calls",
            "R2_ACCESS_KEY_ID": "AKID",
            "R2_SECRET_ACCESS_KEY": "r2-secret-from-sm"
        }).to_string()}),
    )
    .await;
    let storage_arn = storage["ARN"].as_str().unwrap().to_owned();
    unsafe {
        std::env::set_var("PARLEY_SECRET_ARN", "");
        std::env::set_var("PARLEY_SECRET_ARNS", format!("{arn}, {storage_arn}"));
    }
    let settings = Settings::load().await.expect("split secrets load");
    assert_eq!(settings.database.pool_max_size, 4);
    assert_eq!(settings.storage.as_ref().unwrap().bucket, "calls");
    assert!(!format!("{settings:?}").contains("r2-secret-from-sm"));

    // Two secrets that set one key would make the value depend on their order: refused.
    let clash = secretsmanager(
        &endpoint,
        "CreateSecret",
        json!({"Name": "parley-test-clash", "SecretString": json!({"DB_POOL_MAX_SIZE": 9}).to_string()}),
    )
    .await;
    let clash_arn = clash["ARN"].as_str().unwrap();
    unsafe { std::env::set_var("PARLEY_SECRET_ARNS", format!("{arn},{clash_arn}")) };
    let err = Settings::load().await.unwrap_err();
    assert_eq!(err.problems[0].variable, "PARLEY_SECRET_ARNS");
    assert!(
        err.problems[0].message.contains("DB_POOL_MAX_SIZE"),
        "{err}"
    );
    drop(moto);
}
