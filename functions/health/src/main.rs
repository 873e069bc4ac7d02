use lambda_http::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(health::FUNCTION).await?;
    run(service_fn(|req| {
        app.http.serve(req, |req| health::handle(&app, req))
    }))
    .await
}
