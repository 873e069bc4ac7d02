use lambda_runtime::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(recordings_sweeper::FUNCTION).await?;
    let recordings = app.recordings()?;
    run(service_fn(|event| {
        recordings_sweeper::handle(&recordings, event)
    }))
    .await
}
