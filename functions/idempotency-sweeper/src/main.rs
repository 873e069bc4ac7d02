use lambda_runtime::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(idempotency_sweeper::FUNCTION).await?;
    run(service_fn(|event| {
        idempotency_sweeper::handle(&app.idempotency, event)
    }))
    .await
}
