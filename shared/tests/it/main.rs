//! The integration tests of `shared`, as one test binary (one link of the SDK, dynoxide and SQLite instead of one
//! per file): the real handlers against a real dynoxide through the real SDK, faults injected below the SDK.
//! Run one area with a filter, e.g. `cargo test -p shared --test it credit_lines::`.
//!
//! `metrics_emf` stays a binary of its own: it installs the process-wide metrics sink and counts every EMF line
//! the process writes, which other tests running beside it would add to.

mod agency_access;
mod agency_overview;
mod agency_pricing;
mod agency_purchases;
mod billing;
mod collection;
mod consumption_rules;
mod consumption_rules_api;
mod credit_lines;
mod events;
mod handlers;
mod history;
mod ledger;
mod pricing_data;
mod provisioning;
mod purchase_hardening;
mod resilience;
mod round_trips;
mod settlement;
mod statement_events;
mod template_matches_code;
