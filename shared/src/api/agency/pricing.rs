//! `GET/PUT /agencies/{agencyId}/pricing` and `GET /agencies/{agencyId}/pricing/history`.
// PLACEHOLDER: being built (issue 17); replaced before it lands.

use lambda_http::{Body, Request, Response};

use super::super::error::AppError;
use super::super::http::authorize_agency;
use super::super::{App, respond};

pub async fn get_pricing(app: &App, request: Request) -> Response<Body> {
    not_built(app, request).await
}

pub async fn put_pricing(app: &App, request: Request) -> Response<Body> {
    not_built(app, request).await
}

pub async fn pricing_history(app: &App, request: Request) -> Response<Body> {
    not_built(app, request).await
}

async fn not_built(app: &App, request: Request) -> Response<Body> {
    respond(app, async {
        authorize_agency(&request, &app.settings)?;
        Err(AppError::Internal("not built yet".into()))
    })
    .await
}
