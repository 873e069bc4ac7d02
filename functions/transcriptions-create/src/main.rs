use lambda_http::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(transcriptions_create::FUNCTION).await?;
    let transcriptions = app.transcriptions(shared::platform::queue::sqs_client().await)?;
    run(service_fn(|req| {
        app.http.serve(req, |req| {
            transcriptions_create::handle(&app, &transcriptions, req)
        })
    }))
    .await
}
