use lambda_runtime::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(translation_reconciler::FUNCTION).await?;
    let jobs = app.translation_jobs(shared::platform::queue::sqs_client().await)?;
    run(service_fn(|event| {
        translation_reconciler::handle(&jobs, event)
    }))
    .await
}
