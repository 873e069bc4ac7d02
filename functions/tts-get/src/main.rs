use lambda_http::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(tts_get::FUNCTION).await?;
    let jobs = app.tts_reads()?;
    run(service_fn(|req| {
        app.http.serve(req, |req| tts_get::handle(&app, &jobs, req))
    }))
    .await
}
