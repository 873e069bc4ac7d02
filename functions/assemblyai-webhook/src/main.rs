use lambda_http::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(assemblyai_webhook::FUNCTION).await?;
    let queue = shared::platform::queue::JobQueue::new(
        shared::platform::queue::sqs_client().await,
        app.settings.require_transcription_queue()?,
    );
    let signer = app.callback_signer()?;
    run(service_fn(|req| {
        app.http.serve(req, |req| {
            assemblyai_webhook::handle(&app, &queue, &signer, req)
        })
    }))
    .await
}
