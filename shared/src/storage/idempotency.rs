//! Idempotency keys as stored: one claim type for every route, written in the route's own transaction (so the
//! key and the change commit together, in one call), and read back for a replay.
//!
//! | route | pk | sk | attributes |
//! |---|---|---|---|
//! | purchase | `ACCOUNT#{accountId}` | `IDEMPOTENCY#{key}` | `accountId`, `purchaseId`, `requestHash`, `purchaseBody`, `expiresAt` |
//! | void | `AGENCY#{agencyId}` | `IDEMPOTENCY#{key}` | `agencyId`, `accountId`, `purchaseId`, `requestHash`, `expiresAt` |
//!
//! Keys are the owner's: two accounts' (or agencies') keys never meet.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::{Put, ReturnValuesOnConditionCheckFailure};

use super::items::{Attributes, Item, n, s};
use super::{Store, StoreError, internal, keys};
use crate::domain::idempotency::{IDEMPOTENCY_TTL, IdempotencyKey};
use crate::table::{PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE};

const ACCOUNT_ID: &str = "accountId";
const AGENCY_ID: &str = "agencyId";
const PURCHASE_ID: &str = "purchaseId";
const REQUEST_HASH: &str = "requestHash";
const PURCHASE_BODY: &str = "purchaseBody";

/// Claims an `Idempotency-Key` in the route's own transaction, with what the route needs for a replay.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    pub key: IdempotencyKey,
    pub request_hash: String,
    /// The `purchase` part of a purchase's first 201 body, returned again on a replay (`None` for a void, whose
    /// replay reads the voided purchase).
    pub purchase_body: Option<String>,
    pub now_epoch_seconds: u64,
    pub expires_at_epoch_seconds: u64,
}

impl IdempotencyClaim {
    /// A claim made at `now`, remembered for [`IDEMPOTENCY_TTL`].
    pub fn new(
        key: IdempotencyKey,
        request_hash: String,
        purchase_body: Option<String>,
        now: SystemTime,
    ) -> IdempotencyClaim {
        IdempotencyClaim {
            key,
            request_hash,
            purchase_body,
            now_epoch_seconds: epoch_seconds(now),
            expires_at_epoch_seconds: epoch_seconds(now + IDEMPOTENCY_TTL),
        }
    }
}

/// What an earlier request stored under an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredIdempotency {
    pub account_id: String,
    pub purchase_id: String,
    pub request_hash: String,
    /// A purchase's first answer; `None` for a void.
    pub purchase_body: Option<String>,
}

/// Whose key it is: an account's (purchases) or an agency's (voids).
#[derive(Debug, Clone, Copy)]
pub(super) enum KeyOwner<'a> {
    Account(&'a str),
    Agency(&'a str),
}

impl KeyOwner<'_> {
    fn partition(self) -> String {
        match self {
            KeyOwner::Account(account_id) => keys::account(account_id),
            KeyOwner::Agency(agency_id) => keys::agency(agency_id),
        }
    }
}

impl Store {
    /// What an earlier purchase of this account stored under an idempotency key, if it has not expired.
    pub async fn idempotency(
        &self,
        account_id: &str,
        key: &IdempotencyKey,
        now: SystemTime,
    ) -> Result<Option<StoredIdempotency>, StoreError> {
        self.live_idempotency(KeyOwner::Account(account_id), key, now).await
    }

    /// What an earlier void of this agency stored under an idempotency key, if it has not expired.
    pub async fn void_idempotency(
        &self,
        agency_id: &str,
        key: &IdempotencyKey,
        now: SystemTime,
    ) -> Result<Option<StoredIdempotency>, StoreError> {
        self.live_idempotency(KeyOwner::Agency(agency_id), key, now).await
    }

    /// An idempotency key's record, unless it has expired (TTL deletion lags, so an expired item may still be
    /// there).
    async fn live_idempotency(
        &self,
        owner: KeyOwner<'_>,
        key: &IdempotencyKey,
        now: SystemTime,
    ) -> Result<Option<StoredIdempotency>, StoreError> {
        let Some(item) = self.get_item(owner.partition(), &keys::idempotency_sk(key.as_str())).await? else {
            return Ok(None);
        };
        let expires_at = item.decimal(TTL_ATTRIBUTE).ok().flatten();
        let live = expires_at.is_some_and(|at| at >= epoch_seconds(now).into());
        if live { stored_idempotency(&item).map(Some) } else { Ok(None) }
    }
}

/// The Put of a claim for `purchase_id` of `account_id`, unless someone holds the key and it has not expired
/// (TTL deletion lags): the first answer's record, returned whole when the condition fails.
pub(super) fn idempotency_put(
    table_name: &str,
    owner: KeyOwner<'_>,
    claim: &IdempotencyClaim,
    account_id: &str,
    purchase_id: &str,
) -> Result<Put, StoreError> {
    let mut item = HashMap::from([
        (PARTITION_KEY.to_owned(), s(owner.partition())),
        (SORT_KEY.to_owned(), s(keys::idempotency_sk(claim.key.as_str()))),
        (TTL_ATTRIBUTE.to_owned(), n(claim.expires_at_epoch_seconds)),
        (ACCOUNT_ID.to_owned(), s(account_id)),
        (PURCHASE_ID.to_owned(), s(purchase_id)),
        (REQUEST_HASH.to_owned(), s(&claim.request_hash)),
    ]);
    if let KeyOwner::Agency(agency_id) = owner {
        item.insert(AGENCY_ID.to_owned(), s(agency_id));
    }
    if let Some(body) = &claim.purchase_body {
        item.insert(PURCHASE_BODY.to_owned(), s(body));
    }
    Put::builder()
        .table_name(table_name)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk) OR #expires < :now")
        .expression_attribute_names("#expires", TTL_ATTRIBUTE)
        .expression_attribute_values(":now", n(claim.now_epoch_seconds))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .build()
        .map_err(|e| internal("building an idempotency key's Put", e))
}

/// A claim's record, as the Put above wrote it (or as a cancelled transaction handed it back).
pub(super) fn stored_idempotency(item: &Item) -> Result<StoredIdempotency, StoreError> {
    Ok(StoredIdempotency {
        account_id: item.string(ACCOUNT_ID)?,
        purchase_id: item.string(PURCHASE_ID)?,
        request_hash: item.string(REQUEST_HASH)?,
        purchase_body: item.optional_string(PURCHASE_BODY),
    })
}

fn epoch_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
