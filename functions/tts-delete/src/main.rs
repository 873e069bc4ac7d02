use lambda_http::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(tts_delete::FUNCTION).await?;
    let jobs = app.tts_reads()?;
    let copies = app.vendor_copies(false, true)?;
    run(service_fn(|req| {
        app.http
            .serve(req, |req| tts_delete::handle(&app, &jobs, &copies, req))
    }))
    .await
}
