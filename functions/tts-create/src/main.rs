use lambda_http::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(tts_create::FUNCTION).await?;
    let jobs = app.tts_jobs(shared::platform::queue::sqs_client().await)?;
    run(service_fn(|req| {
        app.http
            .serve(req, |req| tts_create::handle(&app, &jobs, req))
    }))
    .await
}
