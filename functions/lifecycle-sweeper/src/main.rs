use lambda_runtime::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(lifecycle_sweeper::FUNCTION).await?;
    let sweeper = app.lifecycle_sweeper(shared::platform::queue::sqs_client().await)?;
    run(service_fn(|event| {
        lifecycle_sweeper::handle(&sweeper, event)
    }))
    .await
}
