use lambda_http::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(phone_numbers_update::FUNCTION).await?;
    let numbers = app.phone_numbers()?;
    run(service_fn(|req| {
        app.http
            .serve(req, |req| phone_numbers_update::handle(&app, &numbers, req))
    }))
    .await
}
