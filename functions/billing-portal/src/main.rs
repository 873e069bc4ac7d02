use lambda_http::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(billing_portal::FUNCTION).await?;
    let billing = app.stripe_billing()?;
    run(service_fn(|req| {
        app.http
            .serve(req, |req| billing_portal::handle(&app, &billing, req))
    }))
    .await
}
