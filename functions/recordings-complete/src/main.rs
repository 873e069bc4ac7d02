use lambda_http::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(recordings_complete::FUNCTION).await?;
    let recordings = app.recordings()?;
    run(service_fn(|req| {
        app.http.serve(req, |req| {
            recordings_complete::handle(&app, &recordings, req)
        })
    }))
    .await
}
