use lambda_http::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(me_delete::FUNCTION).await?;
    let deletions = app.account_deletion_requests(shared::platform::queue::sqs_client().await)?;
    run(service_fn(|req| {
        app.http
            .serve(req, |req| me_delete::handle(&app, &deletions, req))
    }))
    .await
}
