use lambda_http::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(transcription_translations_list::FUNCTION).await?;
    let jobs = app.translation_reads()?;
    run(service_fn(|req| {
        app.http.serve(req, |req| {
            transcription_translations_list::handle(&app, &jobs, req)
        })
    }))
    .await
}
