use lambda_runtime::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(recording_ingest::FUNCTION).await?;
    let ingest = app.recording_ingest(shared::platform::queue::sqs_client().await)?;
    run(service_fn(|event| recording_ingest::handle(&ingest, event))).await
}
