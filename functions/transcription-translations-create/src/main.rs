use lambda_http::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(transcription_translations_create::FUNCTION).await?;
    let jobs = app.translation_jobs(shared::platform::queue::sqs_client().await)?;
    let translator = app.translator()?;
    run(service_fn(|req| {
        app.http.serve(req, |req| {
            transcription_translations_create::handle(&app, &jobs, &translator, req)
        })
    }))
    .await
}
