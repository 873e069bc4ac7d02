use lambda_runtime::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(call_worker::FUNCTION).await?;
    let worker = app.call_worker(shared::platform::queue::sqs_client().await)?;
    run(service_fn(|event| call_worker::handle(&worker, event))).await
}
