use lambda_runtime::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(webhook_events_sweeper::FUNCTION).await?;
    let sqs = shared::platform::queue::sqs_client().await;
    let events = app.webhook_events(sqs.clone())?;
    let billing = app.stripe_outbox(sqs)?;
    run(service_fn(|event| {
        webhook_events_sweeper::handle(&events, &billing, event)
    }))
    .await
}
