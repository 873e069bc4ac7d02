use lambda_http::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(export_get::FUNCTION).await?;
    let exports = app.exports(None)?;
    run(service_fn(|req| {
        app.http
            .serve(req, |req| export_get::handle(&app, &exports, req))
    }))
    .await
}
