//! `GET/PUT /agencies/{agencyId}/pricing` and `GET /agencies/{agencyId}/pricing/history`.
//!
//! The agency sees per type its price (or the default it falls back to), its cost and its margin, under the
//! pricing `version` as an `ETag`. A change names the version it was made against (`If-Match`): it is written
//! with its audit entry in one transaction that bumps the version, so purchases quoted at the old prices fail
//! their own version check and are re-quoted (409 `price_changed` for a client that confirmed the old total).

use std::time::SystemTime;

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use serde_json::Value;

use super::super::cursor::CursorList;
use super::super::error::AppError;
use super::super::http::{authorize_agency, json_body, json_response};
use super::super::paging::{AGENCY_PAGE_SIZE, Paging};
use super::super::views::{AgencyPricingView, AgencyRateView, PricingChangeView, PricingHistoryPage};
use super::super::{App, respond};
use crate::domain::agency::{PriceRequestError, PricingAuditEntry, apply_price_change, parse_price_change};
use crate::domain::{self, AgencyPricing, CURRENCY, DefaultPricing, format_rate};
use crate::storage::{AuditKey, PricingWrite};

/// `GET /agencies/{agencyId}/pricing`: always read fresh (never the purchase path's cache), with its `ETag`.
pub async fn get_pricing(app: &App, request: Request) -> Response<Body> {
    respond(app, async {
        let admin = authorize_agency(&request, &app.settings)?;
        CurrentPricing::read(app, &admin.agency_id).await?.response()
    })
    .await
}

/// `PUT /agencies/{agencyId}/pricing` with `If-Match: "{version}"` and `{"prices": {"audience": "26.00"}}`.
pub async fn put_pricing(app: &App, request: Request) -> Response<Body> {
    respond(app, async {
        // Everything the request alone can tell is checked before any read.
        let admin = authorize_agency(&request, &app.settings)?;
        let expected_version = if_match(&request)?;
        let change_request = parse_price_change(&json_body(&request)?).map_err(|e| match e {
            PriceRequestError::InvalidField { field, detail } => AppError::InvalidField { field, detail },
            PriceRequestError::InvalidPrice { credit_type, detail } => {
                AppError::InvalidPrice { credit_type: credit_type.as_str().to_owned(), detail }
            }
        })?;

        let current = CurrentPricing::read(app, &admin.agency_id).await?;
        if expected_version != current.version() {
            return Err(AppError::PreconditionFailed { current_pricing: current.body()? });
        }
        let overrides = current.agency.as_ref().map(|a| a.rates.clone()).unwrap_or_default();
        let change = apply_price_change(&current.default, &overrides, &change_request).map_err(|below| {
            AppError::PriceBelowCost {
                credit_type: below.credit_type.as_str().to_owned(),
                price: format_rate(below.price),
                cost: format_rate(below.cost),
            }
        })?;
        // Nothing changes: no write, no audit entry, no new version.
        if change.lines.is_empty() {
            return current.response();
        }
        let version = current.version();
        let audit = PricingAuditEntry {
            agency_id: admin.agency_id.clone(),
            changed_at: domain::time::timestamp(SystemTime::now()),
            changed_by: admin.subject.clone(),
            version_before: version,
            version_after: version + 1,
            changes: change.lines.clone(),
        };
        match app.store.change_agency_pricing(&admin.agency_id, version, &change, &audit).await? {
            PricingWrite::Written => {
                tracing::info!(agency_id = %admin.agency_id, version = version + 1, by = %admin.subject, "prices changed");
                // This instance's purchases re-read at once (others within their cache TTL, and each purchase's
                // version check refuses a stale price meanwhile).
                app.cache.pricing_of_agency.remove(&admin.agency_id);
                let agency =
                    AgencyPricing { agency_id: admin.agency_id.clone(), version: version + 1, rates: change.rates };
                CurrentPricing { agency: Some(agency), ..current }.response()
            }
            PricingWrite::VersionMoved => {
                let now = CurrentPricing::read(app, &admin.agency_id).await?;
                Err(AppError::PreconditionFailed { current_pricing: now.body()? })
            }
        }
    })
    .await
}

/// `GET /agencies/{agencyId}/pricing/history?limit=&cursor=`: the audit entries, newest first.
pub async fn pricing_history(app: &App, request: Request) -> Response<Body> {
    respond(app, async {
        let admin = authorize_agency(&request, &app.settings)?;
        let paging = Paging::read(app, &request, AGENCY_PAGE_SIZE)?;
        let after = paging.after(
            &request,
            CursorList::AgencyPricingHistory,
            |key: &AuditKey| key.is_pricing_audit_of(&admin.agency_id),
            "not a position in this agency's price history",
        )?;
        let page = app.store.pricing_audit_page(&admin.agency_id, paging.limit, after.as_ref()).await?;
        let body = PricingHistoryPage {
            agency_id: &admin.agency_id,
            entries: page.entries.iter().map(PricingChangeView::of).collect(),
            next_cursor: paging.next_cursor(CursorList::AgencyPricingHistory, page.next.as_ref()),
        };
        Ok(json_response(StatusCode::OK, &body))
    })
    .await
}

/// The default and the agency's stored pricing, read fresh.
struct CurrentPricing {
    agency_id: String,
    default: DefaultPricing,
    agency: Option<AgencyPricing>,
}

impl CurrentPricing {
    async fn read(app: &App, agency_id: &str) -> Result<CurrentPricing, AppError> {
        let (default, agency) = app.store.pricing(agency_id).await?;
        Ok(CurrentPricing { agency_id: agency_id.to_owned(), default, agency })
    }

    /// The agency's pricing version: 0 before it ever set a price.
    fn version(&self) -> u64 {
        self.agency.as_ref().map_or(0, |a| a.version)
    }

    /// The agency's view: per type the price, where it comes from, the default, the cost and the margin.
    /// Stored pricing that cannot be resolved is a data error (500), as on the client's route.
    fn view(&self) -> Result<AgencyPricingView<'_>, AppError> {
        let pricing = domain::resolve_pricing(&self.agency_id, &self.default, self.agency.as_ref())?;
        let rates = pricing.rates.iter().map(|rate| AgencyRateView::of(rate, &self.default)).collect();
        Ok(AgencyPricingView { agency_id: &self.agency_id, currency: CURRENCY, version: self.version(), rates })
    }

    /// The view as JSON, for the 412 problem that carries it.
    fn body(&self) -> Result<Value, AppError> {
        serde_json::to_value(self.view()?).map_err(|e| AppError::Internal(format!("pricing view: {e}")))
    }

    /// 200 with the body and the version as a strong `ETag` (`"3"`), what `If-Match` sends back.
    fn response(&self) -> Result<Response<Body>, AppError> {
        let mut response = json_response(StatusCode::OK, &self.view()?);
        let etag = HeaderValue::from_str(&format!("\"{}\"", self.version())).expect("digits are a valid header");
        response.headers_mut().insert(header::ETAG, etag);
        Ok(response)
    }
}

/// The version `If-Match` names: `"3"` (as the `ETag` is sent) or a bare `3`, 1-19 digits (the contract's
/// pattern). Missing, or `*` (which names no version: a change must know what it overwrites), is 428; anything
/// else is no tag at all, the client's mistake (400), not a stale version (412 is only for a well-formed one).
fn if_match(request: &Request) -> Result<u64, AppError> {
    let mut values = request.headers().get_all(header::IF_MATCH).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(AppError::PreconditionRequired);
    };
    let text = value.to_str().unwrap_or("").trim();
    if text.is_empty() || text == "*" {
        return Err(AppError::PreconditionRequired);
    }
    let unquoted = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text);
    // 19 digits always fit a u64 (its maximum has 20).
    if unquoted.is_empty() || unquoted.len() > 19 || !unquoted.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AppError::InvalidHeader {
            header: "If-Match",
            detail: "must be the pricing version as the ETag of GET .../pricing sends it: 1-19 digits, quoted (\"3\") \
                     or bare (3)."
                .into(),
        });
    }
    unquoted.parse().map_err(|_| AppError::Internal("19 digits parse as a u64".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_if_match(values: &[&str]) -> Result<u64, AppError> {
        let mut builder = lambda_http::http::Request::builder();
        for value in values {
            builder = builder.header("if-match", *value);
        }
        if_match(&builder.body(Body::Empty).unwrap())
    }

    #[test]
    fn if_match_names_a_version_quoted_or_bare_and_never_a_wildcard() {
        assert_eq!(with_if_match(&["\"3\""]), Ok(3));
        assert_eq!(with_if_match(&["3"]), Ok(3));
        assert_eq!(with_if_match(&["\"0\""]), Ok(0));
        assert_eq!(with_if_match(&["9999999999999999999"]), Ok(9_999_999_999_999_999_999));
        for missing in [&[][..], &["*"], &[""], &["\"1\"", "\"2\""]] {
            assert_eq!(with_if_match(missing), Err(AppError::PreconditionRequired), "{missing:?}");
        }
        // Outside the contract's pattern ^("[0-9]{1,19}"|[0-9]{1,19})$: malformed, 400.
        for malformed in ["W/\"3\"", "\"a\"", "-1", "3.0", "\"\"", "99999999999999999999", "\"3", "3\"", "\"1\", \"2\""]
        {
            let error = with_if_match(&[malformed]).unwrap_err();
            assert_eq!(error.code(), "invalid_header", "{malformed}");
            assert_eq!(error.status(), 400, "{malformed}");
        }
    }
}
