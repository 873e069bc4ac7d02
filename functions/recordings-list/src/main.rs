use lambda_http::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(recordings_list::FUNCTION).await?;
    let recordings = app.recordings()?;
    run(service_fn(|req| {
        app.http
            .serve(req, |req| recordings_list::handle(&app, &recordings, req))
    }))
    .await
}
