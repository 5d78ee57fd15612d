//! The library every overage-credits Lambda is built from. Dependencies point one way:
//! `domain` ← `storage` ← `api` / `billing`, and `runtime` wires them up at cold start.
//!
//! - [`domain`]: pure rules and entities (pricing, quotes, purchases, statements, billing decisions,
//!   reconciliation), no AWS or HTTP types.
//! - [`table`]: the table's one definition (keys, indexes, TTL).
//! - [`storage`]: the DynamoDB adapter, the only module speaking attribute values.
//! - [`cache`]: per-instance cache of account → agency and agency → prices, re-checked by every purchase.
//! - [`api`]: the HTTP handlers, request parsing and the one error → problem mapping.
//! - [`billing`]: the billing run's loop over storage's pages and steps.
//! - [`metrics`]: CloudWatch metrics (EMF) per purchase, billing run and reconcile check.
//! - [`consumption`]: the platform spending credits and releasing them, exactly once (invoked with IAM).
//! - [`payments`]: recording payments and failures, and the daily overdue sweep (invoked with IAM).
//! - [`stripe`]: our thin Stripe client (PaymentIntents) and webhook signature verification.
//! - [`collection`]: `collect-payments`, charging every payable statement through Stripe, exactly once per
//!   attempt, with dunning retries.
//! - [`webhook`]: `stripe-webhook`, Stripe's signed events into the same exactly-once payment records.
//! - [`settings`]: every environment variable, parsed once at cold start; a bad value stops it, by name.
//! - [`runtime`]: what each `main.rs` wires up at cold start.

pub mod api;
pub mod billing;
pub mod cache;
pub mod collection;
pub mod consumption;
pub mod domain;
pub mod events;
pub mod metrics;
pub mod payments;
pub mod provisioning;
pub mod runtime;
pub mod settings;
pub mod storage;
pub mod stripe;
pub mod table;
pub mod webhook;
