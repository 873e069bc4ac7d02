use lambda_http::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(stripe_webhook::FUNCTION).await?;
    let receiver = app.stripe_receiver(shared::platform::queue::sqs_client().await)?;
    run(service_fn(|req| {
        app.http
            .serve(req, |req| stripe_webhook::handle(&receiver, req))
    }))
    .await
}
