use lambda_http::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(realtime_token::FUNCTION).await?;
    let assemblyai = app.assemblyai()?;
    run(service_fn(|req| {
        app.http
            .serve(req, |req| realtime_token::handle(&app, &assemblyai, req))
    }))
    .await
}
