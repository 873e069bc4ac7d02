use lambda_http::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(calls_get::FUNCTION).await?;
    let calls = app.call_reads()?;
    run(service_fn(|req| {
        app.http
            .serve(req, |req| calls_get::handle(&app, &calls, req))
    }))
    .await
}
