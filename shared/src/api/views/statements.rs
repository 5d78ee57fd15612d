//! Statements with their settlement, and the agency's clients page.

use super::*;

// ---------------------------------------------------------------------------------------------------------
// Statements and their settlement

/// How a statement's latest collection attempt through Stripe stands (never the Stripe ids).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CollectionView<'a> {
    pub attempt: u32,
    /// `in_flight`, `succeeded`, `failed` or `exhausted`.
    pub state: &'a str,
    /// The machine code of a failure as stored (`card_declined`, `authentication_required`, ...), else `null`.
    pub reason: Option<&'a str>,
    pub last_attempt_at: &'a str,
    /// When the next automatic retry may start; `null` when none is scheduled.
    pub next_attempt_at: Option<&'a str>,
}

impl<'a> CollectionView<'a> {
    pub fn of(attempt: &'a CollectionAttempt) -> CollectionView<'a> {
        CollectionView {
            attempt: attempt.number,
            state: &attempt.state,
            reason: attempt.reason.as_deref(),
            last_attempt_at: &attempt.started_at,
            next_attempt_at: attempt.next_at.as_deref(),
        }
    }
}

/// How a statement was (or is being) settled: both fields of every statement the API shows.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SettlementView<'a> {
    /// The instant of the payment that paid it in full, else `null`.
    pub paid_at: Option<&'a str>,
    /// `null` when collection never attempted it.
    pub collection: Option<CollectionView<'a>>,
}

impl<'a> SettlementView<'a> {
    pub fn of(statement: &'a Statement) -> SettlementView<'a> {
        SettlementView {
            paid_at: statement.paid_at.as_deref(),
            collection: statement.collection.as_ref().map(CollectionView::of),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatementLineView {
    pub credit_type: &'static str,
    pub quantity: u64,
    pub amount: String,
}

impl StatementLineView {
    fn of(line: &StatementLine) -> StatementLineView {
        StatementLineView {
            credit_type: line.credit_type.as_str(),
            quantity: line.quantity,
            amount: money(line.amount),
        }
    }
}

/// A statement as its owner sees it: a client's at price, an agency's own at cost (that is all each holds), how
/// many purchases it covers (their ids are paged by the statement purchases route) and how it was settled.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatementView<'a> {
    pub statement_id: &'a str,
    pub cycle_end: &'a str,
    pub status: &'a str,
    pub currency: &'a str,
    pub lines: Vec<StatementLineView>,
    pub total: String,
    pub amount_paid: String,
    pub amount_due: String,
    /// When it falls overdue if unpaid; `null` while its cycle is still being billed.
    pub due_at: Option<&'a str>,
    pub purchase_count: u64,
    pub created_at: &'a str,
    #[serde(flatten)]
    pub settlement: SettlementView<'a>,
}

impl<'a> StatementView<'a> {
    pub fn of(statement: &'a Statement) -> StatementView<'a> {
        StatementView {
            statement_id: &statement.statement_id,
            cycle_end: &statement.cycle_end,
            status: &statement.status,
            currency: &statement.currency,
            lines: statement.lines.iter().map(StatementLineView::of).collect(),
            total: money(statement.total),
            amount_paid: money(statement.amount_paid),
            amount_due: money(statement.amount_due),
            due_at: statement.due_at.as_deref(),
            purchase_count: statement.purchase_count,
            created_at: &statement.created_at,
            settlement: SettlementView::of(statement),
        }
    }
}

/// `GET /accounts/{accountId}/statements`
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatementsPage<'a> {
    pub statements: Vec<StatementView<'a>>,
    pub next_cursor: Option<String>,
}

/// `GET /agencies/{agencyId}/statements`
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgencyStatementsPage<'a> {
    pub agency_id: &'a str,
    pub statements: Vec<StatementView<'a>>,
    pub next_cursor: Option<String>,
}

/// `GET /accounts/{accountId}/statements/{statementId}/purchases`
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatementPurchasesPage<'a> {
    pub statement_id: &'a str,
    pub purchase_ids: &'a [String],
    pub next_cursor: Option<String>,
}

// ---------------------------------------------------------------------------------------------------------
// The agency's clients

/// What a client owes this cycle under the asking agency, and the agency's margin on it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnbilledView {
    pub purchases: u64,
    pub at_price: String,
    pub at_cost: String,
    pub margin: String,
}

impl UnbilledView {
    pub fn of(sums: &UnbilledSums) -> UnbilledView {
        UnbilledView {
            purchases: sums.purchases,
            at_price: money(sums.at_price),
            at_cost: money(sums.at_cost),
            margin: money(sums.at_price - sums.at_cost),
        }
    }
}

/// A client's last statement on the agency's clients page: the agency's own client's, at the client's price.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastStatementView<'a> {
    pub statement_id: &'a str,
    pub cycle_end: &'a str,
    pub status: &'a str,
    pub amount_due: String,
    pub due_at: Option<&'a str>,
    #[serde(flatten)]
    pub settlement: SettlementView<'a>,
}

impl<'a> LastStatementView<'a> {
    pub fn of(statement: &'a Statement) -> LastStatementView<'a> {
        LastStatementView {
            statement_id: &statement.statement_id,
            cycle_end: &statement.cycle_end,
            status: &statement.status,
            amount_due: money(statement.amount_due),
            due_at: statement.due_at.as_deref(),
            settlement: SettlementView::of(statement),
        }
    }
}

/// One row of the agency's clients page.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientView<'a> {
    pub account_id: &'a str,
    pub name: Option<&'a str>,
    pub balances: BalancesView<'a>,
    pub credit_line: Option<CreditLineView>,
    pub hold_statement_id: Option<&'a str>,
    pub unbilled: UnbilledView,
    pub last_statement: Option<LastStatementView<'a>>,
}

/// `GET /agencies/{agencyId}/clients`
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientsPage<'a> {
    pub agency_id: &'a str,
    pub currency: &'static str,
    /// The agency's own line, at cost.
    pub agency_credit_line: Option<CreditLineView>,
    pub clients: Vec<ClientView<'a>>,
    pub next_cursor: Option<String>,
}

/// `PUT /agencies/{agencyId}/clients/{accountId}/credit-limit`
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreditLimitView<'a> {
    pub account_id: &'a str,
    pub credit_line: CreditLineView,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::billing::StatementKind;
    use serde_json::json;

    fn statement(paid_at: Option<&str>, collection: Option<CollectionAttempt>) -> Statement {
        Statement {
            statement_id: "client-20261201T000000.000Z-acct-a".into(),
            kind: StatementKind::Client,
            owner_id: "acct-a".into(),
            cycle_end: "2026-12-01T00:00:00.000Z".into(),
            status: "payment_failed".into(),
            currency: "USD".into(),
            lines: vec![StatementLine { credit_type: CreditType::Audience, quantity: 3, amount: Decimal::new(75, 0) }],
            total: Decimal::new(7500, 2),
            purchase_count: 1,
            amount_paid: Decimal::ZERO,
            amount_due: Decimal::new(75, 0),
            due_at: Some("2026-12-31T00:00:00.000Z".into()),
            purchase_ids: vec!["p".into()],
            created_at: "2026-12-01T00:01:00.000Z".into(),
            updated_at: "2026-12-01T00:02:00.000Z".into(),
            paid_at: paid_at.map(str::to_owned),
            collection,
        }
    }

    #[test]
    fn a_statement_shows_its_settlement_with_nulls_where_nothing_happened() {
        let never = serde_json::to_value(StatementView::of(&statement(None, None))).unwrap();
        assert_eq!(never["paidAt"], json!(null));
        assert_eq!(never["collection"], json!(null));
        assert_eq!(never["amountDue"], json!("75.00"));
        assert_eq!(never["lines"][0], json!({"creditType": "audience", "quantity": 3, "amount": "75.00"}));
        let declined = CollectionAttempt {
            number: 2,
            state: "failed".into(),
            reason: Some("card_declined".into()),
            started_at: "2026-12-04T00:00:00.000Z".into(),
            next_at: Some("2026-12-08T00:00:00.000Z".into()),
        };
        let failed = serde_json::to_value(StatementView::of(&statement(None, Some(declined)))).unwrap();
        assert_eq!(
            failed["collection"],
            json!({"attempt": 2, "state": "failed", "reason": "card_declined",
                   "lastAttemptAt": "2026-12-04T00:00:00.000Z", "nextAttemptAt": "2026-12-08T00:00:00.000Z"})
        );
        // Nothing Stripe-side (customer, intent) and nothing internal (purchase ids, updatedAt) is shown.
        let keys: Vec<&String> = failed.as_object().unwrap().keys().collect();
        for hidden in ["purchaseIds", "updatedAt", "ownerId", "kind"] {
            assert!(!keys.iter().any(|k| *k == hidden), "{hidden} in {keys:?}");
        }
        let last = serde_json::to_value(LastStatementView::of(&statement(Some("2026-12-05T10:00:00Z"), None))).unwrap();
        assert_eq!(
            last,
            json!({"statementId": "client-20261201T000000.000Z-acct-a", "cycleEnd": "2026-12-01T00:00:00.000Z",
                   "status": "payment_failed", "amountDue": "75.00", "dueAt": "2026-12-31T00:00:00.000Z",
                   "paidAt": "2026-12-05T10:00:00Z", "collection": null})
        );
    }
}
