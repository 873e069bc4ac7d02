use lambda_runtime::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(transcription_reconciler::FUNCTION).await?;
    let worker = app.transcription_worker(shared::platform::queue::sqs_client().await)?;
    run(service_fn(|event| {
        transcription_reconciler::handle(&worker, event)
    }))
    .await
}
