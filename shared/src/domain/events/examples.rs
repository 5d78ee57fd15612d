//! One example of every event type, as the code serialises it: what the schema test validates and
//! docs/events.md shows.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use super::*;
use crate::domain::CreditType;

/// One example of every event type, as the code serialises it: what the schema test validates and docs/events.md
/// shows.
pub fn examples() -> Vec<OutboxEvent> {
    let at = "2026-12-07T02:00:00.000Z";
    let account = || "acct-northwind-coffee".to_owned();
    let agency = || "agency-northwind".to_owned();
    let d = |text: &str| text.parse::<Decimal>().expect("an example amount");
    let moved = || CreditsMoved {
        account_id: account(),
        agency_id: agency(),
        consumption_id: "job-2026-12-07-0001".into(),
        quantities: BTreeMap::from([(CreditType::Audience, 40)]),
    };
    let purchase_id = || "01938a3c-0000-7000-8000-000000000001".to_owned();
    let statement_id = || "client-20261201T000000.000Z-acct-northwind-coffee".to_owned();
    let e = |id: u32| format!("01938a3c-0000-7000-8000-{id:012}");
    vec![
        Envelope::new(
            e(1),
            at,
            CreditsPurchased {
                account_id: account(),
                agency_id: agency(),
                purchase_id: purchase_id(),
                lines: vec![PurchasedLine {
                    credit_type: CreditType::Audience,
                    quantity: 100,
                    unit_price: d("27.50"),
                    subtotal: d("2750.00"),
                }],
                total: d("2750.00"),
                currency: crate::domain::CURRENCY.into(),
                trigger: PurchaseTrigger::Client,
            },
        )
        .into_outbox(),
        Envelope::new(e(2), at, CreditsConsumed(moved())).into_outbox(),
        Envelope::new(e(3), at, CreditsReleased(moved())).into_outbox(),
        Envelope::new(
            e(4),
            at,
            PurchaseVoided {
                account_id: account(),
                agency_id: agency(),
                purchase_id: purchase_id(),
                quantities: BTreeMap::from([(CreditType::Audience, 100)]),
                total: d("2750.00"),
                currency: crate::domain::CURRENCY.into(),
            },
        )
        .into_outbox(),
        Envelope::new(
            e(5),
            at,
            CreditsLow {
                account_id: account(),
                agency_id: agency(),
                credit_type: CreditType::Pixel,
                threshold: 10,
                balance: 5,
            },
        )
        .into_outbox(),
        Envelope::new(
            e(6),
            at,
            AutoTopupSucceeded {
                account_id: account(),
                agency_id: agency(),
                purchase_id: purchase_id(),
                credit_type: CreditType::Pixel,
                quantity: 50,
                total: d("600.00"),
                currency: crate::domain::CURRENCY.into(),
            },
        )
        .into_outbox(),
        Envelope::new(
            e(7),
            at,
            AutoTopupRefused {
                account_id: account(),
                agency_id: agency(),
                credit_type: CreditType::Pixel,
                quantity: 50,
                reason: TopupRefusal::DailyCap,
            },
        )
        .into_outbox(),
        Envelope::new(
            e(8),
            at,
            StatementPayable {
                account_id: account(),
                agency_id: agency(),
                statement_id: statement_id(),
                cycle_end: "2026-12-01T00:00:00.000Z".into(),
                total: d("2750.00"),
                currency: crate::domain::CURRENCY.into(),
                due_date: "2026-12-15T00:00:00.000Z".into(),
            },
        )
        .into_outbox(),
        Envelope::new(
            e(9),
            at,
            StatementPaid {
                account_id: account(),
                agency_id: agency(),
                statement_id: statement_id(),
                amount: d("2750.00"),
                currency: crate::domain::CURRENCY.into(),
                payment_reference: "pi_3QxYz".into(),
            },
        )
        .into_outbox(),
        Envelope::new(
            e(10),
            at,
            StatementPaymentFailed {
                account_id: account(),
                agency_id: agency(),
                statement_id: statement_id(),
                attempt: 2,
                failure_code: "card_declined".into(),
            },
        )
        .into_outbox(),
        Envelope::new(
            e(11),
            at,
            AccountHoldStarted { account_id: account(), agency_id: agency(), statement_ids: vec![statement_id()] },
        )
        .into_outbox(),
        Envelope::new(e(12), at, AccountHoldLifted { account_id: account(), agency_id: agency() }).into_outbox(),
        Envelope::new(
            e(13),
            at,
            PricingChanged {
                agency_id: agency(),
                version_before: 3,
                version_after: 4,
                changes: vec![PriceChangeLine {
                    credit_type: CreditType::Audience,
                    old_price: Some(d("27.50")),
                    new_price: None,
                }],
            },
        )
        .into_outbox(),
        Envelope::new(
            e(14),
            at,
            CreditLimitChanged {
                account_id: account(),
                agency_id: agency(),
                old_limit: Some(d("5000.00")),
                new_limit: d("7500.00"),
                currency: crate::domain::CURRENCY.into(),
            },
        )
        .into_outbox(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_has_one_example_and_envelopes_round_trip() {
        let examples = examples();
        let types: Vec<&str> = examples.iter().map(|e| e.event_type).collect();
        assert_eq!(types, EVENT_TYPES);
        for example in &examples {
            let value: serde_json::Value = serde_json::from_str(&example.json).unwrap();
            assert_eq!(value["id"], example.id.as_str());
            assert_eq!(value["type"], example.event_type);
            assert_eq!(value["version"], 1);
            assert_eq!(value["source"], SOURCE);
            assert_eq!(value["occurredAt"], example.occurred_at.as_str());
        }
        let priced: Envelope<PricingChanged> = serde_json::from_str(&examples[12].json).unwrap();
        assert_eq!(priced.detail.changes[0].new_price, None);
        assert_eq!(examples[12].owner, Owner::Agency("agency-northwind".into()));
        // Money is a decimal string, never a JSON number.
        let purchased: serde_json::Value = serde_json::from_str(&examples[0].json).unwrap();
        assert_eq!(purchased["detail"]["total"], "2750.00");
    }
}
