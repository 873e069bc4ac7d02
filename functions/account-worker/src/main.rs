use lambda_runtime::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(account_worker::FUNCTION).await?;
    let worker = app.account_worker(shared::platform::queue::sqs_client().await)?;
    run(service_fn(|event| account_worker::handle(&worker, event))).await
}
