use lambda_http::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(translations_create::FUNCTION).await?;
    let translator = app.translator()?;
    run(service_fn(|req| {
        app.http.serve(req, |req| {
            translations_create::handle(&app, &translator, req)
        })
    }))
    .await
}
