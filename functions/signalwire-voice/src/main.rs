use lambda_http::{Error, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = shared::App::init(signalwire_voice::FUNCTION).await?;
    let receiver = app.signalwire_receiver(shared::platform::queue::sqs_client().await)?;
    let http = app.http.clone().accepting_forms();
    run(service_fn(|req| {
        http.serve(req, |req| signalwire_voice::handle(&app, &receiver, req))
    }))
    .await
}
