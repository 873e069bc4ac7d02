use lambda_http::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(export_create::FUNCTION).await?;
    let exports = app.exports(Some(shared::platform::queue::sqs_client().await))?;
    run(service_fn(|req| {
        app.http
            .serve(req, |req| export_create::handle(&app, &exports, req))
    }))
    .await
}
