use lambda_runtime::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(translation_worker::FUNCTION).await?;
    let worker = app.translation_worker()?;
    run(service_fn(|event| {
        translation_worker::handle(&worker, event)
    }))
    .await
}
