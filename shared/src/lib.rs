//! The library every overage-credits Lambda is built from.
//!
//! - [`domain`]: pure rules (pricing, quoting, validation), no AWS types.
//! - [`storage`]: the DynamoDB adapter, the only module speaking attribute values.
//! - [`table`]: the table's one definition (keys, indexes, TTL).
//! - [`http`], [`error`], [`api`]: reading requests, the one error type, and the handlers.
//! - [`cache`]: per-instance cache of account → agency and agency → prices, re-checked by every purchase.
//! - [`billing`]: statements per cycle (the run itself is in `storage::billing`); [`history`]: the
//!   purchase history and statements routes.
//! - [`runtime`]: what each `main.rs` wires up at cold start.

pub mod api;
pub mod billing;
pub mod cache;
pub mod domain;
pub mod error;
pub mod history;
pub mod http;
pub mod reconcile;
pub mod runtime;
pub mod storage;
pub mod table;
