use lambda_http::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(me::FUNCTION).await?;
    run(service_fn(|req| {
        app.http.serve(req, |req| me::handle(&app, req))
    }))
    .await
}
