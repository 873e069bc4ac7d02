use lambda_http::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(calls_create::FUNCTION).await?;
    let calls = app.calls(shared::platform::queue::sqs_client().await)?;
    run(service_fn(|req| {
        app.http
            .serve(req, |req| calls_create::handle(&app, &calls, req))
    }))
    .await
}
