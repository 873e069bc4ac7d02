use lambda_http::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(billing_get::FUNCTION).await?;
    run(service_fn(|req| {
        app.http.serve(req, |req| billing_get::handle(&app, req))
    }))
    .await
}
