use lambda_http::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(transcriptions_get::FUNCTION).await?;
    let transcriptions = app.transcription_reads()?;
    run(service_fn(|req| {
        app.http.serve(req, |req| {
            transcriptions_get::handle(&app, &transcriptions, req)
        })
    }))
    .await
}
