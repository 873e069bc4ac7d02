use lambda_runtime::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(usage_reconciler::FUNCTION).await?;
    run(service_fn(|event| {
        usage_reconciler::handle(&app.ledger, event)
    }))
    .await
}
