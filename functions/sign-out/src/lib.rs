//! `POST /api/auth/sign-out`: deletes the session and clears its cookie.

use lambda_http::Request;
use lambda_http::http::{Method, header};
use shared::App;
use shared::api::auth::clearing_cookie;
use shared::api::{self, ApiError, ApiResult};

pub const FUNCTION: &str = "sign-out";

pub async fn handle(app: &App, req: Request) -> ApiResult {
    // The route is POST only, but a Lambda can be invoked with any method (a function URL, the local
    // `/lambda-url/` path): a GET that ends a session would be a cross-site sign-out link.
    if req.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed { allow: "POST" });
    }
    let cookie = app.sessions.sign_out(req.headers()).await?;
    let mut response = api::no_content();
    if let Some(name) = cookie {
        response
            .headers_mut()
            .append(header::SET_COOKIE, clearing_cookie(name));
    }
    Ok(response)
}
