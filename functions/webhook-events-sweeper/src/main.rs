use lambda_runtime::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(webhook_events_sweeper::FUNCTION).await?;
    let events = app.webhook_events(shared::platform::queue::sqs_client().await)?;
    run(service_fn(|event| {
        webhook_events_sweeper::handle(&events, event)
    }))
    .await
}
