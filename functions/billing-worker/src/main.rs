use lambda_runtime::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(billing_worker::FUNCTION).await?;
    let worker = app.billing_worker()?;
    run(service_fn(|event| billing_worker::handle(&worker, event))).await
}
