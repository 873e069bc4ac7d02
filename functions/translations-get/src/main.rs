use lambda_http::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(translations_get::FUNCTION).await?;
    let jobs = app.translation_reads()?;
    run(service_fn(|req| {
        app.http
            .serve(req, |req| translations_get::handle(&app, &jobs, req))
    }))
    .await
}
