//! The agency's purchases, voids and statements against a real dynoxide: the purchases list with price, cost and
//! margin, paged and per client; the void in one transaction (balances, lines, indexes, ledger entry, exactly
//! once, nothing written on a refusal); a void racing a billing run never leaves a purchase both voided and
//! billed; the agency's statements at cost.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use shared::api;
use shared::billing::{self, BillingRun};
use shared::consumption::consumption_event;
use shared::domain::PurchaseRecord;
use shared::domain::billing::{CycleEnd, Statement};
use shared::domain::ledger::EntryType;
use shared::domain::reconcile::Ledger;
use shared::storage::{VoidOutcome, VoidRequest};
use testkit::faults::Latency;
use testkit::{ApiEvent, BIKES, COFFEE, DENTAL, PURCHASES_ROUTE, TestEnv, answer, assert_problem, d};

const NORTHWIND: &str = "agency-northwind";
const BRIGHTSIDE: &str = "agency-brightside";
const PURCHASES: &str = "/agencies/{agencyId}/purchases";
const VOID: &str = "/agencies/{agencyId}/purchases/{purchaseId}/void";
const STATEMENTS: &str = "/agencies/{agencyId}/statements";
const LEDGER_ROUTE: &str = "/accounts/{accountId}/ledger";

async fn buy(env: &TestEnv, account: &str, quantities: Value) -> Value {
    let event = ApiEvent::purchase(account, &json!({ "quantities": quantities }));
    let a = answer(api::purchase_credits(&env.app, event.request()).await);
    assert_eq!(a.status, 201, "{}", a.body);
    // Distinct milliseconds, so "newest first" has one answer.
    tokio::time::sleep(Duration::from_millis(3)).await;
    a.body["purchase"].clone()
}

fn id_of(purchase: &Value) -> String {
    purchase["purchaseId"].as_str().expect("a purchase id").to_owned()
}

async fn list(env: &TestEnv, agency: &str, query: Option<&str>) -> testkit::Answer {
    let mut event = ApiEvent::agency("GET", PURCHASES, agency).as_agency_admin(agency);
    if let Some(query) = query {
        event = event.query(query);
    }
    answer(api::agency_read(&env.app, event.request()).await)
}

/// Every page of a list, following `nextCursor`.
async fn list_all(env: &TestEnv, agency: &str, query: &str) -> (Vec<Value>, usize) {
    let mut out = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("{query}&cursor={c}"),
            None => query.to_owned(),
        };
        let a = list(env, agency, Some(&q)).await;
        assert_eq!(a.status, 200, "{}", a.body);
        pages += 1;
        out.extend(a.body["purchases"].as_array().unwrap().iter().cloned());
        match a.body["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return (out, pages),
        }
    }
}

fn void_event(agency: &str, admin_of: &str, purchase_id: &str, body: &Value, key: Option<&str>) -> ApiEvent {
    let mut event = ApiEvent::agency("POST", VOID, agency)
        .path_parameter("purchaseId", purchase_id)
        .as_agency_admin(admin_of)
        .json(body);
    if let Some(key) = key {
        event = event.header("Idempotency-Key", key);
    }
    event
}

async fn void(env: &TestEnv, purchase_id: &str, body: &Value, key: Option<&str>) -> testkit::Answer {
    answer(api::agency_write(&env.app, void_event(NORTHWIND, NORTHWIND, purchase_id, body, key).request()).await)
}

async fn statements(env: &TestEnv, agency: &str, query: Option<&str>) -> testkit::Answer {
    let mut event = ApiEvent::agency("GET", STATEMENTS, agency).as_agency_admin(agency);
    if let Some(query) = query {
        event = event.query(query);
    }
    answer(api::agency_read(&env.app, event.request()).await)
}

async fn record(env: &TestEnv, account: &str, purchase_id: &str) -> PurchaseRecord {
    env.app.store.purchase(account, purchase_id).await.unwrap().expect("the purchase")
}

/// The purchase item's attribute names, raw.
async fn attributes(env: &TestEnv, account: &str, purchase_id: &str) -> BTreeSet<String> {
    let item = env
        .client
        .get_item()
        .table_name(&env.table)
        .key("pk", AttributeValue::S(format!("ACCOUNT#{account}")))
        .key("sk", AttributeValue::S(format!("PURCHASE#{purchase_id}")))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("the purchase item");
    item.keys().cloned().collect()
}

fn cycle(text: &str) -> CycleEnd {
    CycleEnd::parse(text).unwrap()
}

async fn bill(env: &TestEnv, cycle_end: &str) -> billing::RunSummary {
    billing::run_billing(&env.app.store, &BillingRun::new(cycle(cycle_end))).await.unwrap()
}

/// Reconcile's whole-table check: every account's balances and line, every agency's line.
async fn reconcile_clean(env: &TestEnv) {
    let mut ledger = Ledger::default();
    env.app.store.read_ledger(&mut ledger, 2).await.unwrap();
    assert_eq!(ledger.drift(), vec![], "account drift");
    assert_eq!(ledger.agency_drift(), vec![], "agency line drift");
}

async fn cost(env: &TestEnv, purchase: &Value) -> Decimal {
    record(env, purchase["accountId"].as_str().unwrap(), &id_of(purchase)).await.total_at_cost
}

fn money(value: &Value) -> Decimal {
    d(value.as_str().unwrap_or_else(|| panic!("money as a string: {value}")))
}

#[tokio::test]
async fn the_agency_lists_its_clients_purchases_newest_first_with_cost_and_margin() {
    let env = TestEnv::seeded().await;
    let a = buy(&env, COFFEE, json!({"audience": 2, "enrichment": 333})).await;
    let b = buy(&env, BIKES, json!({"pixel": 3})).await;
    let c = buy(&env, COFFEE, json!({"custom_model": 1})).await;
    let _d1 = buy(&env, DENTAL, json!({"audience": 1})).await;
    let _d2 = buy(&env, DENTAL, json!({"audience": 1})).await;

    let page = list(&env, NORTHWIND, None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.body["agencyId"], NORTHWIND);
    assert_eq!(page.body["nextCursor"], Value::Null);
    let ids: Vec<String> = page.body["purchases"].as_array().unwrap().iter().map(id_of).collect();
    assert_eq!(ids, vec![id_of(&c), id_of(&b), id_of(&a)], "newest first, no Brightside purchase");

    for view in page.body["purchases"].as_array().unwrap() {
        let account = view["accountId"].as_str().unwrap();
        let stored = record(&env, account, &id_of(view)).await;
        assert_eq!(view["status"], "unbilled");
        assert_eq!((view["voidedAt"].clone(), view["voidedBy"].clone()), (Value::Null, Value::Null));
        assert_eq!(view["billedToClient"], false);
        assert_eq!(money(&view["total"]), stored.total);
        assert_eq!(money(&view["totalAtCost"]), stored.total_at_cost);
        assert_eq!(money(&view["margin"]), stored.total - stored.total_at_cost);
        let lines = view["lines"].as_array().unwrap();
        assert_eq!(lines.len(), stored.lines.len());
        for (line, stored) in lines.iter().zip(&stored.lines) {
            assert_eq!(line["creditType"], stored.credit_type.as_str());
            assert_eq!(line["quantity"], stored.quantity);
            assert_eq!(money(&line["unitPrice"]), stored.unit_price);
            assert_eq!(money(&line["unitCost"]), stored.unit_cost);
            assert_eq!(money(&line["subtotal"]), stored.subtotal);
            assert_eq!(money(&line["subtotalAtCost"]), stored.subtotal_at_cost);
            assert_eq!(money(&line["margin"]), stored.subtotal - stored.subtotal_at_cost);
        }
    }
    // Northwind's seeded audience: 25.00 at price, 17.50 at cost.
    let first_line = &page.body["purchases"][2]["lines"][0];
    assert_eq!(
        (&first_line["unitPrice"], &first_line["unitCost"], &first_line["margin"]),
        (&json!("25.00"), &json!("17.50"), &json!("15.00"))
    );

    // Paged one by one: the same purchases in the same order.
    let (paged, pages) = list_all(&env, NORTHWIND, "limit=1").await;
    assert_eq!(paged.iter().map(id_of).collect::<Vec<_>>(), ids);
    assert_eq!(pages, 3);

    // A cursor moves only within the agency's own list: Brightside's, or one of a client's list, is refused.
    let brightside = list(&env, BRIGHTSIDE, Some("limit=1")).await;
    let foreign = brightside.body["nextCursor"].as_str().expect("Brightside has a second page").to_owned();
    assert_problem(&list(&env, NORTHWIND, Some(&format!("cursor={foreign}"))).await, 400, "invalid_query_parameter");
    let client_cursor = list(&env, NORTHWIND, Some(&format!("accountId={COFFEE}&limit=1"))).await.body["nextCursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = list(&env, NORTHWIND, Some(&format!("cursor={client_cursor}"))).await;
    assert_problem(&refused, 400, "invalid_query_parameter");
    assert_eq!(refused.body["parameter"], "cursor");
    assert_problem(
        &list(&env, NORTHWIND, Some(&format!("accountId={BIKES}&cursor={client_cursor}"))).await,
        400,
        "invalid_query_parameter",
    );
    for bad in ["limit=0", "limit=101", "accountId=a%23b", "cursor=!!", "accountId=x&accountId=y"] {
        assert_problem(&list(&env, NORTHWIND, Some(bad)).await, 400, "invalid_query_parameter");
    }
    // The client's own history pages by the same purchase key, yet its cursors and the agency's one-client
    // list's are not interchangeable: each is signed for its own list.
    let history = |query: String| {
        let event = ApiEvent::new("GET", PURCHASES_ROUTE, COFFEE).as_account(COFFEE).query(&query);
        let app = env.app.clone();
        async move { answer(api::list_purchases(&app, event.request()).await) }
    };
    let history_cursor = history("limit=1".into()).await.body["nextCursor"].as_str().unwrap().to_owned();
    assert_eq!(history(format!("limit=1&cursor={history_cursor}")).await.status, 200);
    assert_problem(
        &list(&env, NORTHWIND, Some(&format!("accountId={COFFEE}&cursor={history_cursor}"))).await,
        400,
        "invalid_query_parameter",
    );
    assert_problem(&history(format!("cursor={client_cursor}")).await, 400, "invalid_query_parameter");

    // One client: its own purchases only, paged the same way.
    let (coffee, pages) = list_all(&env, NORTHWIND, &format!("accountId={COFFEE}&limit=1")).await;
    assert_eq!(coffee.iter().map(id_of).collect::<Vec<_>>(), vec![id_of(&c), id_of(&a)]);
    assert_eq!(pages, 2);
    assert_eq!(coffee[0], page.body["purchases"][0], "the same view in both lists");
    // Another agency's account, or an unknown one: an empty list (nothing of it is this agency's).
    for other in [DENTAL, "acct-nobody"] {
        let a = list(&env, NORTHWIND, Some(&format!("accountId={other}"))).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.body["purchases"], json!([]));
        assert_eq!(a.body["nextCursor"], Value::Null);
    }
}

#[tokio::test]
async fn a_void_takes_the_credits_back_restores_both_lines_and_writes_a_void_entry() {
    let env = TestEnv::seeded().await;
    let store = &env.app.store;
    let account_before = store.account(COFFEE).await.unwrap().unwrap();
    let agency_line_before = store.agency_line(NORTHWIND).await.unwrap().unwrap();
    let keep = buy(&env, COFFEE, json!({"enrichment": 100})).await;
    let purchase = buy(&env, COFFEE, json!({"audience": 10, "pixel": 5})).await;
    let id = id_of(&purchase);
    let stored = record(&env, COFFEE, &id).await;
    assert!(attributes(&env, COFFEE, &id).await.contains("clientUnbilledPk"));

    let a = void(&env, &id, &json!({"accountId": COFFEE, "reason": "bought by mistake"}), None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let view = &a.body["purchase"];
    assert_eq!(view["purchaseId"], id);
    assert_eq!(view["status"], "voided");
    assert_eq!(view["voidedBy"], "admin-of-agency-northwind");
    assert!(view["voidedAt"].is_string());
    assert_eq!((view["billedToClient"].clone(), view["billedToAgency"].clone()), (json!(false), json!(false)));
    assert_eq!(money(&view["totalAtCost"]), stored.total_at_cost);
    assert_eq!(a.body["balances"], json!({"audience": 0, "enrichment": 100, "pixel": 0, "custom_model": 0}));

    // The record: voided, out of every unbilled index, still in the agency's list.
    let after = record(&env, COFFEE, &id).await;
    assert_eq!(after.voided_at.as_deref(), view["voidedAt"].as_str());
    assert_eq!(after.voided_by.as_deref(), Some("admin-of-agency-northwind"));
    let names = attributes(&env, COFFEE, &id).await;
    for gone in ["unbilledClientPk", "unbilledClientSk", "unbilledAgencyPk", "unbilledAgencySk", "clientUnbilledPk"] {
        assert!(!names.contains(gone), "{gone} still on the voided purchase");
    }
    assert!(names.contains("agencyPk") && names.contains("voidReason"));
    let listed = list(&env, NORTHWIND, None).await;
    assert_eq!(listed.body["purchases"][0]["status"], "voided");

    // Balances and both lines exactly as if the purchase had never been made.
    let account = store.account(COFFEE).await.unwrap().unwrap();
    let keep_total = money(&keep["total"]);
    assert_eq!(account.credit_line.unwrap().available, account_before.credit_line.unwrap().available - keep_total);
    let keep_cost = record(&env, COFFEE, &id_of(&keep)).await.total_at_cost;
    assert_eq!(
        store.agency_line(NORTHWIND).await.unwrap().unwrap().available,
        agency_line_before.available - keep_cost
    );

    // The void's ledger entry: the credits out, the purchase as its reference, the administrator as its actor.
    let page = store.ledger_page(COFFEE, 10, None, None).await.unwrap().unwrap();
    let (entry, balances_after) = &page.entries[0];
    assert_eq!(entry.entry_type, EntryType::Void);
    assert_eq!(
        entry.quantities,
        [(shared::domain::CreditType::Audience, -10), (shared::domain::CreditType::Pixel, -5)].into()
    );
    assert_eq!((entry.reference.as_deref(), entry.purchase_id.as_deref()), (Some(id.as_str()), Some(id.as_str())));
    assert_eq!(entry.actor.as_deref(), Some("admin-of-agency-northwind"));
    assert_eq!(entry.reason.as_deref(), Some("bought by mistake"));
    assert_eq!(balances_after[&shared::domain::CreditType::Audience], 0);
    assert_eq!(env.drift(COFFEE).await, Vec::<String>::new());
    reconcile_clean(&env).await;

    // The client sees the void in its history and its ledger, never who voided it or any cost.
    let history = ApiEvent::new("GET", PURCHASES_ROUTE, COFFEE).as_account(COFFEE);
    let history = answer(api::list_purchases(&env.app, history.request()).await);
    let shown = &history.body["purchases"][0];
    assert_eq!((shown["purchaseId"].as_str(), &shown["voided"]), (Some(id.as_str()), &json!(true)));
    assert_eq!(shown["voidedAt"], view["voidedAt"]);
    assert!(shown.get("voidedBy").is_none() && shown.get("totalAtCost").is_none());
    assert!(history.body["purchases"][1].get("voided").is_none(), "an unvoided purchase carries no flag");
    let ledger = ApiEvent::new("GET", LEDGER_ROUTE, COFFEE).as_account(COFFEE);
    let ledger = answer(api::list_ledger(&env.app, ledger.request()).await);
    let shown = &ledger.body["entries"][0];
    assert_eq!(shown["type"], "void");
    assert_eq!(shown["quantities"], json!({"audience": -10, "pixel": -5}));
    assert_eq!(shown["purchaseId"], id);
    assert!(shown.get("actor").is_none());

    // A billing run afterwards never charges it: the statements hold the other purchase only.
    bill(&env, "2030-01-01T00:00:00Z").await;
    let client = store.client_statements(COFFEE).await.unwrap();
    assert_eq!(client.len(), 1);
    assert_eq!(client[0].purchase_ids, vec![id_of(&keep)]);
    assert_eq!(client[0].total, keep_total);
    let agency = store.agency_statements(NORTHWIND).await.unwrap();
    assert_eq!(agency[0].purchase_ids, vec![id_of(&keep)]);
    assert_eq!(agency[0].total, keep_cost);
    let after_billing = record(&env, COFFEE, &id).await;
    assert!(!after_billing.billed_to_client && !after_billing.billed_to_agency);
    reconcile_clean(&env).await;
}

#[tokio::test]
async fn a_void_is_exactly_once_per_key_and_refusals_write_nothing() {
    let env = TestEnv::seeded().await;
    let purchase = buy(&env, BIKES, json!({"pixel": 4})).await;
    let id = id_of(&purchase);
    let body = json!({"accountId": BIKES, "reason": "typo"});
    let first = void(&env, &id, &body, Some("void-key-1")).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let after_first = env.snapshot().await;

    // The same key and request: the first answer, nothing more written.
    let again = void(&env, &id, &body, Some("void-key-1")).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, first.body);
    assert_eq!(env.snapshot().await, after_first, "a replay wrote something");

    // The same key with another request (another reason, another purchase): 422, nothing written.
    let other = buy(&env, BIKES, json!({"pixel": 1})).await;
    let before = env.snapshot().await;
    let reused = void(&env, &id, &json!({"accountId": BIKES, "reason": "other"}), Some("void-key-1")).await;
    assert_problem(&reused, 422, "idempotency_key_reused");
    let reused = void(&env, &id_of(&other), &json!({"accountId": BIKES}), Some("void-key-1")).await;
    assert_problem(&reused, 422, "idempotency_key_reused");
    // Without a key (or with a new one), an already voided purchase is a 409.
    assert_problem(&void(&env, &id, &body, None).await, 409, "purchase_already_voided");
    assert_problem(&void(&env, &id, &body, Some("void-key-2")).await, 409, "purchase_already_voided");

    // Not this agency's purchase (another agency's administrator, or the purchase under another account):
    // the same 404 as an unknown one.
    let dental = buy(&env, DENTAL, json!({"audience": 1})).await;
    let dental_id = id_of(&dental);
    let before_refusals = env.snapshot().await;
    assert_problem(&void(&env, &dental_id, &json!({"accountId": DENTAL}), None).await, 404, "purchase_not_found");
    assert_problem(&void(&env, &dental_id, &json!({"accountId": COFFEE}), None).await, 404, "purchase_not_found");
    assert_problem(
        &void(&env, "0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", &json!({"accountId": BIKES}), None).await,
        404,
        "purchase_not_found",
    );
    let brightside_on_northwind =
        void_event(BRIGHTSIDE, BRIGHTSIDE, &id_of(&other), &json!({"accountId": BIKES}), None);
    assert_problem(
        &answer(api::agency_write(&env.app, brightside_on_northwind.request()).await),
        404,
        "purchase_not_found",
    );
    // Bad input: refused before any read.
    assert_problem(&void(&env, "not-a-uuid", &json!({"accountId": BIKES}), None).await, 400, "invalid_purchase_id");
    for body in [json!({}), json!({"accountId": BIKES, "extra": 1}), json!({"accountId": BIKES, "reason": 7})] {
        assert_problem(&void(&env, &id_of(&other), &body, None).await, 400, "invalid_field");
    }
    assert_eq!(env.snapshot().await, before_refusals, "a refused void wrote something");
    // Since `before`: only the Brightside purchase (its record, its ledger entry, its `credits.purchased`
    // outbox item and its agency's first sums of the day).
    assert_eq!(before_refusals.len(), before.len() + 4);
    assert_eq!(env.drift(BIKES).await, Vec::<String>::new());
    reconcile_clean(&env).await;
}

#[tokio::test]
async fn credits_already_spent_or_a_billed_purchase_cannot_be_voided() {
    let env = TestEnv::seeded().await;
    let spent = buy(&env, COFFEE, json!({"audience": 10, "pixel": 2})).await;
    let consumed = consumption_event(
        &env.consumer,
        &json!({"accountId": COFFEE, "consumptionId": "job-1", "quantities": {"audience": 4}, "reason": "build"}),
    )
    .await;
    assert!(consumed.is_ok(), "{consumed:?}");
    let before = env.snapshot().await;
    let a = void(&env, &id_of(&spent), &json!({"accountId": COFFEE}), Some("k-spent")).await;
    assert_problem(&a, 409, "credits_already_used");
    assert_eq!((a.body["creditType"].clone(), a.body["shortBy"].clone()), (json!("audience"), json!(4)));
    assert_eq!(env.snapshot().await, before, "a refused void wrote something (its idempotency key included)");

    // Billed (to both sides by the run): refused, nothing written.
    let billed = buy(&env, BIKES, json!({"pixel": 1})).await;
    bill(&env, "2030-01-01T00:00:00Z").await;
    let before = env.snapshot().await;
    assert_problem(
        &void(&env, &id_of(&billed), &json!({"accountId": BIKES}), None).await,
        409,
        "purchase_already_billed",
    );
    assert_eq!(env.snapshot().await, before);
    assert_eq!(list(&env, NORTHWIND, None).await.body["purchases"][0]["status"], "billed");
    reconcile_clean(&env).await;
}

/// The transaction itself refuses what the handler's read could not see yet: a purchase billed, or voided,
/// between that read and the write (the read is only a shortcut).
#[tokio::test]
async fn the_void_transaction_checks_the_purchase_again() {
    let env = TestEnv::seeded().await;
    let store = &env.app.store;
    let p = buy(&env, BIKES, json!({"pixel": 2})).await;
    let stale = record(&env, BIKES, &id_of(&p)).await;
    let request = |entry_id: &'static str| VoidRequest {
        purchase: &stale,
        agency_id: NORTHWIND,
        voided_by: "admin",
        reason: None,
        entry_id,
        voided_at: "2026-11-26T04:00:00.000Z",
        client_has_line: true,
        idempotency: None,
    };
    bill(&env, "2030-01-01T00:00:00Z").await;
    let before = env.snapshot().await;
    let outcome = store.void_purchase(&request("0196a1b2-c3d4-7e5f-8a9b-000000000001")).await.unwrap();
    assert_eq!(outcome, VoidOutcome::AlreadyBilled);
    assert_eq!(env.snapshot().await, before);

    let q = buy(&env, BIKES, json!({"pixel": 2})).await;
    let stale_q = record(&env, BIKES, &id_of(&q)).await;
    assert_eq!(void(&env, &id_of(&q), &json!({"accountId": BIKES}), None).await.status, 200);
    let before = env.snapshot().await;
    let again = VoidRequest { purchase: &stale_q, ..request("0196a1b2-c3d4-7e5f-8a9b-000000000002") };
    assert_eq!(store.void_purchase(&again).await.unwrap(), VoidOutcome::AlreadyVoided);
    let other_agency = VoidRequest { agency_id: BRIGHTSIDE, ..again.clone() };
    assert_eq!(store.void_purchase(&other_agency).await.unwrap(), VoidOutcome::NotFound);
    assert_eq!(env.snapshot().await, before);
}

/// An agency without a line item (none in the seeds: a purchase needs one) still voids; nothing is created.
#[tokio::test]
async fn a_void_without_an_agency_line_gives_back_nothing_there() {
    let env = TestEnv::seeded().await;
    let p = buy(&env, COFFEE, json!({"audience": 1})).await;
    env.client
        .delete_item()
        .table_name(&env.table)
        .key("pk", AttributeValue::S(format!("AGENCYLINE#{NORTHWIND}")))
        .key("sk", AttributeValue::S("CREDIT_LINE".into()))
        .send()
        .await
        .unwrap();
    let a = void(&env, &id_of(&p), &json!({"accountId": COFFEE}), None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(env.app.store.agency_line(NORTHWIND).await.unwrap(), None);
    assert_eq!(env.drift(COFFEE).await, Vec::<String>::new());
}

#[tokio::test]
async fn the_agency_statements_route_lists_the_agencys_statements_at_cost() {
    let env = TestEnv::seeded().await;
    let a = buy(&env, COFFEE, json!({"audience": 2})).await;
    let b = buy(&env, BIKES, json!({"pixel": 3})).await;
    bill(&env, "2030-01-01T00:00:00Z").await;
    let c = buy(&env, COFFEE, json!({"enrichment": 100})).await;
    buy(&env, DENTAL, json!({"audience": 1})).await;
    bill(&env, "2030-02-01T00:00:00Z").await;

    let page = statements(&env, NORTHWIND, None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.body["agencyId"], NORTHWIND);
    let listed = page.body["statements"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{}", page.body);
    assert_eq!(listed[0]["statementId"], "agency-20300201T000000.000Z-agency-northwind");
    assert_eq!(money(&listed[0]["total"]), cost(&env, &c).await);
    assert_eq!(listed[1]["statementId"], "agency-20300101T000000.000Z-agency-northwind");
    assert_eq!(money(&listed[1]["total"]), cost(&env, &a).await + cost(&env, &b).await);
    assert_eq!(listed[1]["purchaseCount"], 2);
    assert_eq!(listed[1]["status"], "pending_payment");
    // At cost, not the clients' price.
    assert_ne!(money(&listed[1]["total"]), money(&a["total"]) + money(&b["total"]));

    // Paged, and a cursor only moves within this agency's statements.
    let first = statements(&env, NORTHWIND, Some("limit=1")).await;
    assert_eq!(first.body["statements"].as_array().unwrap().len(), 1);
    let cursor = first.body["nextCursor"].as_str().unwrap().to_owned();
    let second = statements(&env, NORTHWIND, Some(&format!("limit=1&cursor={cursor}"))).await;
    assert_eq!(second.body["statements"][0], listed[1]);
    assert_eq!(second.body["nextCursor"], Value::Null);
    assert_problem(
        &statements(&env, BRIGHTSIDE, Some(&format!("cursor={cursor}"))).await,
        400,
        "invalid_query_parameter",
    );
    let brightside = statements(&env, BRIGHTSIDE, None).await;
    let ids: Vec<&str> =
        brightside.body["statements"].as_array().unwrap().iter().map(|s| s["statementId"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["agency-20300201T000000.000Z-agency-brightside"]);
    assert_problem(&statements(&env, NORTHWIND, Some("limit=x")).await, 400, "invalid_query_parameter");
}

/// The race the issue asks for: voids against a billing run, round after round with fresh purchases. Each
/// purchase ends voided and unbilled (in no statement) or billed on both sides and not voided (its void
/// answered 409 `purchase_already_billed`), never both; every statement equals the purchases it holds; no
/// drift anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_void_racing_a_billing_run_ends_voided_or_billed_never_both() {
    let env = TestEnv::seeded().await;
    const ROUNDS: usize = 20;
    const PER_ROUND: usize = 4;
    let (mut voided, mut billed) = (0, 0);
    // Purchases a run read as unbilled but found voided when its step wrote (the void won at write time).
    let mut dropped_by_run = 0;
    let mut all: Vec<(String, String)> = Vec::new();
    for round in 0..ROUNDS {
        // Every other round with DynamoDB-like latency on every call, so the two transactions overlap widely.
        env.faults.set_latency((round % 2 == 1).then(Latency::dynamodb));
        let mut purchases = Vec::new();
        for i in 0..PER_ROUND {
            let account = if i % 2 == 0 { COFFEE } else { BIKES };
            let p = buy(&env, account, json!({"audience": 1 + i as u64, "pixel": 1})).await;
            purchases.push((account.to_owned(), id_of(&p)));
        }
        // Each round its own cycle (after every purchase so far): the earlier cycles are payable and closed.
        let cycle_end = format!("2030-{:02}-{:02}T00:00:00Z", 1 + round / 28, 1 + round % 28);
        let store = env.app.store.clone();
        let run = tokio::spawn(async move { billing::run_billing(&store, &BillingRun::new(cycle(&cycle_end))).await });
        let mut voids = Vec::new();
        for (k, (account, id)) in purchases.iter().enumerate() {
            let app = env.app.clone();
            let event = void_event(NORTHWIND, NORTHWIND, id, &json!({"accountId": account}), None);
            voids.push(tokio::spawn(async move {
                // Spread the voids over the run's life: some before it reads, some while it bills.
                tokio::time::sleep(Duration::from_millis((k as u64 * 37 + round as u64 * 13) % 120)).await;
                answer(api::agency_write(&app, event.request()).await)
            }));
        }
        let summary = run.await.unwrap().expect("the billing run");
        assert!(summary.complete);
        dropped_by_run += summary.purchases_already_billed;
        for ((account, id), task) in purchases.iter().zip(voids) {
            let a = task.await.unwrap();
            let stored = record(&env, account, id).await;
            match a.status {
                200 => {
                    voided += 1;
                    assert!(stored.voided_at.is_some(), "{id}: answered voided");
                    assert!(!stored.billed_to_client && !stored.billed_to_agency, "{id}: voided and billed");
                    assert!(stored.client_statement_id.is_none() && stored.agency_statement_id.is_none());
                }
                409 => {
                    assert_problem(&a, 409, "purchase_already_billed");
                    billed += 1;
                    assert!(stored.voided_at.is_none(), "{id}: refused yet voided");
                    assert!(stored.billed_to_client && stored.billed_to_agency, "{id}: refused but not billed");
                }
                other => panic!("{id}: unexpected {other}: {}", a.body),
            }
        }
        all.extend(purchases);
    }
    env.faults.set_latency(None);

    // Every statement equals exactly the purchases it holds, and holds no voided one.
    let mut records: HashMap<String, PurchaseRecord> = HashMap::new();
    for account in [COFFEE, BIKES] {
        for p in env.app.store.all_purchases(account).await.unwrap() {
            records.insert(p.purchase_id.clone(), p);
        }
    }
    let mut statements: Vec<(bool, Statement)> = Vec::new();
    for account in [COFFEE, BIKES] {
        statements.extend(env.app.store.client_statements(account).await.unwrap().into_iter().map(|s| (true, s)));
    }
    statements.extend(env.app.store.agency_statements(NORTHWIND).await.unwrap().into_iter().map(|s| (false, s)));
    let mut in_statements: BTreeMap<String, usize> = BTreeMap::new();
    for (client, statement) in &statements {
        let held: Vec<&PurchaseRecord> = statement.purchase_ids.iter().map(|id| &records[id]).collect();
        assert!(held.iter().all(|p| p.voided_at.is_none()), "{} holds a voided purchase", statement.statement_id);
        let sum: Decimal = held.iter().map(|p| if *client { p.total } else { p.total_at_cost }).sum();
        assert_eq!(statement.total, sum, "{}", statement.statement_id);
        assert_eq!(statement.purchase_count, held.len() as u64);
        for id in &statement.purchase_ids {
            *in_statements.entry(id.clone()).or_default() += 1;
        }
    }
    for (_, id) in &all {
        let p = &records[id];
        let expected = if p.voided_at.is_some() { 0 } else { 2 };
        assert_eq!(in_statements.get(id).copied().unwrap_or(0), expected, "{id}: on a client and an agency statement");
    }
    for account in [COFFEE, BIKES] {
        assert_eq!(env.drift(account).await, Vec::<String>::new(), "{account}");
    }
    reconcile_clean(&env).await;
    println!(
        "void vs billing run: {ROUNDS} rounds x {PER_ROUND} purchases = {}: {voided} voided (unbilled, in no \
         statement), {billed} billed (void answered 409 purchase_already_billed), 0 both; {dropped_by_run} read \
         as unbilled by the run and dropped from its step because the void committed first; {} statements checked",
        all.len(),
        statements.len()
    );
    assert_eq!(voided + billed, ROUNDS * PER_ROUND);
}

/// The sample events of these routes answer what their names promise (`scripts/invoke-events.sh` does the
/// same against `cargo lambda watch`).
#[tokio::test]
async fn the_sample_events_answer_as_named() {
    let env = TestEnv::seeded().await;
    let purchase = buy(&env, COFFEE, json!({"audience": 1})).await;
    let sample_id = "0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
    for (file, write, status) in [
        ("agency-read-purchases.json", false, 200),
        ("agency-read-purchases-bad-input.json", false, 400),
        ("agency-read-purchases-forbidden.json", false, 403),
        ("agency-read-statements.json", false, 200),
        ("agency-read-statements-bad-input.json", false, 400),
        ("agency-read-statements-forbidden.json", false, 403),
        ("agency-write-void.json", true, 200),
        ("agency-write-void-bad-input.json", true, 400),
        ("agency-write-void-forbidden.json", true, 403),
    ] {
        // The valid void names the purchase just made (a fresh stack has none of its own).
        let text = testkit::event_json(file).to_string().replace(sample_id, &id_of(&purchase));
        let request = testkit::request_from_event(&serde_json::from_str(&text).unwrap());
        let a = answer(if write {
            api::agency_write(&env.app, request).await
        } else {
            api::agency_read(&env.app, request).await
        });
        assert_eq!(a.status, status, "{file}: {}", a.body);
    }
}

/// Purchase items made directly from a real one: `count` purchases of `account` under `agency`, one second apart
/// from `first_second` (Unix time), so thousands are written in a few batch calls instead of thousands of
/// transactions. They carry no unbilled index keys: only the lists read them.
async fn plant_purchases(
    env: &TestEnv,
    template: &HashMap<String, AttributeValue>,
    account: &str,
    agency: &str,
    seconds: impl Iterator<Item = u64>,
) -> Vec<String> {
    let mut ids = Vec::new();
    let mut batch = Vec::new();
    for second in seconds {
        let ts = uuid::Timestamp::from_unix(uuid::NoContext, second, 0);
        let id = uuid::Uuid::new_v7(ts).hyphenated().to_string();
        let at = shared::domain::time::timestamp(std::time::UNIX_EPOCH + Duration::from_secs(second));
        let mut item = template.clone();
        for index in ["unbilledClientPk", "unbilledClientSk", "unbilledAgencyPk", "unbilledAgencySk"] {
            item.remove(index);
        }
        item.remove("clientUnbilledPk");
        item.remove("clientUnbilledSk");
        let s = |v: String| AttributeValue::S(v);
        item.insert("pk".into(), s(format!("ACCOUNT#{account}")));
        item.insert("sk".into(), s(format!("PURCHASE#{id}")));
        item.insert("purchaseId".into(), s(id.clone()));
        item.insert("accountId".into(), s(account.into()));
        item.insert("agencyId".into(), s(agency.into()));
        item.insert("createdAt".into(), s(at.clone()));
        item.insert("agencyPk".into(), s(format!("AGENCY#{agency}")));
        item.insert("agencySk".into(), s(format!("PURCHASE#{at}#{id}")));
        batch.push(
            aws_sdk_dynamodb::types::WriteRequest::builder()
                .put_request(aws_sdk_dynamodb::types::PutRequest::builder().set_item(Some(item)).build().unwrap())
                .build(),
        );
        ids.push(id);
        if batch.len() == 25 {
            write_batch(env, std::mem::take(&mut batch)).await;
        }
    }
    if !batch.is_empty() {
        write_batch(env, batch).await;
    }
    ids
}

async fn write_batch(env: &TestEnv, mut batch: Vec<aws_sdk_dynamodb::types::WriteRequest>) {
    while !batch.is_empty() {
        let out = env.client.batch_write_item().request_items(&env.table, batch).send().await.expect("batch write");
        batch = out.unprocessed_items.unwrap_or_default().remove(&env.table).unwrap_or_default();
    }
}

/// Follows `nextCursor` from the first page, recording the items read and the calls of each request.
async fn walk(env: &TestEnv, query: &str) -> (Vec<String>, Vec<(u64, usize)>) {
    let mut ids = Vec::new();
    let mut work = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("{query}&cursor={c}"),
            None => query.to_owned(),
        };
        env.operations.reset();
        let a = list(env, NORTHWIND, Some(&q)).await;
        assert_eq!(a.status, 200, "{}", a.body);
        work.push((env.operations.items_read(), env.operations.operations().len()));
        ids.extend(a.body["purchases"].as_array().unwrap().iter().map(id_of));
        match a.body["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return (ids, work),
        }
        assert!(work.len() < 5_000, "the walk does not end");
    }
}

#[tokio::test]
async fn a_one_client_list_reads_a_bounded_number_of_items_per_request() {
    use shared::storage::agency_purchases::{MAX_ITEMS_READ_PER_REQUEST, items_read_budget};
    let env = TestEnv::seeded().await;
    let real = buy(&env, COFFEE, json!({"audience": 1})).await;
    let template = env
        .client
        .get_item()
        .table_name(&env.table)
        .key("pk", AttributeValue::S(format!("ACCOUNT#{COFFEE}")))
        .key("sk", AttributeValue::S(format!("PURCHASE#{}", id_of(&real))))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let t0 = 1_700_000_000;
    // Brightside's client with a long history under Brightside, and a few purchases it made long ago while it
    // was Northwind's (it left since): those are Northwind's, in Northwind's book.
    let dental_then = plant_purchases(&env, &template, DENTAL, NORTHWIND, (0..7).map(|i| t0 + i * 1_000)).await;
    plant_purchases(&env, &template, DENTAL, BRIGHTSIDE, (0..3_000).map(|i| t0 + 10_000 + i)).await;
    // Northwind's client that came from Brightside: 2,000 older purchases under Brightside, then 30 under
    // Northwind interleaved with 60 more under Brightside (as a move back and forth would leave them).
    plant_purchases(&env, &template, BIKES, BRIGHTSIDE, (0..2_000).map(|i| t0 + 20_000 + i)).await;
    let mut bikes_ours = Vec::new();
    for round in 0..30 {
        let at = t0 + 30_000 + round * 10;
        bikes_ours.extend(plant_purchases(&env, &template, BIKES, NORTHWIND, std::iter::once(at)).await);
        plant_purchases(&env, &template, BIKES, BRIGHTSIDE, (1..3).map(|i| at + i)).await;
    }

    // Another agency's client, limit 1: at most the budget read, whatever its 3,000 purchases; the same work as
    // for an account that does not exist, and the same answer.
    for (limit, account) in [(1, DENTAL), (1, "acct-nobody"), (100, DENTAL), (100, "acct-nobody")] {
        env.operations.reset();
        let a = list(&env, NORTHWIND, Some(&format!("accountId={account}&limit={limit}"))).await;
        let (read, calls) = (env.operations.items_read(), env.operations.operations());
        println!("accountId={account}&limit={limit}: {read} items read in {} calls {calls:?}", calls.len());
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(read as usize <= items_read_budget(limit), "{read} items read for limit {limit}");
        assert!(calls.len() <= 1 + items_read_budget(limit).ilog2() as usize, "{calls:?}");
    }
    let work = |account: &str| {
        let env = &env;
        let account = account.to_owned();
        async move {
            env.operations.reset();
            let a = list(env, NORTHWIND, Some(&format!("accountId={account}&limit=3"))).await;
            (a.body["nextCursor"].is_null(), env.operations.items_read(), env.operations.operations())
        }
    };
    let unknown = work("acct-nobody").await;
    let dental = work(DENTAL).await;
    assert_eq!(dental.1, unknown.1, "another agency's client costs what an unknown account does");
    assert_eq!(dental.2, unknown.2);

    // Following the cursors: every purchase of the asking agency exactly once, newest first, each request
    // within the budget (and the current client's walk never reads the other agency's purchases twice).
    for (account, expected) in [(BIKES, &bikes_ours), (DENTAL, &dental_then)] {
        for limit in [1, 5, 100] {
            let (ids, work) = walk(&env, &format!("accountId={account}&limit={limit}")).await;
            let mut want: Vec<String> = expected.clone();
            want.reverse();
            assert_eq!(ids, want, "{account} limit {limit}");
            let most = work.iter().map(|w| w.0).max().unwrap();
            let total: u64 = work.iter().map(|w| w.0).sum();
            println!(
                "{account} limit {limit}: {} requests, at most {most} items and {} calls per request, {total} read",
                work.len(),
                work.iter().map(|w| w.1).max().unwrap()
            );
            assert!(most as usize <= items_read_budget(limit).min(MAX_ITEMS_READ_PER_REQUEST));
        }
    }

    // Forged or foreign cursors never reach a Query: 400, nothing read.
    let dental_cursor = list(&env, NORTHWIND, Some(&format!("accountId={DENTAL}&limit=1"))).await.body["nextCursor"]
        .as_str()
        .expect("the book is longer than one request's budget")
        .to_owned();
    let bikes_cursor = list(&env, NORTHWIND, Some(&format!("accountId={BIKES}&limit=1"))).await.body["nextCursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let b64 = |v: Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let some_id = &dental_then[0];
    let forged = [
        // Dental's own partition, as if it were Northwind's client: the read the oracle needs.
        b64(json!({"pk": format!("ACCOUNT#{DENTAL}"), "sk": format!("PURCHASE#{some_id}")})),
        // A book position of Brightside's.
        b64(json!({"accountId": DENTAL, "agencyPk": format!("AGENCY#{BRIGHTSIDE}"),
            "agencySk": format!("PURCHASE#2023-11-14T22:13:20.000Z#{some_id}"),
            "pk": format!("ACCOUNT#{DENTAL}"), "sk": format!("PURCHASE#{some_id}")})),
        b64(json!({"accountId": DENTAL, "pk": "x"})),
        bikes_cursor.clone(),
        "e30".to_owned(),
    ];
    for cursor in &forged {
        env.operations.reset();
        let a = list(&env, NORTHWIND, Some(&format!("accountId={DENTAL}&cursor={cursor}"))).await;
        assert_problem(&a, 400, "invalid_query_parameter");
        assert_eq!(a.body["parameter"], "cursor");
        assert_eq!(env.operations.items_read(), 0);
    }
    // Each list's cursor stays in its list: Dental's (book) cursor with Bikes, or with the whole list.
    for query in [format!("accountId={BIKES}&cursor={dental_cursor}"), format!("cursor={dental_cursor}")] {
        assert_problem(&list(&env, NORTHWIND, Some(&query)).await, 400, "invalid_query_parameter");
    }
}
