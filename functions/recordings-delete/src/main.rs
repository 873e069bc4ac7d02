use lambda_http::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(recordings_delete::FUNCTION).await?;
    let recordings = app.recording_deletion()?;
    run(service_fn(|req| {
        app.http
            .serve(req, |req| recordings_delete::handle(&app, &recordings, req))
    }))
    .await
}
