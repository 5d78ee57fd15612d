//! Checks `infra/template.yaml` against the code: the table it declares is the one `shared::table`
//! describes, each function may do exactly what its code does in DynamoDB and only on the partition keys it
//! touches, and no route, event source or environment variable lets a request reach a function without API
//! Gateway's JWT authorizer. Each function starts with the environment the template gives it (every value is one
//! its settings accept) and reads every variable it is given.
//!
//! It also checks the operations side: every function has Errors and Throttles alarms and a log group with
//! retention, every asynchronous invocation has failure destinations (each with an alarm), every alarm notifies
//! the one topic and says what to do, no metric dimension names an id, the HTTP API is throttled, the Makefile
//! builds every function, and every checkov skip has a reason.
//!
//! And the billing state machine (`infra/billing-state-machine.asl.json`): the schedule starts it, every Task
//! invokes billing-run with events billing-run's own parsers accept, the parts and their concurrency agree, each
//! loop follows `complete` / `continueWith`, and its failures raise alarms.
//!
//! Adding a function means adding it to `FUNCTIONS` below: the test fails until it is listed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_yaml::{Mapping, Value};
use shared::table::{INDEXES, PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE, key_attributes};

/// Every function in the template: logical id, cargo binary, what its code does in DynamoDB (see
/// `shared/src/storage/`) and its routes.
struct ExpectedFunction {
    logical_id: &'static str,
    binary: &'static str,
    grants: &'static [Grant],
    routes: &'static [(&'static str, &'static str)],
}

/// Some DynamoDB actions, on the table or on its indexes, for items whose partition key
/// (`dynamodb:LeadingKeys`, `ForAllValues:StringLike`) matches one of `keys`.
struct Grant {
    actions: &'static [&'static str],
    on: On,
    keys: &'static [&'static str],
}

#[derive(Clone, Copy)]
enum On {
    Table,
    /// These indexes (each one of `shared::table::INDEXES`).
    Indexes(&'static [&'static str]),
}

// Partition keys. Everything of one account lives under its pk: the account and balances, purchases, ledger
// entries, consumption markers, client statements and their parts, idempotency keys.
const ACCOUNT: &str = "ACCOUNT#*";
/// Agency pricing, agency statements and their parts.
const AGENCY: &str = "AGENCY#*";
const DEFAULT_PRICING: &str = "PRICING#DEFAULT";
/// The unbilled indexes' partition key: `UNBILLED#0` .. `UNBILLED#{UNBILLED_SHARDS - 1}`.
const UNBILLED: &str = "UNBILLED#*";
/// An agency's credit line (its own partition, so moving a line never allows writing prices).
const AGENCY_LINE: &str = "AGENCYLINE#*";
/// A provisioning request, once per request id.
const PROVISION: &str = "PROVISION#*";
/// A payment, once per payment reference.
const PAYMENT: &str = "PAYMENT#*";
/// The statement-state index: a cycle's statements while its run has not finished; unpaid client statements.
const BUILDING: &str = "BUILDING#*";
const UNPAID: &str = "UNPAID";
/// Payable agency statements (collection).
const AGENCY_UNPAID: &str = "AGENCY_UNPAID";
const UNBILLED_INDEXES: &[&str] = &["unbilled-client", "unbilled-agency"];
const STATEMENT_STATE_INDEX: &[&str] = &["statement-state"];
const AGENCY_ITEMS_INDEX: &[&str] = &["agency-items"];
/// Every partition key: only for [`WHOLE_TABLE_READS`], which name no partition key (a Scan), so
/// `dynamodb:LeadingKeys` cannot limit them; a statement granting them has no condition.
const WHOLE_TABLE: &str = "(whole table)";
const WHOLE_TABLE_READS: &[&str] = &["dynamodb:Scan"];

/// Actions that change an item. A function may only hold them on keys a write grant lists.
const WRITE_ACTIONS: &[&str] = &[
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:PartiQLInsert",
    "dynamodb:PartiQLUpdate",
    "dynamodb:PartiQLDelete",
];

// There is no `dynamodb:TransactWriteItems` IAM action: a transaction is authorised item by item as PutItem,
// UpdateItem, DeleteItem or ConditionCheckItem, each with its own item's LeadingKeys.
const FUNCTIONS: &[ExpectedFunction] = &[
    ExpectedFunction {
        logical_id: "GetPricingFunction",
        binary: "get-pricing",
        grants: &[
            Grant { actions: &["dynamodb:GetItem"], on: On::Table, keys: &[ACCOUNT] },
            Grant { actions: &["dynamodb:BatchGetItem"], on: On::Table, keys: &[DEFAULT_PRICING, AGENCY] },
        ],
        routes: &[("GET", "/accounts/{accountId}/pricing")],
    },
    ExpectedFunction {
        logical_id: "PurchaseCreditsFunction",
        binary: "purchase-credits",
        grants: &[
            // The account; an idempotency key on replay.
            Grant { actions: &["dynamodb:GetItem"], on: On::Table, keys: &[ACCOUNT] },
            Grant { actions: &["dynamodb:BatchGetItem"], on: On::Table, keys: &[DEFAULT_PRICING, AGENCY] },
            // The transaction: Update balances and both lines, Put purchase and idempotency key; ConditionCheck
            // both pricing versions. Never a write on a pricing item.
            Grant { actions: &["dynamodb:UpdateItem"], on: On::Table, keys: &[ACCOUNT, AGENCY_LINE] },
            Grant { actions: &["dynamodb:PutItem"], on: On::Table, keys: &[ACCOUNT] },
            Grant { actions: &["dynamodb:ConditionCheckItem"], on: On::Table, keys: &[DEFAULT_PRICING, AGENCY] },
        ],
        // The client's rule changes: one UpdateItem of the account item each (the grant above).
        routes: &[
            ("POST", "/accounts/{accountId}/credit-purchases"),
            ("PUT", "/accounts/{accountId}/alerts"),
            ("PUT", "/accounts/{accountId}/topups"),
        ],
    },
    ExpectedFunction {
        logical_id: "GetBalancesFunction",
        binary: "get-balances",
        grants: &[Grant { actions: &["dynamodb:GetItem"], on: On::Table, keys: &[ACCOUNT] }],
        // The account item, for its balances or its rules.
        routes: &[
            ("GET", "/accounts/{accountId}/balances"),
            ("GET", "/accounts/{accountId}/alerts"),
            ("GET", "/accounts/{accountId}/topups"),
        ],
    },
    ExpectedFunction {
        logical_id: "BillingRunFunction",
        binary: "billing-run",
        grants: &[
            Grant { actions: &["dynamodb:Query"], on: On::Indexes(UNBILLED_INDEXES), keys: &[UNBILLED] },
            Grant { actions: &["dynamodb:Query"], on: On::Indexes(STATEMENT_STATE_INDEX), keys: &[BUILDING] },
            // Each step's transaction: statement Update, part Put, purchase Updates, on the client or agency side.
            Grant { actions: &["dynamodb:UpdateItem", "dynamodb:PutItem"], on: On::Table, keys: &[ACCOUNT, AGENCY] },
            // The account's agency for `statement.payable`, when the statement predates `lastPurchaseAt#`.
            Grant { actions: &["dynamodb:GetItem"], on: On::Table, keys: &[ACCOUNT] },
        ],
        routes: &[],
    },
    ExpectedFunction {
        logical_id: "ListPurchasesFunction",
        binary: "list-purchases",
        // The account, then a page of its purchases or of its ledger entries.
        grants: &[Grant { actions: &["dynamodb:GetItem", "dynamodb:Query"], on: On::Table, keys: &[ACCOUNT] }],
        routes: &[("GET", "/accounts/{accountId}/credit-purchases"), ("GET", "/accounts/{accountId}/ledger")],
    },
    ExpectedFunction {
        logical_id: "ConsumeCreditsFunction",
        binary: "consume-credits",
        grants: &[
            // The account on a cold container; a consumption's marker before its release.
            Grant { actions: &["dynamodb:GetItem"], on: On::Table, keys: &[ACCOUNT] },
            // The prices an auto top-up is quoted at.
            Grant { actions: &["dynamodb:BatchGetItem"], on: On::Table, keys: &[DEFAULT_PRICING, AGENCY] },
            // The consumption and release transactions: Update balances, the client's line and the marker (and the
            // agency's line for a top-up), Put the ledger entries, the marker, the top-up purchase and the outbox;
            // ConditionCheck both pricing versions (and, for a refusal by the agency's ceiling, its line). Never a
            // write on a pricing item.
            Grant { actions: &["dynamodb:UpdateItem"], on: On::Table, keys: &[ACCOUNT, AGENCY_LINE] },
            Grant { actions: &["dynamodb:PutItem"], on: On::Table, keys: &[ACCOUNT] },
            Grant {
                actions: &["dynamodb:ConditionCheckItem"],
                on: On::Table,
                keys: &[DEFAULT_PRICING, AGENCY, AGENCY_LINE],
            },
        ],
        routes: &[],
    },
    ExpectedFunction {
        logical_id: "AgencyReadFunction",
        binary: "agency-read",
        grants: &[
            // The default and the agency's prices, its clients' statements by id (the clients page's last
            // statements, the overview's held ones); the agency's line; whether an account is the agency's client
            // now (one client's purchases).
            Grant { actions: &["dynamodb:BatchGetItem"], on: On::Table, keys: &[DEFAULT_PRICING, AGENCY, ACCOUNT] },
            Grant { actions: &["dynamodb:GetItem"], on: On::Table, keys: &[AGENCY_LINE, ACCOUNT] },
            // The price history and the agency's statements; a current client's purchases, from its own
            // partition (the agency-items index has no key per client); the overview's day sums (AGENCYLINE#).
            Grant { actions: &["dynamodb:Query"], on: On::Table, keys: &[AGENCY, ACCOUNT, AGENCY_LINE] },
            // The agency's clients and their purchases; one client's unbilled purchases.
            Grant { actions: &["dynamodb:Query"], on: On::Indexes(AGENCY_ITEMS_INDEX), keys: &[AGENCY] },
        ],
        routes: &[
            ("GET", "/agencies/{agencyId}/pricing"),
            ("GET", "/agencies/{agencyId}/pricing/history"),
            ("GET", "/agencies/{agencyId}/clients"),
            ("GET", "/agencies/{agencyId}/purchases"),
            ("GET", "/agencies/{agencyId}/statements"),
            ("GET", "/agencies/{agencyId}/overview"),
        ],
    },
    ExpectedFunction {
        logical_id: "AgencyWriteFunction",
        binary: "agency-write",
        grants: &[
            // The client's account, the purchase to void (ACCOUNT#); a void's idempotency key, a price change's
            // audit entry after a lost answer (AGENCY#); the prices being changed.
            Grant { actions: &["dynamodb:GetItem"], on: On::Table, keys: &[AGENCY, ACCOUNT] },
            Grant { actions: &["dynamodb:BatchGetItem"], on: On::Table, keys: &[DEFAULT_PRICING, AGENCY] },
            // Puts: prices and their audit entry, a limit's audit entry, a void's idempotency key (AGENCY#); a
            // void's ledger entry (ACCOUNT#). Updates: a client's limit, a void's purchase and balances
            // (ACCOUNT#); a void's total at cost back on the agency's line (AGENCYLINE#).
            Grant { actions: &["dynamodb:PutItem"], on: On::Table, keys: &[AGENCY, ACCOUNT] },
            Grant { actions: &["dynamodb:UpdateItem"], on: On::Table, keys: &[ACCOUNT, AGENCY_LINE] },
        ],
        routes: &[
            ("PUT", "/agencies/{agencyId}/pricing"),
            ("PUT", "/agencies/{agencyId}/clients/{accountId}/credit-limit"),
            ("POST", "/agencies/{agencyId}/purchases/{purchaseId}/void"),
        ],
    },
    ExpectedFunction {
        logical_id: "ListStatementsFunction",
        binary: "list-statements",
        grants: &[Grant { actions: &["dynamodb:GetItem", "dynamodb:Query"], on: On::Table, keys: &[ACCOUNT] }],
        routes: &[
            ("GET", "/accounts/{accountId}/statements"),
            ("GET", "/accounts/{accountId}/statements/{statementId}/purchases"),
        ],
    },
    ExpectedFunction {
        logical_id: "RecordPaymentFunction",
        binary: "record-payment",
        grants: &[
            Grant {
                actions: &["dynamodb:GetItem", "dynamodb:PutItem"],
                on: On::Table,
                keys: &[PAYMENT, ACCOUNT, AGENCY],
            },
            Grant { actions: &["dynamodb:UpdateItem"], on: On::Table, keys: &[ACCOUNT, AGENCY, AGENCY_LINE] },
        ],
        routes: &[],
    },
    ExpectedFunction {
        logical_id: "CollectPaymentsFunction",
        binary: "collect-payments",
        grants: &[
            Grant {
                actions: &["dynamodb:Query"],
                on: On::Indexes(STATEMENT_STATE_INDEX),
                keys: &[UNPAID, AGENCY_UNPAID],
            },
            // The owner's Stripe customer (ACCOUNT#, AGENCYLINE#); the payment transaction as record-payment's.
            Grant {
                actions: &["dynamodb:GetItem", "dynamodb:PutItem"],
                on: On::Table,
                keys: &[PAYMENT, ACCOUNT, AGENCY, AGENCY_LINE],
            },
            // The attempt's claim, intent and end on the statement; the statement, line and hold.
            Grant { actions: &["dynamodb:UpdateItem"], on: On::Table, keys: &[ACCOUNT, AGENCY, AGENCY_LINE] },
        ],
        routes: &[],
    },
    ExpectedFunction {
        logical_id: "StripeWebhookFunction",
        binary: "stripe-webhook",
        grants: &[
            Grant {
                actions: &["dynamodb:GetItem", "dynamodb:PutItem"],
                on: On::Table,
                keys: &[PAYMENT, ACCOUNT, AGENCY],
            },
            Grant { actions: &["dynamodb:UpdateItem"], on: On::Table, keys: &[ACCOUNT, AGENCY, AGENCY_LINE] },
        ],
        routes: &[("POST", "/webhooks/stripe")],
    },
    ExpectedFunction {
        logical_id: "ProvisionAccountFunction",
        binary: "provision-account",
        grants: &[
            // A replayed request's record; the record itself, once per request id.
            Grant { actions: &["dynamodb:GetItem", "dynamodb:PutItem"], on: On::Table, keys: &[PROVISION] },
            // The account (agency, name, customer); the agency line and its customer.
            Grant { actions: &["dynamodb:UpdateItem"], on: On::Table, keys: &[ACCOUNT, AGENCY_LINE] },
            // The agency an account joins has a line.
            Grant { actions: &["dynamodb:ConditionCheckItem"], on: On::Table, keys: &[AGENCY_LINE] },
        ],
        routes: &[],
    },
    // Reads the table's stream and puts events on the bus: no table item (the policy test checks those grants).
    ExpectedFunction { logical_id: "PublishEventsFunction", binary: "publish-events", grants: &[], routes: &[] },
    ExpectedFunction {
        logical_id: "StatementSweepFunction",
        binary: "statement-sweep",
        grants: &[
            Grant { actions: &["dynamodb:Query"], on: On::Indexes(STATEMENT_STATE_INDEX), keys: &[UNPAID] },
            // The statement and the account; the overdue mark's transaction (statement, hold, and the
            // `account.hold_started` outbox Put when it starts the hold).
            Grant {
                actions: &["dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:PutItem"],
                on: On::Table,
                keys: &[ACCOUNT],
            },
        ],
        routes: &[],
    },
    ExpectedFunction {
        logical_id: "ReconcileRunFunction",
        binary: "reconcile-run",
        grants: &[
            // The ledger (storage/ledger.rs): a parallel Scan, read-only, of the whole table.
            Grant { actions: &["dynamodb:Scan"], on: On::Table, keys: &[WHOLE_TABLE] },
            // The overdue check: the first page of each unbilled shard before last cycle's end.
            Grant { actions: &["dynamodb:Query"], on: On::Indexes(UNBILLED_INDEXES), keys: &[UNBILLED] },
            // Last cycle's statements still building (storage/billing.rs count_building_statements).
            Grant { actions: &["dynamodb:Query"], on: On::Indexes(STATEMENT_STATE_INDEX), keys: &[BUILDING] },
        ],
        routes: &[],
    },
];

/// The only route without the JWT authorizer, and why: Stripe cannot send a token; its `Stripe-Signature`
/// (verified in `shared::stripe::signature`) authenticates the delivery.
const UNAUTHENTICATED_ROUTES: &[(&str, &str)] = &[("POST", "/webhooks/stripe")];

/// Which function may read which secret (`secretsmanager:GetSecretValue` on that one secret's `!Ref`); no other
/// function may read any.
/// The cursor signing key: resolved into the list functions' environment at deploy, read by no function at run
/// time (so it has no reader in [`SECRET_READERS`]).
const CURSOR_KEY_SECRET: &str = "CursorSigningKey";

const SECRET_READERS: &[(&str, &str)] =
    &[("CollectPaymentsFunction", "StripeSecretKey"), ("StripeWebhookFunction", "StripeWebhookSecret")];

/// What `shared::runtime` reads for Stripe when the Secrets Manager ARNs are absent (the local stack sets them):
/// the template sets none of them.
const LOCAL_ONLY_STRIPE_VARIABLES: &[&str] = &["STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_API_BASE"];

/// Event types that are not API routes (a scheduled billing run); anything else is refused.
const NON_API_EVENT_TYPES: &[&str] = &["Schedule", "ScheduleV2"];

struct Template {
    root: Value,
}

impl Template {
    fn load() -> Template {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra/template.yaml");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let root = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
        Template { root }
    }

    fn resources(&self) -> &Mapping {
        self.root["Resources"].as_mapping().expect("Resources is a mapping")
    }

    fn resources_of_type(&self, kind: &str) -> Vec<(&str, &Value)> {
        self.resources()
            .iter()
            .filter(|(_, r)| r["Type"].as_str() == Some(kind))
            .map(|(id, r)| (id.as_str().expect("logical ids are strings"), r))
            .collect()
    }

    fn only_resource_of_type(&self, kind: &str) -> (&str, &Value) {
        let found = self.resources_of_type(kind);
        assert_eq!(found.len(), 1, "expected exactly one {kind}, found {}", found.len());
        found[0]
    }

    fn table(&self) -> (&str, &Value) {
        self.only_resource_of_type("AWS::DynamoDB::Table")
    }

    fn api(&self) -> (&str, &Value) {
        self.only_resource_of_type("AWS::Serverless::HttpApi")
    }

    fn functions(&self) -> BTreeMap<&str, &Value> {
        self.resources_of_type("AWS::Serverless::Function").into_iter().collect()
    }

    fn globals(&self) -> &Value {
        &self.root["Globals"]["Function"]
    }

    /// A function property as deployed: its own value, else the one in `Globals`.
    fn property<'a>(&'a self, function: &'a Value, name: &str) -> &'a Value {
        match &function["Properties"][name] {
            Value::Null => &self.globals()[name],
            own => own,
        }
    }

    /// Environment variables as deployed: `Globals` merged with the function's own.
    fn environment(&self, function: &Value) -> BTreeMap<String, Value> {
        let mut vars = BTreeMap::new();
        for source in [&self.globals()["Environment"]["Variables"], &function["Properties"]["Environment"]["Variables"]]
        {
            if let Some(map) = source.as_mapping() {
                for (k, v) in map {
                    vars.insert(k.as_str().expect("variable names are strings").to_owned(), v.clone());
                }
            }
        }
        vars
    }
}

/// The target of `!Ref X` or `{Ref: X}`.
fn ref_target(value: &Value) -> Option<&str> {
    match value {
        Value::Tagged(tagged) if tagged.tag == "Ref" => tagged.value.as_str(),
        Value::Mapping(map) if map.len() == 1 => map.get("Ref").and_then(Value::as_str),
        _ => None,
    }
}

/// `!GetAtt X.Arn`, `{Fn::GetAtt: [X, Arn]}` or `{Fn::GetAtt: X.Arn}`, as "X.Arn".
fn get_att(value: &Value) -> Option<String> {
    let inner = match value {
        Value::Tagged(tagged) if tagged.tag == "GetAtt" => &tagged.value,
        Value::Mapping(map) if map.len() == 1 => map.get("Fn::GetAtt")?,
        _ => return None,
    };
    match inner {
        Value::String(s) => Some(s.clone()),
        Value::Sequence(parts) => {
            let parts: Option<Vec<&str>> = parts.iter().map(Value::as_str).collect();
            Some(parts?.join("."))
        }
        _ => None,
    }
}

/// The string of `!Sub "..."` or `{Fn::Sub: "..."}`.
fn sub_text(value: &Value) -> Option<&str> {
    match value {
        Value::Tagged(tagged) if tagged.tag == "Sub" => tagged.value.as_str(),
        Value::Mapping(map) if map.len() == 1 => map.get("Fn::Sub").and_then(Value::as_str),
        _ => None,
    }
}

fn as_list(value: &Value) -> Vec<&Value> {
    match value {
        Value::Sequence(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

fn strings(value: &Value) -> BTreeSet<String> {
    as_list(value)
        .into_iter()
        .map(|v| v.as_str().unwrap_or_else(|| panic!("expected a string, got {v:?}")).to_owned())
        .collect()
}

/// `[(AttributeName, KeyType)]` of a KeySchema.
fn key_schema(value: &Value) -> Vec<(String, String)> {
    as_list(value)
        .into_iter()
        .map(|k| {
            (
                k["AttributeName"].as_str().expect("AttributeName").to_owned(),
                k["KeyType"].as_str().expect("KeyType").to_owned(),
            )
        })
        .collect()
}

fn hash_range(partition: &str, sort: &str) -> Vec<(String, String)> {
    vec![(partition.to_owned(), "HASH".to_owned()), (sort.to_owned(), "RANGE".to_owned())]
}

#[test]
fn table_keys_indexes_and_ttl_match_shared_table() {
    let template = Template::load();
    let (_, table) = template.table();
    let props = &table["Properties"];

    assert_eq!(key_schema(&props["KeySchema"]), hash_range(PARTITION_KEY, SORT_KEY), "table key schema");

    let definitions: Vec<(String, String)> = as_list(&props["AttributeDefinitions"])
        .into_iter()
        .map(|d| {
            (
                d["AttributeName"].as_str().expect("AttributeName").to_owned(),
                d["AttributeType"].as_str().expect("AttributeType").to_owned(),
            )
        })
        .collect();
    let declared: BTreeSet<&str> = definitions.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(declared.len(), definitions.len(), "an attribute is defined twice: {definitions:?}");
    assert_eq!(declared, key_attributes().into_iter().collect(), "attribute definitions");
    for (name, kind) in &definitions {
        assert_eq!(kind, "S", "key attribute {name} must be a string");
    }

    let indexes: BTreeMap<&str, &Value> = as_list(&props["GlobalSecondaryIndexes"])
        .into_iter()
        .map(|i| (i["IndexName"].as_str().expect("IndexName"), i))
        .collect();
    assert_eq!(
        indexes.keys().copied().collect::<BTreeSet<_>>(),
        INDEXES.iter().map(|i| i.name).collect::<BTreeSet<_>>(),
        "global secondary index names"
    );
    for expected in INDEXES {
        let index = indexes[expected.name];
        assert_eq!(
            key_schema(&index["KeySchema"]),
            hash_range(expected.partition_key, expected.sort_key),
            "key schema of index {}",
            expected.name
        );
        assert_eq!(index["Projection"]["ProjectionType"].as_str(), Some("ALL"), "projection of {}", expected.name);
    }
    assert!(props["LocalSecondaryIndexes"].is_null(), "shared::table declares no local indexes");

    let ttl = &props["TimeToLiveSpecification"];
    assert_eq!(ttl["AttributeName"].as_str(), Some(TTL_ATTRIBUTE), "TTL attribute");
    assert_eq!(ttl["Enabled"].as_bool(), Some(true), "TTL enabled");
}

#[test]
fn table_is_on_demand_encrypted_recoverable_and_retained() {
    let template = Template::load();
    let (_, table) = template.table();
    let props = &table["Properties"];
    assert_eq!(props["BillingMode"].as_str(), Some("PAY_PER_REQUEST"));
    assert_eq!(props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(), Some(true));
    assert_eq!(props["DeletionProtectionEnabled"].as_bool(), Some(true));
    assert_eq!(props["SSESpecification"]["SSEEnabled"].as_bool(), Some(true));
    assert_eq!(table["DeletionPolicy"].as_str(), Some("Retain"));
    assert_eq!(table["UpdateReplacePolicy"].as_str(), Some("Retain"));
}

#[test]
fn every_function_is_listed_and_built_from_its_crate() {
    let template = Template::load();
    let functions = template.functions();
    assert_eq!(
        functions.keys().copied().collect::<BTreeSet<_>>(),
        FUNCTIONS.iter().map(|f| f.logical_id).collect::<BTreeSet<_>>(),
        "functions in the template vs FUNCTIONS in this test"
    );
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let budget = shared::api::Settings::default().request_budget;
    for expected in FUNCTIONS {
        let function = functions[expected.logical_id];
        let id = expected.logical_id;
        // `sam build` runs `make build-<LogicalId>` at the workspace root, in place (not on a copy of target/).
        assert_eq!(function["Metadata"]["BuildMethod"].as_str(), Some("makefile"), "{id} build method");
        // Read by dev/gateway.mjs (which binary serves a route) and by the Makefile check below.
        assert_eq!(function["Metadata"]["BuildProperties"]["Binary"].as_str(), Some(expected.binary), "{id} binary");
        assert!(
            workspace.join("functions").join(expected.binary).join("Cargo.toml").is_file(),
            "{id}: no crate functions/{}",
            expected.binary
        );
        // The workspace root, relative to infra/: its Makefile copies target/lambda/<Binary>/bootstrap.
        assert_eq!(template.property(function, "CodeUri").as_str(), Some("../"), "{id} CodeUri");
        assert_eq!(template.property(function, "Runtime").as_str(), Some("provided.al2023"), "{id} runtime");
        assert_eq!(template.property(function, "Handler").as_str(), Some("bootstrap"), "{id} handler");
        assert_eq!(strings(template.property(function, "Architectures")), BTreeSet::from(["arm64".to_owned()]));
        let timeout = template.property(function, "Timeout").as_u64().expect("a numeric Timeout");
        assert!(timeout > budget.as_secs(), "{id}: Timeout {timeout}s must exceed the {budget:?} request budget");

        let logging = template.property(function, "LoggingConfig");
        assert_eq!(logging["LogFormat"].as_str(), Some("JSON"), "{id} log format");
        let group = ref_target(&logging["LogGroup"]).unwrap_or_else(|| panic!("{id}: LogGroup must !Ref a log group"));
        let group = &template.resources()[group];
        assert_eq!(group["Type"].as_str(), Some("AWS::Logs::LogGroup"), "{id} log group type");
        assert!(!group["Properties"]["RetentionInDays"].is_null(), "{id}: log group without retention");
    }
}

/// `(action, "table" or "index/<name>", partition key pattern)`: one thing a policy allows.
type Allowed = (String, String, String);

/// The `dynamodb:LeadingKeys` patterns of a statement: its only condition must be
/// `ForAllValues:StringLike` on them (`ForAnyValue` would let one BatchGetItem reach any other key).
fn leading_keys(id: &str, statement: &Value) -> BTreeSet<String> {
    let condition = statement["Condition"]
        .as_mapping()
        .unwrap_or_else(|| panic!("{id}: statement without a dynamodb:LeadingKeys condition: {statement:?}"));
    let operators: Vec<&str> = condition.keys().map(|k| k.as_str().unwrap_or_default()).collect();
    assert_eq!(operators, ["ForAllValues:StringLike"], "{id}: the condition must be ForAllValues:StringLike only");
    let keys = condition["ForAllValues:StringLike"].as_mapping().expect("a mapping of condition keys");
    assert_eq!(
        keys.keys().map(|k| k.as_str().unwrap_or_default()).collect::<Vec<_>>(),
        ["dynamodb:LeadingKeys"],
        "{id}: the condition must be on dynamodb:LeadingKeys only"
    );
    let patterns = strings(&keys["dynamodb:LeadingKeys"]);
    assert!(!patterns.is_empty(), "{id}: empty dynamodb:LeadingKeys");
    patterns
}

/// What FUNCTIONS says a function may do, item by item.
fn expected_allowed(function: &ExpectedFunction) -> BTreeSet<Allowed> {
    let mut allowed = BTreeSet::new();
    for grant in function.grants {
        let resources: Vec<String> = match grant.on {
            On::Table => vec!["table".to_owned()],
            On::Indexes(names) => names
                .iter()
                .map(|name| {
                    assert!(INDEXES.iter().any(|i| i.name == *name), "{name} is not an index of shared::table");
                    format!("index/{name}")
                })
                .collect(),
        };
        for action in grant.actions {
            for resource in &resources {
                for key in grant.keys {
                    allowed.insert(((*action).to_owned(), resource.clone(), (*key).to_owned()));
                }
            }
        }
    }
    allowed
}

/// `publish-events`' statements, each exactly one of: the stream reads on the table's stream, `events:PutEvents`
/// on the bus, `sqs:SendMessage` to the failure queue (docs/events.md). `None` for anything else.
fn publish_events_statement(statement: &Value) -> Option<()> {
    let actions = strings(&statement["Action"]);
    let resource = get_att(&statement["Resource"])?;
    let expected: &[&str] = match resource.as_str() {
        "Table.StreamArn" => {
            &["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams"]
        }
        "EventBus.Arn" => &["events:PutEvents"],
        "AsyncFailureQueue.Arn" => &["sqs:SendMessage"],
        _ => return None,
    };
    let wanted: BTreeSet<String> = expected.iter().map(|a| (*a).to_owned()).collect();
    (actions == wanted && statement["Effect"].as_str() == Some("Allow") && statement["Condition"].is_null())
        .then_some(())
}

#[test]
fn function_policies_allow_only_what_the_code_does_on_its_own_keys() {
    let template = Template::load();
    let (table_id, _) = template.table();
    let table_arn = format!("{table_id}.Arn");
    let index_prefix = format!("${{{table_id}.Arn}}/index/");
    let index_names: BTreeSet<&str> = INDEXES.iter().map(|i| i.name).collect();
    assert!(template.globals()["Policies"].is_null() && template.globals()["Role"].is_null(), "no global policies");

    let functions = template.functions();
    let mut secrets_read = BTreeSet::new();
    for expected in FUNCTIONS {
        let id = expected.logical_id;
        let props = &functions[id]["Properties"];
        assert!(props["Role"].is_null(), "{id}: a custom Role would escape this check; use Policies");
        let mut allowed: BTreeSet<Allowed> = BTreeSet::new();
        for policy in as_list(&props["Policies"]) {
            // Only inline documents: managed policy names and SAM policy templates (DynamoDBCrudPolicy, ...) are refused.
            let statements = policy["Statement"]
                .as_sequence()
                .unwrap_or_else(|| panic!("{id}: only inline policy documents are allowed, got {policy:?}"));
            for statement in statements {
                assert_eq!(statement["Effect"].as_str(), Some("Allow"), "{id}: statement effect");
                if strings(&statement["Action"]).iter().any(|a| a.starts_with("secretsmanager:")) {
                    assert_eq!(
                        strings(&statement["Action"]),
                        BTreeSet::from(["secretsmanager:GetSecretValue".to_owned()])
                    );
                    let secrets: Vec<_> = as_list(&statement["Resource"]).into_iter().map(ref_target).collect();
                    for secret in secrets {
                        let secret = secret.unwrap_or_else(|| panic!("{id}: a secret by !Ref only"));
                        assert!(SECRET_READERS.contains(&(id, secret)), "{id} may not read {secret}");
                        secrets_read.insert((id, secret.to_owned()));
                    }
                    continue;
                }
                if id == "PublishEventsFunction" {
                    assert_eq!(publish_events_statement(statement), Some(()), "{id}: {statement:?}");
                    continue;
                }
                assert!(
                    statement["NotAction"].is_null() && statement["NotResource"].is_null(),
                    "{id}: NotAction/NotResource"
                );
                let actions = strings(&statement["Action"]);
                assert!(!actions.is_empty(), "{id}: statement without actions");
                for action in &actions {
                    assert!(!action.contains('*'), "{id}: wildcard action {action}");
                }
                let resources: Vec<String> = as_list(&statement["Resource"])
                    .into_iter()
                    .map(|resource| {
                        if let Some(att) = get_att(resource) {
                            assert_eq!(att, table_arn, "{id}: resource must be the table");
                            "table".to_owned()
                        } else if let Some(name) = sub_text(resource).and_then(|t| t.strip_prefix(&index_prefix)) {
                            assert!(index_names.contains(name), "{id}: unknown index {name}");
                            format!("index/{name}")
                        } else {
                            panic!("{id}: resource must be the table's or an index's ARN, got {resource:?}");
                        }
                    })
                    .collect();
                assert!(!resources.is_empty(), "{id}: statement without resources");
                let keys = if statement["Condition"].is_null()
                    && actions.iter().all(|a| WHOLE_TABLE_READS.contains(&a.as_str()))
                    && resources == ["table"]
                {
                    BTreeSet::from([WHOLE_TABLE.to_owned()])
                } else {
                    leading_keys(id, statement)
                };
                for action in &actions {
                    for resource in &resources {
                        for key in &keys {
                            allowed.insert((action.clone(), resource.clone(), key.clone()));
                        }
                    }
                }
            }
        }

        let wanted = expected_allowed(expected);
        let listed_keys: BTreeSet<&str> = wanted.iter().map(|(_, _, key)| key.as_str()).collect();
        let write_keys: BTreeSet<&str> = wanted
            .iter()
            .filter(|(action, _, _)| WRITE_ACTIONS.contains(&action.as_str()))
            .map(|(_, _, key)| key.as_str())
            .collect();
        for (action, resource, key) in &allowed {
            assert!(
                listed_keys.contains(key.as_str()),
                "{id}: {action} on {resource} allows {key}, a key FUNCTIONS does not list"
            );
            if WRITE_ACTIONS.contains(&action.as_str()) {
                assert!(
                    write_keys.contains(key.as_str()),
                    "{id}: {action} allowed on {key}, which FUNCTIONS lists for reads only"
                );
            }
        }
        assert_eq!(allowed, wanted, "{id}: (action, resource, partition key) the policy allows vs what its code does");
    }
    let wanted: BTreeSet<_> = SECRET_READERS.iter().map(|(f, s)| (*f, (*s).to_owned())).collect();
    assert_eq!(secrets_read, wanted, "each Stripe secret is read by its one function");
    for (id, resource) in template.resources() {
        if resource["Type"] == "AWS::SecretsManager::Secret" {
            let id = id.as_str().unwrap_or_default();
            assert!(
                SECRET_READERS.iter().any(|(_, s)| *s == id) || id == CURSOR_KEY_SECRET,
                "{id}: a secret nobody is meant to read"
            );
        }
    }
}

#[test]
fn every_route_requires_the_jwt_authorizer() {
    let template = Template::load();
    let (api_id, api) = template.api();
    let auth = &api["Properties"]["Auth"];
    let default = auth["DefaultAuthorizer"].as_str().expect("the HTTP API needs a DefaultAuthorizer");
    assert_ne!(default.to_ascii_uppercase(), "NONE");
    let authorizer = &auth["Authorizers"][default];
    assert_eq!(authorizer["IdentitySource"].as_str(), Some("$request.header.Authorization"));
    assert_eq!(ref_target(&authorizer["JwtConfiguration"]["issuer"]), Some("JwtIssuer"), "JWT issuer");
    assert_eq!(ref_target(&authorizer["JwtConfiguration"]["audience"]), Some("JwtAudience"), "JWT audience");
    for (id, resource) in template.resources() {
        let kind = resource["Type"].as_str().unwrap_or_default();
        // Anything else that would expose a function or a route outside the one HTTP API.
        assert!(
            !(kind.starts_with("AWS::ApiGateway")
                || kind == "AWS::Serverless::Api"
                || kind == "AWS::Lambda::Url"
                || kind == "AWS::Lambda::Permission"),
            "{id:?}: {kind} is not allowed"
        );
    }

    let functions = template.functions();
    let mut routes = BTreeSet::new();
    for expected in FUNCTIONS {
        let id = expected.logical_id;
        let props = &functions[id]["Properties"];
        assert!(template.property(functions[id], "FunctionUrlConfig").is_null(), "{id}: function URL");
        for (name, event) in props["Events"].as_mapping().into_iter().flatten() {
            let kind = event["Type"].as_str().unwrap_or_default();
            if NON_API_EVENT_TYPES.contains(&kind) {
                continue;
            }
            assert_eq!(kind, "HttpApi", "{id}.{name:?}: only HttpApi events may reach a function");
            let event = &event["Properties"];
            assert_eq!(ref_target(&event["ApiId"]), Some(api_id), "{id}.{name:?}: must be on the one HTTP API");
            assert_eq!(event["PayloadFormatVersion"].as_str(), Some("2.0"), "{id}.{name:?}: payload format");
            match &event["Auth"]["Authorizer"] {
                Value::Null => {}
                Value::String(s) if s == "NONE" => {
                    let route =
                        (event["Method"].as_str().unwrap_or_default(), event["Path"].as_str().unwrap_or_default());
                    assert!(
                        UNAUTHENTICATED_ROUTES.contains(&route),
                        "{id}.{name:?}: only the Stripe webhook has no authorizer"
                    );
                }
                Value::String(s) => assert_eq!(s, default, "{id}.{name:?}: route authorizer"),
                other => panic!("{id}.{name:?}: route authorizer {other:?}"),
            }
            routes.insert((
                event["Method"].as_str().expect("Method").to_ascii_uppercase(),
                event["Path"].as_str().expect("Path").to_owned(),
                id,
            ));
        }
    }
    let wanted: BTreeSet<_> = FUNCTIONS
        .iter()
        .flat_map(|f| f.routes.iter().map(|(method, path)| ((*method).to_owned(), (*path).to_owned(), f.logical_id)))
        .collect();
    assert_eq!(routes, wanted, "routes");
}

#[test]
fn cors_allows_only_the_dashboard_origin() {
    let template = Template::load();
    let (_, api) = template.api();
    let cors = &api["Properties"]["CorsConfiguration"];
    let origins = as_list(&cors["AllowOrigins"]);
    assert_eq!(origins.len(), 1, "exactly one allowed origin");
    assert_eq!(ref_target(origins[0]), Some("DashboardOrigin"), "the allowed origin is the DashboardOrigin parameter");
    let parameter = &template.root["Parameters"]["DashboardOrigin"];
    // Anchored, with a literal https:// and no alternative: the dashboard's tokens never cross plain HTTP.
    let pattern = parameter["AllowedPattern"].as_str().unwrap_or_default();
    assert!(
        pattern.starts_with("^https://") && pattern.ends_with('$') && !pattern.contains('|'),
        "DashboardOrigin must only accept https:// origins, got {pattern:?}"
    );
    assert!(!parameter["Default"].as_str().unwrap_or_default().contains('*'), "no wildcard default origin");
    assert_ne!(cors["AllowCredentials"].as_bool(), Some(true), "bearer tokens need no credentialed CORS");
    let upper = |v: &Value| strings(v).into_iter().map(|s| s.to_ascii_uppercase()).collect::<BTreeSet<_>>();
    let lower = |v: &Value| strings(v).into_iter().map(|s| s.to_ascii_lowercase()).collect::<BTreeSet<_>>();
    assert_eq!(upper(&cors["AllowMethods"]), BTreeSet::from(["GET", "OPTIONS", "POST", "PUT"].map(String::from)));
    assert_eq!(
        lower(&cors["AllowHeaders"]),
        BTreeSet::from(["authorization", "content-type", "idempotency-key", "if-match", "prefer"].map(String::from))
    );
}

#[test]
fn account_claim_must_be_a_custom_attribute() {
    let template = Template::load();
    let parameter = &template.root["Parameters"]["AccountIdClaim"];
    // Anchored, with a literal custom: and no alternative: no standard attribute a user can edit (email,
    // preferred_username, name, ...) can ever be the tenant claim.
    let pattern = parameter["AllowedPattern"].as_str().unwrap_or_default();
    assert!(
        pattern.starts_with("^custom:") && pattern.ends_with('$') && !pattern.contains('|'),
        "AccountIdClaim must only accept custom:<name>, got {pattern:?}"
    );
    assert!(parameter["Default"].as_str().is_some_and(|d| d.starts_with("custom:")), "AccountIdClaim default");
}

#[test]
fn no_function_has_a_local_or_bypass_setting() {
    let template = Template::load();
    let (table_id, _) = template.table();
    let claim_default = template.root["Parameters"]["AccountIdClaim"]["Default"].as_str();
    assert_eq!(claim_default, Some(shared::api::Settings::default().account_claim.as_str()), "claim default");
    for (id, function) in template.functions() {
        let vars = template.environment(function);
        for name in vars.keys() {
            let upper = name.to_ascii_uppercase();
            for word in ["DEV", "LOCAL", "BYPASS", "INSECURE"] {
                assert!(!upper.contains(word), "{id}: environment variable {name} looks like a dev/bypass switch");
            }
            // A local endpoint (dynoxide) or any endpoint override belongs to dev only.
            assert!(!upper.starts_with("AWS_ENDPOINT_URL"), "{id}: {name} overrides an AWS endpoint");
            // The local stack's Stripe settings (scripts/local-stack.sh): a secret in plain text instead of its
            // Secrets Manager ARN, and localstripe's URL instead of Stripe's.
            assert!(!LOCAL_ONLY_STRIPE_VARIABLES.contains(&name.as_str()), "{id}: {name} is the local stack's only");
        }
        assert_eq!(vars.get("TABLE_NAME").and_then(ref_target), Some(table_id), "{id}: TABLE_NAME");
        assert_eq!(vars.get("ACCOUNT_ID_CLAIM").and_then(ref_target), Some("AccountIdClaim"), "{id}: ACCOUNT_ID_CLAIM");
    }
}

/// What each function's `main` hands `shared::runtime::start` (besides the common settings): its binary, the
/// text its `main.rs` must hold (so this list cannot drift from the mains) and the same parser.
type SettingsPart = fn(shared::settings::Lookup) -> Result<(), shared::settings::SettingsError>;
const SETTINGS_PARTS: &[(&str, &str, SettingsPart)] = &[
    ("get-pricing", "api::Settings::from_vars(shared::api::Cursors::None", api_unsigned),
    ("purchase-credits", "api::Settings::from_vars(shared::api::Cursors::None", api_unsigned),
    ("get-balances", "api::Settings::from_vars(shared::api::Cursors::None", api_unsigned),
    ("agency-write", "api::Settings::from_vars(shared::api::Cursors::None", api_unsigned),
    ("list-purchases", "api::Settings::from_vars(shared::api::Cursors::Signed", api_signed),
    ("list-statements", "api::Settings::from_vars(shared::api::Cursors::Signed", api_signed),
    ("agency-read", "api::Settings::from_vars(shared::api::Cursors::Signed", api_signed),
    ("billing-run", "start(shared::billing::BillingSettings::from_vars)", |var| {
        shared::billing::BillingSettings::from_vars(var).map(drop)
    }),
    ("collect-payments", "start(shared::runtime::collector_settings)", |var| {
        shared::runtime::collector_settings(var).map(drop)
    }),
    ("stripe-webhook", "start(shared::settings::SecretSource::stripe_webhook_secret)", |var| {
        shared::settings::SecretSource::stripe_webhook_secret(var).map(drop)
    }),
    ("reconcile-run", "start(shared::settings::ReconcileSettings::from_vars)", |var| {
        shared::settings::ReconcileSettings::from_vars(var).map(drop)
    }),
    ("consume-credits", "start(shared::consumption::ConsumptionSettings::from_vars)", |var| {
        shared::consumption::ConsumptionSettings::from_vars(var).map(drop)
    }),
    ("provision-account", "start(shared::settings::nothing_more)", shared::settings::nothing_more),
    ("record-payment", "start(shared::settings::nothing_more)", shared::settings::nothing_more),
    ("statement-sweep", "start(shared::settings::nothing_more)", shared::settings::nothing_more),
    ("publish-events", "start(shared::events::PublishSettings::from_vars)", |var| {
        shared::events::PublishSettings::from_vars(var).map(drop)
    }),
];

fn api_unsigned(var: shared::settings::Lookup) -> Result<(), shared::settings::SettingsError> {
    shared::api::Settings::from_vars(shared::api::Cursors::None, var).map(drop)
}

fn api_signed(var: shared::settings::Lookup) -> Result<(), shared::settings::SettingsError> {
    shared::api::Settings::from_vars(shared::api::Cursors::Signed, var).map(drop)
}

/// A variable's value as CloudFormation would resolve it, close enough for the code's parsers: a literal as
/// written, a parameter's default, a resource's name or ARN, a `!Sub` with its references filled in.
fn deployed_value(template: &Template, value: &Value) -> String {
    if let Some(target) = ref_target(value) {
        if let Some(default) = template.root["Parameters"][target]["Default"].as_str() {
            return default.to_owned();
        }
        let resource = &template.resources()[target];
        return match resource["Type"].as_str() {
            Some("AWS::SecretsManager::Secret") => {
                format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{target}")
            }
            _ => format!("stack-{target}-ABC123"),
        };
    }
    if let Some(text) = sub_text(value) {
        return text.replace("${AWS::StackName}", "stack").replace("${", "").replace('}', "");
    }
    // Checked last: serde_yaml reads the string inside a tag (`!Sub "..."`) as a plain one too.
    value.as_str().unwrap_or_else(|| panic!("an environment value CloudFormation resolves: {value:?}")).to_owned()
}

/// Each function reads its settings the way its `main` does, from the environment the template gives it: every
/// value parses (so a variable without a default is set, and the template's values are ones the code accepts),
/// and every variable the template sets for a function is one it reads (a misspelt name would be ignored).
#[test]
fn every_function_accepts_its_deployed_settings_and_reads_every_variable_it_is_given() {
    let template = Template::load();
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let listed: BTreeSet<_> = SETTINGS_PARTS.iter().map(|(binary, _, _)| *binary).collect();
    let all: BTreeSet<_> = FUNCTIONS.iter().map(|f| f.binary).collect();
    assert_eq!(listed, all, "every function's settings part is listed once");
    let mut read_anywhere = BTreeSet::new();
    for expected in FUNCTIONS {
        let id = expected.logical_id;
        let (_, in_main, part) = SETTINGS_PARTS.iter().find(|(b, _, _)| *b == expected.binary).unwrap();
        let main = workspace.join("functions").join(expected.binary).join("src/main.rs");
        let main = std::fs::read_to_string(&main).unwrap_or_else(|e| panic!("{}: {e}", main.display()));
        assert!(main.contains(in_main), "{id}: main.rs reads its settings with {in_main}");
        let environment: BTreeMap<String, String> = template
            .environment(template.functions()[id])
            .iter()
            .map(|(k, v)| (k.clone(), deployed_value(&template, v)))
            .collect();
        let read = std::cell::RefCell::new(BTreeSet::new());
        let lookup = |name: &str| {
            read.borrow_mut().insert(name.to_owned());
            environment.get(name).cloned()
        };
        if let Err(error) = shared::settings::from_vars(&lookup, *part) {
            panic!("{id}: its deployed environment does not start it: {error}");
        }
        let own = strings_keys(&template.functions()[id]["Properties"]["Environment"]["Variables"]);
        let unread: Vec<_> = own.iter().filter(|name| !read.borrow().contains(*name)).collect();
        assert!(unread.is_empty(), "{id}: the template sets {unread:?}, which its code never reads");
        read_anywhere.extend(read.into_inner());
    }
    // `Globals` gives every function the same variables (the claims too, which only the API functions read):
    // each is read by some function.
    let globals = strings_keys(&template.globals()["Environment"]["Variables"]);
    let unread: Vec<_> = globals.difference(&read_anywhere).collect();
    assert!(unread.is_empty(), "Globals set {unread:?}, which no function reads");
}

fn strings_keys(map: &Value) -> BTreeSet<String> {
    map.as_mapping()
        .into_iter()
        .flatten()
        .map(|(k, _)| k.as_str().expect("variable names are strings").to_owned())
        .collect()
}

/// The cursor key: exactly the functions whose `main` starts with `Cursors::Signed` (they serve lists and stop at
/// cold start without it) get `CURSOR_SIGNING_KEY`, resolved at deploy from the one generated secret; the
/// others get nothing (least privilege). No function reads the secret at run time, so none has a policy on it.
#[test]
fn the_list_functions_and_only_they_get_the_generated_cursor_key() {
    let template = Template::load();
    let secret_id = CURSOR_KEY_SECRET;
    let secret = &template.resources()[secret_id];
    assert_eq!(secret["Type"], "AWS::SecretsManager::Secret");
    let generated = &secret["Properties"]["GenerateSecretString"];
    assert!(
        generated["PasswordLength"].as_u64().is_some_and(|n| n as usize >= shared::api::cursor::MIN_KEY_BYTES),
        "{secret_id}: a generated key of at least {} characters",
        shared::api::cursor::MIN_KEY_BYTES
    );
    assert!(secret["Properties"]["SecretString"].is_null(), "{secret_id}: generated, never written in the template");
    let expected_value = format!("{{{{resolve:secretsmanager:${{{secret_id}}}:SecretString}}}}");
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut signed = Vec::new();
    for expected in FUNCTIONS {
        let id = expected.logical_id;
        let main = workspace.join("functions").join(expected.binary).join("src/main.rs");
        let main = std::fs::read_to_string(&main).unwrap_or_else(|e| panic!("{}: {e}", main.display()));
        let vars = template.environment(template.functions()[id]);
        let key = vars.get(shared::api::cursor::CURSOR_KEY_VARIABLE);
        if main.contains("Cursors::Signed") {
            signed.push(expected.binary);
            assert_eq!(key.and_then(sub_text), Some(expected_value.as_str()), "{id}: CURSOR_SIGNING_KEY");
        } else {
            assert!(key.is_none(), "{id} hands out no cursor: it must not hold the cursor key");
        }
        let policies = serde_yaml::to_string(&template.functions()[id]["Properties"]["Policies"]).unwrap();
        assert!(!policies.contains(CURSOR_KEY_SECRET), "{id}: no run-time access to the cursor key's secret");
    }
    assert_eq!(signed, ["list-purchases", "agency-read", "list-statements"], "the functions serving lists");
    assert!(
        template.globals()["Environment"]["Variables"].get(shared::api::cursor::CURSOR_KEY_VARIABLE).is_none(),
        "never in Globals: every function would get it"
    );
}

/// The README says when each daily schedule runs; the template decides. `cron(0 H * * ? *)` in UTC.
#[test]
fn the_readme_states_the_daily_schedules_the_template_sets() {
    let template = Template::load();
    // The README and the docs/ it links to, read as one text.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs")).unwrap().map(|e| e.unwrap().path()).collect();
    docs.sort();
    for doc in docs {
        readme.push_str(&std::fs::read_to_string(doc).unwrap());
    }
    for (id, readme_says) in [
        ("StatementSweepFunction", "**`statement-sweep`** (EventBridge Scheduler, {time} UTC daily)"),
        ("ReconcileRunFunction", "runs daily at {time} UTC as the `reconcile-run` function"),
    ] {
        let schedule = &template.functions()[id]["Properties"]["Events"]["Daily"]["Properties"];
        assert_eq!(schedule["ScheduleExpressionTimezone"].as_str(), Some("UTC"), "{id}");
        let cron = schedule["ScheduleExpression"].as_str().expect("a schedule expression");
        let hour: u32 = cron
            .strip_prefix("cron(0 ")
            .and_then(|rest| rest.strip_suffix(" * * ? *)"))
            .and_then(|h| h.parse().ok())
            .unwrap_or_else(|| panic!("{id}: {cron} is not daily on the hour"));
        let expected = readme_says.replace("{time}", &format!("{hour:02}:00"));
        assert!(readme.contains(&expected), "{id} runs at {hour:02}:00 UTC; the README must say {expected:?}");
    }
}

// ------------------------------------------------------------------------------------------------------------
// Operations: alarms, failure destinations, metrics, limits, build

/// `!If [CreateAlarmTopic, !Ref AlarmTopic, !Ref AlarmTopicArn]`: the one topic every alarm notifies.
fn is_alarm_topic(value: &Value) -> bool {
    let Value::Tagged(tagged) = value else { return false };
    let parts = as_list(&tagged.value);
    tagged.tag == "If"
        && parts.len() == 3
        && parts[0].as_str() == Some("CreateAlarmTopic")
        && ref_target(parts[1]) == Some("AlarmTopic")
        && ref_target(parts[2]) == Some("AlarmTopicArn")
}

/// `(namespace, metric, dimensions as (name, value))` of an alarm's single metric or each of its MetricStats.
/// (namespace, metric name, dimensions) of an alarm's metric.
type AlarmMetric = (String, String, Vec<(String, Value)>);

fn alarm_metrics(alarm: &Value) -> Vec<AlarmMetric> {
    let props = &alarm["Properties"];
    let one = |metric: &Value| {
        let namespace = match &metric["Namespace"] {
            Value::String(s) => s.clone(),
            other => sub_text(other).map(str::to_owned).unwrap_or_else(|| format!("{other:?}")),
        };
        let dimensions = as_list(&metric["Dimensions"])
            .into_iter()
            .map(|d| (d["Name"].as_str().expect("dimension Name").to_owned(), d["Value"].clone()))
            .collect();
        (namespace, metric["MetricName"].as_str().expect("MetricName").to_owned(), dimensions)
    };
    if props["Metrics"].is_null() {
        vec![one(props)]
    } else {
        as_list(&props["Metrics"])
            .into_iter()
            .filter(|m| !m["MetricStat"].is_null())
            .map(|m| one(&m["MetricStat"]["Metric"]))
            .collect()
    }
}

/// The alarms watching `metric` in `namespace` with a dimension `name` whose value satisfies `matches`.
fn alarms_on<'a>(
    template: &'a Template,
    namespace: &str,
    metric: &str,
    name: &str,
    matches: impl Fn(&Value) -> bool,
) -> Vec<&'a str> {
    template
        .resources_of_type("AWS::CloudWatch::Alarm")
        .into_iter()
        .filter(|(_, alarm)| {
            alarm_metrics(alarm).iter().any(|(ns, m, dims)| {
                ns == namespace && m == metric && dims.iter().any(|(n, v)| n == name && matches(v))
            })
        })
        .map(|(id, _)| id)
        .collect()
}

#[test]
fn every_alarm_notifies_the_one_topic_and_says_what_to_do() {
    let template = Template::load();
    let alarms = template.resources_of_type("AWS::CloudWatch::Alarm");
    assert!(alarms.len() >= 9 + 2 * FUNCTIONS.len(), "expected the operations alarms, found {}", alarms.len());
    for (id, alarm) in alarms {
        let props = &alarm["Properties"];
        let actions = as_list(&props["AlarmActions"]);
        assert!(actions.len() == 1 && is_alarm_topic(actions[0]), "{id}: AlarmActions must be the alarm topic");
        let description = props["AlarmDescription"].as_str().unwrap_or_default();
        assert!(description.len() >= 80, "{id}: the description must say what happened and what to do");
    }
    let topic = &template.resources()["AlarmTopic"];
    assert_eq!(topic["Condition"].as_str(), Some("CreateAlarmTopic"));
    assert_eq!(template.root["Parameters"]["AlarmTopicArn"]["Default"].as_str(), Some(""));
    assert_eq!(template.root["Parameters"]["AlarmEmail"]["Default"].as_str(), Some(""));
}

#[test]
fn every_function_has_errors_and_throttles_alarms_and_a_log_group_with_retention() {
    let template = Template::load();
    for (id, function) in template.functions() {
        for metric in ["Errors", "Throttles"] {
            let alarms = alarms_on(&template, "AWS/Lambda", metric, "FunctionName", |v| ref_target(v) == Some(id));
            assert_eq!(alarms.len(), 1, "{id}: exactly one {metric} alarm, found {alarms:?}");
        }
        let logging = template.property(function, "LoggingConfig");
        let group = ref_target(&logging["LogGroup"]).unwrap_or_else(|| panic!("{id}: LogGroup must !Ref a log group"));
        let group = &template.resources()[group];
        assert_eq!(ref_target(&group["Properties"]["RetentionInDays"]), Some("LogRetentionDays"), "{id} retention");
        assert_eq!(template.property(function, "Tracing").as_str(), Some("Active"), "{id}: X-Ray active tracing");
        let namespace = &template.environment(function)["METRICS_NAMESPACE"];
        assert_eq!(sub_text(namespace), Some("OverageCredits/${AWS::StackName}"), "{id}: METRICS_NAMESPACE");
    }
}

/// An SQS queue encrypted at rest, by its logical id.
fn encrypted_queue<'a>(template: &'a Template, id: &str) -> &'a Value {
    let queue = &template.resources()[id];
    assert_eq!(queue["Type"].as_str(), Some("AWS::SQS::Queue"), "{id} must be an SQS queue");
    let props = &queue["Properties"];
    assert!(
        !props["KmsMasterKeyId"].is_null() || props["SqsManagedSseEnabled"].as_bool() == Some(true),
        "{id}: the queue must be encrypted"
    );
    queue
}

/// The logical id of `!GetAtt X.Arn`.
fn arn_of(value: &Value) -> String {
    let att = get_att(value).unwrap_or_else(|| panic!("expected !GetAtt <Queue>.Arn, got {value:?}"));
    att.strip_suffix(".Arn").unwrap_or_else(|| panic!("expected an .Arn, got {att}")).to_owned()
}

fn assert_messages_visible_alarm(template: &Template, queue: &str) {
    let alarms = alarms_on(template, "AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", |v| {
        get_att(v).as_deref() == Some(&format!("{queue}.QueueName"))
    });
    assert_eq!(alarms.len(), 1, "{queue}: one alarm on messages visible, found {alarms:?}");
    let props = &template.resources()[alarms[0]]["Properties"];
    assert_eq!(props["ComparisonOperator"].as_str(), Some("GreaterThanThreshold"), "{queue} alarm");
    assert_eq!(props["Threshold"].as_f64(), Some(0.0), "{queue} alarm: any message visible");
}

#[test]
fn every_asynchronous_invocation_has_failure_destinations_with_alarms() {
    let template = Template::load();
    let mut asynchronous = 0;
    for (id, function) in template.functions() {
        let events = function["Properties"]["Events"].as_mapping().cloned().unwrap_or_default();
        let schedules: Vec<&Value> =
            events.values().filter(|e| NON_API_EVENT_TYPES.contains(&e["Type"].as_str().unwrap_or_default())).collect();
        if schedules.is_empty() {
            continue; // invoked synchronously by the HTTP API only: a failure is the caller's answer
        }
        asynchronous += 1;
        let on_failure = &function["Properties"]["EventInvokeConfig"]["DestinationConfig"]["OnFailure"];
        assert_eq!(on_failure["Type"].as_str(), Some("SQS"), "{id}: an OnFailure destination for async invocations");
        let queue = arn_of(&on_failure["Destination"]);
        encrypted_queue(&template, &queue);
        assert_messages_visible_alarm(&template, &queue);
        for schedule in schedules {
            assert_eq!(schedule["Type"].as_str(), Some("ScheduleV2"), "{id}: EventBridge Scheduler (ScheduleV2)");
            let queue = arn_of(&schedule["Properties"]["DeadLetterConfig"]["Arn"]);
            encrypted_queue(&template, &queue);
            assert_messages_visible_alarm(&template, &queue);
        }
    }
    assert!(asynchronous >= 2, "statement-sweep and reconcile-run are scheduled");
}

#[test]
fn no_metric_dimension_names_an_id() {
    // Our metrics' dimensions are shared::metrics::DIMENSIONS (the EMF test checks what the code writes); none
    // of them is an id, and no alarm or dashboard reads our namespace by another dimension.
    for name in shared::metrics::DIMENSIONS {
        let lower = name.to_ascii_lowercase();
        assert!(!lower.ends_with("id") && !lower.contains("account") && !lower.contains("agency"), "{name}");
    }
    let template = Template::load();
    for (id, alarm) in template.resources_of_type("AWS::CloudWatch::Alarm") {
        for (namespace, metric, dims) in alarm_metrics(alarm) {
            if namespace.starts_with("OverageCredits") {
                for (name, _) in &dims {
                    assert!(shared::metrics::DIMENSIONS.contains(&name.as_str()), "{id}: {metric} by {name}");
                }
            }
        }
    }
    let dashboard = &template.only_resource_of_type("AWS::CloudWatch::Dashboard").1["Properties"]["DashboardBody"];
    let body = as_list(&match dashboard {
        Value::Tagged(t) => t.value.clone(),
        other => other.clone(),
    })[0]
        .as_str()
        .expect("DashboardBody is !Sub [text, vars]")
        .to_owned();
    for word in ["AccountId", "AgencyId", "PurchaseId", "RunId"] {
        assert!(!body.contains(word), "the dashboard reads a metric by {word}");
    }
}

#[test]
fn operational_alarms_watch_the_api_billing_reconcile_and_table() {
    let template = Template::load();
    let resources = template.resources();
    for id in [
        "ApiServerErrorRateAlarm",
        "BillingRunFailedAlarm",
        "BillingOverdueAlarm",
        "ReconcileDriftAlarm",
        "ReconcileMissingAlarm",
        "TableThrottledRequestsAlarm",
        "TableSystemErrorsAlarm",
    ] {
        assert_eq!(resources[id]["Type"].as_str(), Some("AWS::CloudWatch::Alarm"), "{id}");
    }
    let (api_id, _) = template.api();
    assert_eq!(alarms_on(&template, "AWS/ApiGateway", "5xx", "ApiId", |v| ref_target(v) == Some(api_id)).len(), 1);
    let (table_id, _) = template.table();
    for metric in ["ThrottledRequests", "SystemErrors"] {
        assert_eq!(
            alarms_on(&template, "AWS/DynamoDB", metric, "TableName", |v| ref_target(v) == Some(table_id)).len(),
            1,
            "{metric}"
        );
    }
    // The reconcile heartbeat: missing data is breaching (no check ran), unlike every other alarm.
    assert_eq!(resources["ReconcileMissingAlarm"]["Properties"]["TreatMissingData"].as_str(), Some("breaching"));
}

#[test]
fn the_api_is_throttled() {
    let template = Template::load();
    let (_, api) = template.api();
    let props = &api["Properties"];
    let default = &props["DefaultRouteSettings"];
    assert_eq!(ref_target(&default["ThrottlingBurstLimit"]), Some("ApiThrottlingBurstLimit"));
    assert_eq!(ref_target(&default["ThrottlingRateLimit"]), Some("ApiThrottlingRateLimit"));
    let routes: BTreeSet<String> =
        FUNCTIONS.iter().flat_map(|f| f.routes.iter().map(|(method, path)| format!("{method} {path}"))).collect();
    for (key, settings) in props["RouteSettings"].as_mapping().expect("RouteSettings") {
        let key = key.as_str().unwrap();
        assert!(routes.contains(key), "RouteSettings for {key}, which is no route");
        assert!(!settings["ThrottlingBurstLimit"].is_null() && !settings["ThrottlingRateLimit"].is_null(), "{key}");
    }
    assert!(props["RouteSettings"]["POST /accounts/{accountId}/credit-purchases"].is_mapping(), "purchase limits");
    for parameter in ["ApiThrottlingBurstLimit", "ApiThrottlingRateLimit"] {
        assert!(template.root["Parameters"][parameter]["Default"].as_u64().is_some_and(|d| d > 0), "{parameter}");
    }

    // The purchase route's bucket is one for every caller (an HTTP API has no per-caller limit): one client's
    // loop must leave most of it to the others, and the whole of it must stay under what one agency's line item
    // takes, since every purchase of an agency updates that one item (README, Operations: "Limits").
    const ONE_CLIENT_LOOP: u64 = 10; // req/s: a script or a retry loop of one client, as in issue 22
    const ONE_ITEM_TRANSACTIONAL_WRITES: u64 = 500; // 1,000 WCU per item, 2 per transactional write of <= 1 KB
    let parameter = |name: &str, field: &str| template.root["Parameters"][name][field].as_u64();
    let rate = parameter("PurchaseThrottlingRateLimit", "Default").expect("a purchase rate");
    let burst = parameter("PurchaseThrottlingBurstLimit", "Default").expect("a purchase burst");
    assert!(rate >= 10 * ONE_CLIENT_LOOP, "one client's loop takes more than a tenth of the purchase bucket ({rate})");
    assert!(burst >= rate, "a burst below the rate refuses a second's worth of purchases at once");
    assert_eq!(
        parameter("PurchaseThrottlingRateLimit", "MaxValue"),
        Some(ONE_ITEM_TRANSACTIONAL_WRITES),
        "the purchase rate must not be set above what one agency's line item takes"
    );
    assert!(rate <= ONE_ITEM_TRANSACTIONAL_WRITES);
}

#[test]
fn the_makefile_builds_every_function() {
    let template = Template::load();
    // `sam build` must run the targets in place (samconfig.toml), not on a copy of the workspace and its target/.
    let samconfig =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../samconfig.toml")).unwrap();
    assert!(samconfig.contains("\nbuild_in_source = true\n"), "samconfig.toml: build_in_source = true");
    let makefile = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../Makefile")).unwrap();
    for (id, function) in template.functions() {
        let binary = function["Metadata"]["BuildProperties"]["Binary"].as_str().unwrap();
        let target = format!("build-{id}:\n\t$(call lambda_artifact,{binary})\n");
        assert!(makefile.contains(&target), "Makefile lacks:\n{target}");
    }
}

#[test]
fn every_checkov_skip_has_a_reason() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra/checkov.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let config: Value = serde_yaml::from_str(&text).unwrap();
    let skips = strings(&config["skip-check"]);
    assert!(!skips.is_empty());
    for skip in &skips {
        let line = text.lines().find(|l| l.trim_start().starts_with(&format!("- {skip}"))).unwrap();
        let reason = line.split_once('#').map(|(_, r)| r.trim()).unwrap_or_default();
        assert!(reason.len() >= 40, "{skip}: give the reason on its line in infra/checkov.yaml");
    }
}

// ------------------------------------------------------------------------------------------------------------
// The billing state machine (infra/billing-state-machine.asl.json): the monthly run's driver

/// The fields billing-run's event accepts (shared::billing, the event contract): a part of one side, and the
/// final run that bills whatever is left on both sides and makes the statements payable.
const PART_EVENT_FIELDS: &[&str] = &["cycleEnd", "offCycle", "handOver", "side", "part"];
const FINAL_EVENT_FIELDS: &[&str] = &["cycleEnd", "offCycle", "handOver"];
const SIDES: &[&str] = &["client", "agency"];
/// Errors of the Lambda service itself (and its throttling) that a Task invoking a function must retry.
const LAMBDA_SERVICE_ERRORS: &[&str] = &[
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
];

fn billing_state_machine(template: &Template) -> (&str, &Value) {
    template.only_resource_of_type("AWS::Serverless::StateMachine")
}

/// The state machine's definition, parsed from its DefinitionUri (relative to infra/).
fn billing_definition(template: &Template) -> serde_json::Value {
    let (id, machine) = billing_state_machine(template);
    let uri = machine["Properties"]["DefinitionUri"].as_str().unwrap_or_else(|| panic!("{id}: DefinitionUri"));
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra").join(uri);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

type States = serde_json::Map<String, serde_json::Value>;

/// Every scope of states: the top level and each Map's ItemProcessor (or Iterator), recursively.
fn state_scopes(machine: &serde_json::Value) -> Vec<&States> {
    let states = machine["States"].as_object().expect("States is an object");
    let mut scopes = vec![states];
    for state in states.values() {
        for inner in [&state["ItemProcessor"], &state["Iterator"]] {
            if inner.is_object() {
                scopes.extend(state_scopes(inner));
            }
        }
        assert!(state["Branches"].is_null(), "a Parallel state: teach this test its branches");
    }
    scopes
}

/// The keys of a payload template without the `.$` of JSONPath-valued ones.
fn payload_fields(template: &serde_json::Value) -> BTreeSet<String> {
    template
        .as_object()
        .expect("a payload template is an object")
        .keys()
        .map(|k| k.strip_suffix(".$").unwrap_or(k).to_owned())
        .collect()
}

/// The top-level states from StartAt, following Next until a state without one.
fn top_level_path(machine: &serde_json::Value) -> Vec<(String, &serde_json::Value)> {
    let states = machine["States"].as_object().unwrap();
    let mut path = Vec::new();
    let mut name = machine["StartAt"].as_str().expect("StartAt").to_owned();
    loop {
        let state = &states[&name];
        assert!(path.iter().all(|(seen, _)| *seen != name), "the top level loops through {name}");
        path.push((name.clone(), state));
        match state["Next"].as_str() {
            // A loop (Task → Choice → Pass → Task) leaves the path at its Choice.
            Some(next) if state["Type"] != "Choice" => name = next.to_owned(),
            // A Choice whose branches are Pass states that meet again (on or off cycle): follow its Default.
            _ if state["Type"] == "Choice"
                && state["Default"].as_str().is_some_and(|d| states[d]["Type"] == "Pass") =>
            {
                name = state["Default"].as_str().unwrap().to_owned()
            }
            _ => break,
        }
    }
    path
}

/// The owner parts: the literal list `[{"index": k, "of": n}]` the maps iterate over (checked to be 0..n-1),
/// and n.
fn billing_parts(machine: &serde_json::Value) -> u64 {
    let maps: Vec<&serde_json::Value> =
        state_scopes(machine).into_iter().flat_map(|s| s.values()).filter(|s| s["Type"] == "Map").collect();
    assert_eq!(maps.len(), SIDES.len(), "one Map per side");
    let items_path = maps[0]["ItemsPath"].as_str().expect("the maps iterate over ItemsPath");
    let list_key = items_path.strip_prefix("$.").expect("ItemsPath $.<key>");
    // The literal list is set by a Pass state's Parameters before the maps.
    let lists: Vec<&serde_json::Value> = machine["States"]
        .as_object()
        .unwrap()
        .values()
        .filter(|s| s["Type"] == "Pass" && s["Parameters"][list_key].is_array())
        .map(|s| &s["Parameters"][list_key])
        .collect();
    assert_eq!(lists.len(), 1, "one literal list of parts ({items_path})");
    let parts = lists[0].as_array().unwrap();
    let n = parts.len() as u64;
    assert!(n >= 1, "at least one part");
    for (k, part) in parts.iter().enumerate() {
        assert_eq!(part, &serde_json::json!({"index": k, "of": n}), "part {k} must be {{index: {k}, of: {n}}}");
    }
    for map in maps {
        assert_eq!(map["ItemsPath"].as_str(), Some(items_path), "both maps iterate over the same parts");
        assert_eq!(map["MaxConcurrency"].as_u64(), Some(n), "MaxConcurrency must be the number of parts, {n}");
    }
    n
}

#[test]
fn the_schedule_starts_the_billing_state_machine() {
    let template = Template::load();
    let (id, machine) = billing_state_machine(&template);
    let props = &machine["Properties"];
    // No schedule invokes billing-run directly any more: the state machine is the way.
    let functions = template.functions();
    assert!(
        functions["BillingRunFunction"]["Properties"]["Events"].is_null(),
        "billing-run has no schedule of its own"
    );
    let events = props["Events"].as_mapping().expect("the state machine's Events");
    assert_eq!(events.len(), 1, "{id}: one event, the monthly schedule");
    let monthly = &props["Events"]["Monthly"];
    assert_eq!(monthly["Type"].as_str(), Some("ScheduleV2"), "{id}: EventBridge Scheduler");
    let schedule = &monthly["Properties"];
    assert_eq!(schedule["ScheduleExpression"].as_str(), Some("cron(0 0 1 * ? *)"), "00:00 on the 1st");
    assert_eq!(schedule["ScheduleExpressionTimezone"].as_str(), Some("UTC"));
    let input: serde_json::Value = serde_json::from_str(schedule["Input"].as_str().expect("Input")).unwrap();
    assert_eq!(
        input,
        serde_json::json!({"cycleEnd": "<aws.scheduler.scheduled-time>"}),
        "the cycle is the scheduled time"
    );
    assert!(schedule["RetryPolicy"]["MaximumRetryAttempts"].as_u64().is_some_and(|n| n >= 1), "{id}: RetryPolicy");
    let queue = arn_of(&schedule["DeadLetterConfig"]["Arn"]);
    encrypted_queue(&template, &queue);
    assert_messages_visible_alarm(&template, &queue);

    assert_eq!(
        props["Type"].as_str().unwrap_or("STANDARD"),
        "STANDARD",
        "{id}: a Standard workflow (Express: 5 minutes)"
    );
    let substitutions = props["DefinitionSubstitutions"].as_mapping().expect("DefinitionSubstitutions");
    assert_eq!(substitutions.len(), 2, "{id}: only the two functions' ARNs are substituted");
    assert_eq!(
        get_att(&props["DefinitionSubstitutions"]["BillingRunFunctionArn"]).as_deref(),
        Some("BillingRunFunction.Arn")
    );
    assert_eq!(
        get_att(&props["DefinitionSubstitutions"]["CollectPaymentsFunctionArn"]).as_deref(),
        Some("CollectPaymentsFunction.Arn")
    );
    // Logs (execution data included) in a log group with retention, and X-Ray tracing (checkov's conventions
    // for state machines).
    assert_eq!(props["Tracing"]["Enabled"].as_bool(), Some(true), "{id}: X-Ray tracing");
    let logging = &props["Logging"];
    assert_eq!(logging["Level"].as_str(), Some("ALL"), "{id}: execution logging");
    assert_eq!(logging["IncludeExecutionData"].as_bool(), Some(true), "{id}: execution data in the logs");
    let destinations = as_list(&logging["Destinations"]);
    assert_eq!(destinations.len(), 1);
    let group = arn_of(&destinations[0]["CloudWatchLogsLogGroup"]["LogGroupArn"]);
    let group = &template.resources()[group.as_str()];
    assert_eq!(group["Type"].as_str(), Some("AWS::Logs::LogGroup"));
    assert_eq!(ref_target(&group["Properties"]["RetentionInDays"]), Some("LogRetentionDays"), "{id}: log retention");

    // Least privilege: invoke billing-run and collect-payments (the unqualified functions) and nothing else but
    // log delivery.
    let policies = as_list(&props["Policies"]);
    assert_eq!(policies.len(), 1, "{id}: one inline policy document, no managed or SAM policy templates");
    assert!(props["Role"].is_null(), "{id}: SAM's role from Policies");
    let mut invokes = 0;
    for statement in as_list(&policies[0]["Statement"]) {
        assert_eq!(statement["Effect"].as_str(), Some("Allow"));
        let actions = strings(&statement["Action"]);
        if actions.iter().any(|a| !a.starts_with("logs:")) {
            assert_eq!(actions, BTreeSet::from(["lambda:InvokeFunction".to_owned()]), "{id}: {actions:?}");
            let resources: BTreeSet<String> =
                as_list(&statement["Resource"]).into_iter().map(|r| get_att(r).unwrap_or_default()).collect();
            assert_eq!(
                resources,
                BTreeSet::from(["BillingRunFunction.Arn".to_owned(), "CollectPaymentsFunction.Arn".to_owned()]),
                "{id}: invoke billing-run and collect-payments only"
            );
            invokes += 1;
        } else {
            for action in &actions {
                let delivery = action.ends_with("LogDelivery")
                    || action.ends_with("LogDeliveries")
                    || ["logs:PutResourcePolicy", "logs:DescribeResourcePolicies", "logs:DescribeLogGroups"]
                        .contains(&action.as_str());
                assert!(delivery, "{id}: {action} is not a log-delivery permission");
            }
        }
    }
    assert_eq!(invokes, 1, "{id}: lambda:InvokeFunction on billing-run and collect-payments");
}

#[test]
fn the_billing_state_machine_invokes_billing_run_then_collect_payments_and_retries_what_is_transient() {
    let template = Template::load();
    let definition = billing_definition(&template);
    let text = serde_json::to_string(&definition).unwrap();
    // A bounded execution (TimeoutSeconds, see the template's comment): at most a day.
    let timeout = definition["TimeoutSeconds"].as_u64().expect("a top-level TimeoutSeconds");
    assert!((3600..=86400).contains(&timeout), "TimeoutSeconds {timeout}: between an hour and a day");
    let function_timeout = template.functions()["BillingRunFunction"]["Properties"]["Timeout"].as_u64().unwrap();
    // The errorTypes billing-run fails with (shared::billing::BillingError::error_type).
    let unavailable = shared::billing::BillingError::Storage(shared::storage::StoreError::Unavailable(String::new()));
    let out_of_time = shared::billing::BillingError::OutOfTime;
    let mut tasks = 0;
    let mut collects = Vec::new();
    for scope in state_scopes(&definition) {
        for (name, state) in scope {
            if state["Type"] != "Task" {
                continue;
            }
            if state["Resource"].as_str() == Some("${CollectPaymentsFunctionArn}") {
                collects.push(name.clone());
                continue;
            }
            tasks += 1;
            assert_eq!(state["Resource"].as_str(), Some("${BillingRunFunctionArn}"), "{name}: invokes billing-run");
            assert!(
                state["TimeoutSeconds"].as_u64().is_some_and(|t| t > function_timeout),
                "{name}: TimeoutSeconds above the function's {function_timeout} s"
            );
            let retriers = state["Retry"].as_array().unwrap_or_else(|| panic!("{name}: Retry"));
            let retrier = |error: &str| {
                let found: Vec<&serde_json::Value> = retriers
                    .iter()
                    .filter(|r| r["ErrorEquals"].as_array().unwrap().iter().any(|e| e == error))
                    .collect();
                assert_eq!(found.len(), 1, "{name}: one retrier for {error}");
                found[0]
            };
            for error in LAMBDA_SERVICE_ERRORS.iter().copied().chain([unavailable.error_type()]) {
                let r = retrier(error);
                assert!(r["MaxAttempts"].as_u64().is_some_and(|n| n >= 2), "{name}: retry {error}");
                assert!(r["BackoffRate"].as_f64().is_some_and(|b| b > 1.0), "{name}: {error} with backoff");
            }
            // A run that committed nothing before its deadline: a few times, never forever.
            let r = retrier(out_of_time.error_type());
            assert!(r["MaxAttempts"].as_u64().is_some_and(|n| (1..=3).contains(&n)), "{name}: OutOfTime a few times");
            for r in retriers {
                let errors = r["ErrorEquals"].as_array().unwrap();
                assert!(
                    !errors.iter().any(|e| e == "States.ALL" || e == "States.TaskFailed"),
                    "{name}: retries everything"
                );
            }
            // A throttled invoke past the quick retries (another execution holding the reserved concurrency)
            // waits and invokes again, without a ceiling: the back-off loop.
            let catchers = state["Catch"].as_array().unwrap_or_else(|| panic!("{name}: Catch"));
            assert_eq!(catchers.len(), 2, "{name}: a catcher for throttles, one for the rest");
            assert_eq!(catchers[0]["ErrorEquals"], serde_json::json!(["Lambda.TooManyRequestsException"]), "{name}");
            assert_back_off(scope, catchers[0]["Next"].as_str().unwrap(), name);
            // Anything else ends in a Fail state (through states that do nothing else).
            assert_eq!(catchers[1]["ErrorEquals"], serde_json::json!(["States.ALL"]), "{name}: catches the rest");
            let mut next = catchers[1]["Next"].as_str().unwrap();
            for _ in 0..3 {
                match scope[next]["Type"].as_str() {
                    Some("Pass") => next = scope[next]["Next"].as_str().unwrap(),
                    Some("Fail") => break,
                    other => panic!("{name}: its catcher leads to a {other:?} state, not to a Fail state"),
                }
            }
            let fail = &scope[next];
            assert_eq!(fail["Type"], "Fail", "{name}: the catcher ends in a Fail state");
            assert!(fail["Error"].as_str().is_some_and(|e| e.starts_with("Billing")), "{name}: a clear Error");
            assert!(!fail["Cause"].is_null() || !fail["CausePath"].is_null(), "{name}: a Cause");
        }
    }
    assert_eq!(tasks, SIDES.len() + 1, "a Task per side's part, and the final run");
    // Exactly one other Task: collect-payments at the top level, once the final run made the cycle payable
    // (the final loop's "complete" state leads to it), for this cycle only, with its own retries.
    assert_eq!(collects, ["Collect payments"], "one Task invokes collect-payments");
    let states = definition["States"].as_object().unwrap();
    let collect = &states["Collect payments"];
    assert_eq!(collect["Parameters"], serde_json::json!({"cycleEnd.$": "$.cycleEnd"}), "that cycle's statements");
    shared::collection::parse_collect_event(&serde_json::json!({"cycleEnd": "2026-11-01T00:00:00.000Z"}))
        .expect("collect-payments accepts the event");
    assert_ne!(collect["ResultPath"].as_str(), Some("$"), "the billing output stays");
    let billed: Vec<&String> =
        states.iter().filter(|(_, s)| s["Next"] == "Collect payments").map(|(name, _)| name).collect();
    assert_eq!(billed, ["Billed"], "collect-payments follows the final run's complete state only");
    let collect_timeout = template.functions()["CollectPaymentsFunction"]["Properties"]["Timeout"].as_u64().unwrap();
    assert!(collect["TimeoutSeconds"].as_u64().is_some_and(|t| t > collect_timeout), "collect TimeoutSeconds");
    let retried: BTreeSet<&str> = collect["Retry"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["ErrorEquals"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()))
        .collect();
    for error in LAMBDA_SERVICE_ERRORS.iter().copied().chain(["StorageUnavailable"]) {
        assert!(retried.contains(error), "Collect payments: retry {error}");
    }
    assert!(!retried.contains("States.ALL"), "Collect payments: retries everything");
    let catchers = collect["Catch"].as_array().unwrap();
    assert_eq!(catchers.len(), 1);
    let pass = &states[catchers[0]["Next"].as_str().unwrap()];
    assert_eq!(states[pass["Next"].as_str().unwrap()]["Error"], "CollectionFailed");
    // Every placeholder is one the template substitutes.
    let (_, machine) = billing_state_machine(&template);
    let substitutions = machine["Properties"]["DefinitionSubstitutions"].as_mapping().unwrap();
    for placeholder in text.split("${").skip(1).map(|rest| rest.split('}').next().unwrap()) {
        assert!(substitutions.contains_key(placeholder), "${{{placeholder}}} is not in DefinitionSubstitutions");
    }
}

#[test]
fn the_billing_state_machine_bills_the_parts_of_each_side_then_finishes_the_cycle() {
    let template = Template::load();
    let definition = billing_definition(&template);
    let n = billing_parts(&definition);
    // The Map runs every part of a side at once, and one manual invocation may run alongside.
    let reserved = template.functions()["BillingRunFunction"]["Properties"]["ReservedConcurrentExecutions"].as_u64();
    assert!(
        reserved.is_some_and(|r| r > n),
        "billing-run's ReservedConcurrentExecutions {reserved:?} < parts + 1 = {}",
        n + 1
    );

    // In order: the client side's parts, then the agency side's (never both at once), then the final run.
    let path = top_level_path(&definition);
    let maps: Vec<&(String, &serde_json::Value)> = path.iter().filter(|(_, s)| s["Type"] == "Map").collect();
    assert_eq!(
        maps.len(),
        SIDES.len(),
        "the maps one after the other: {:?}",
        path.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    for ((name, map), side) in maps.iter().zip(SIDES) {
        let event = &map["ItemSelector"]["event"];
        let fields = payload_fields(event);
        assert_eq!(
            fields,
            PART_EVENT_FIELDS.iter().map(|f| f.to_string()).collect(),
            "{name}: the part event's fields"
        );
        assert_eq!(event["side"].as_str(), Some(*side), "{name}: the {side} side, in this order");
        assert_eq!(event["handOver"], serde_json::json!(true), "{name}: hands over instead of failing");
        assert_eq!(event["cycleEnd.$"].as_str(), Some("$.cycleEnd"), "{name}: the execution's cycleEnd");
        assert_eq!(event["part.$"].as_str(), Some("$$.Map.Item.Value"), "{name}: the part it iterates over");
        let selected = payload_fields(&map["ItemSelector"]);
        assert!(selected.contains("event"), "{name}: the iteration's event");
        let tasks =
            map["ItemProcessor"]["States"].as_object().unwrap().values().filter(|s| s["Type"] == "Task").count();
        assert_eq!(tasks, 1, "{name}: one Task per iteration (its loop)");
    }
    // The final run: after the maps, the plain event (no side, no part): bills what is left, makes them payable.
    let after_maps = path.iter().skip_while(|(_, s)| s["Type"] != "Map").skip(SIDES.len());
    let finals: Vec<&serde_json::Value> = after_maps
        .filter(|(_, s)| s["Type"] == "Pass" && s["Parameters"]["event"].is_object())
        .map(|(_, s)| *s)
        .collect();
    assert_eq!(finals.len(), 1, "one final event after the maps");
    let event = &finals[0]["Parameters"]["event"];
    assert_eq!(payload_fields(event), FINAL_EVENT_FIELDS.iter().map(|f| f.to_string()).collect(), "the final event");
    assert_eq!(event["handOver"], serde_json::json!(true));
    assert_eq!(event["cycleEnd.$"].as_str(), Some("$.cycleEnd"));
    assert_eq!(path.last().unwrap().1["Type"], "Choice", "the top level ends in the final run's loop");
    // billing-run's own parsers accept every event the definition builds, rendered for a cycle: each part of
    // each side as a slice of that side and part, the final event as the whole cycle.
    let cycle_end = "2026-11-01T00:00:00Z";
    let render = |event: &serde_json::Value, part: &serde_json::Value| {
        let mut rendered = serde_json::Map::new();
        for (key, value) in event.as_object().unwrap() {
            let value = match key.as_str() {
                "cycleEnd.$" => serde_json::json!(cycle_end),
                "part.$" => part.clone(),
                "offCycle.$" => serde_json::json!(false),
                other => {
                    assert!(!other.ends_with(".$"), "{other}: a JSONPath this test does not know");
                    value.clone()
                }
            };
            rendered.insert(key.strip_suffix(".$").unwrap_or(key).to_owned(), value);
        }
        serde_json::Value::Object(rendered)
    };
    let parses = |event: &serde_json::Value| {
        let now = std::time::SystemTime::now();
        shared::billing::cycle_end_from_event(event, now)
            .unwrap_or_else(|e| panic!("billing-run refuses {event}: {e}"));
        shared::billing::slice_from_event(event).unwrap_or_else(|e| panic!("billing-run refuses {event}: {e}"))
    };
    for ((_, map), side) in maps.iter().zip(SIDES) {
        for k in 0..n {
            let part = serde_json::json!({"index": k, "of": n});
            let event = render(&map["ItemSelector"]["event"], &part);
            let slice = parses(&event).unwrap_or_else(|| panic!("{event}: bills the whole cycle, not a part"));
            assert_eq!(slice.side.as_str(), *side, "{event}: the {side} side");
            assert!(slice.part.is_some(), "{event}: a part of its side");
        }
    }
    assert!(parses(&render(event, &serde_json::Value::Null)).is_none(), "the final event bills the whole cycle");
    // Nothing else builds an event: every `event` a state sets is one of the above or a continueWith.
    for scope in state_scopes(&definition) {
        for (name, state) in scope {
            for template in [&state["Parameters"], &state["ItemSelector"]] {
                if let Some(value) = template.get("event.$") {
                    // A back-off (before invoking again) carries the event it was given.
                    assert!(
                        value.as_str().is_some_and(|v| v.ends_with(".continueWith") || v == "$.event"),
                        "{name}: event from {value}"
                    );
                }
            }
        }
    }
}

/// The back-off from `start` back to `task`: a Pass that sets the wait to `$.backoff` and doubles `$.backoff`, a
/// Choice that caps it, a Wait of `SecondsPath` `$.wait`, then `task` again with the same `$.event`.
fn assert_back_off(scope: &States, start: &str, task: &str) {
    let back = &scope[start];
    assert_eq!(back["Type"], "Pass", "{start}: a Pass sets the wait");
    let params = &back["Parameters"];
    assert_eq!(params["wait.$"], "$.backoff", "{start}: waits $.backoff");
    assert_eq!(params["backoff.$"], "States.MathAdd($.backoff, $.backoff)", "{start}: doubles the next wait");
    assert_eq!(params["event.$"], "$.event", "{start}: the same event again");
    let cap = &scope[back["Next"].as_str().unwrap()];
    assert_eq!(cap["Type"], "Choice", "{start}: a cap on the wait");
    let rule = &cap["Choices"][0];
    let limit = rule["NumericGreaterThan"].as_u64().expect("a numeric cap");
    assert!((60..=900).contains(&limit), "{start}: the cap {limit} s");
    let capped = &scope[rule["Next"].as_str().unwrap()];
    assert_eq!(capped["Parameters"]["backoff"].as_u64(), Some(limit), "{start}: capped at {limit} s");
    let wait_name = cap["Default"].as_str().unwrap();
    assert_eq!(capped["Next"].as_str(), Some(wait_name));
    let wait = &scope[wait_name];
    assert_eq!((wait["Type"].as_str(), wait["SecondsPath"].as_str()), (Some("Wait"), Some("$.wait")), "{wait_name}");
    assert_eq!(wait["Next"].as_str(), Some(task), "{wait_name}: back to {task}");
}

#[test]
fn every_billing_loop_reads_complete_and_continues_with_continue_with() {
    let template = Template::load();
    let definition = billing_definition(&template);
    let mut loops = 0;
    for scope in state_scopes(&definition) {
        for (name, task) in
            scope.iter().filter(|(_, s)| s["Type"] == "Task" && s["Resource"] == "${BillingRunFunctionArn}")
        {
            loops += 1;
            // The Task invokes with the state's event and keeps the answer next to it.
            assert_eq!(task["InputPath"].as_str(), Some("$.event"), "{name}: invokes billing-run with $.event");
            let result = task["ResultPath"].as_str().unwrap_or_else(|| panic!("{name}: ResultPath"));
            assert_ne!(result, "$.event", "{name}: the answer must not overwrite the event");
            let choice_name = task["Next"].as_str().unwrap();
            let choice = &scope[choice_name];
            assert_eq!(choice["Type"], "Choice", "{name}: a Choice on the answer follows");
            let complete = format!("{result}.complete");
            let rules = choice["Choices"].as_array().unwrap();
            let reads = |rule: &serde_json::Value, value: bool| {
                let conditions = rule["And"].as_array().cloned().unwrap_or_else(|| vec![rule.clone()]);
                conditions.iter().any(|c| c["Variable"] == complete.as_str() && c["BooleanEquals"] == value)
            };
            // complete: true → the part (or the cycle) is done: the branch ends without invoking again.
            let done: Vec<&serde_json::Value> = rules.iter().filter(|r| reads(r, true)).collect();
            assert_eq!(done.len(), 1, "{choice_name}: one rule for {complete} = true");
            let done = &scope[done[0]["Next"].as_str().unwrap()];
            assert!(
                (done["End"] == true || done["Next"] == "Collect payments") && done["Type"] == "Pass",
                "{choice_name}: complete ends the loop"
            );
            // complete: false (with a continueWith) → the next invocation takes continueWith as its event; a
            // hand-over on StorageUnavailable (a throttled table) first waits, longer each time.
            let handed_over_on = format!("{result}.handedOverOn");
            let on_storage = |rule: &serde_json::Value| {
                rule["And"].as_array().is_some_and(|conditions| {
                    conditions
                        .iter()
                        .any(|c| c["Variable"] == handed_over_on.as_str() && c["StringEquals"] == "StorageUnavailable")
                })
            };
            let throttled: Vec<&serde_json::Value> =
                rules.iter().filter(|r| reads(r, false) && on_storage(r)).collect();
            assert_eq!(throttled.len(), 1, "{choice_name}: one rule for a hand-over on StorageUnavailable");
            assert_eq!(rules.iter().position(&on_storage), Some(1), "{choice_name}: before the plain one");
            let throttled_pass = &scope[throttled[0]["Next"].as_str().unwrap()];
            assert_eq!(
                throttled_pass["Parameters"]["event.$"].as_str(),
                Some(format!("{result}.continueWith").as_str()),
                "{choice_name}: the throttled part goes on with its continueWith (its resume key)"
            );
            assert_back_off(scope, throttled_pass["Next"].as_str().unwrap(), name);
            let again: Vec<&serde_json::Value> = rules.iter().filter(|r| reads(r, false) && !on_storage(r)).collect();
            assert_eq!(again.len(), 1, "{choice_name}: one rule for {complete} = false");
            let conditions = again[0]["And"].as_array().expect("complete = false and continueWith present");
            let continue_with = format!("{result}.continueWith");
            assert!(
                conditions.iter().any(|c| c["Variable"] == continue_with.as_str() && c["IsPresent"] == true),
                "{choice_name}: invokes again only with a continueWith"
            );
            let pass_name = again[0]["Next"].as_str().unwrap();
            let pass = &scope[pass_name];
            assert_eq!(pass["Type"], "Pass", "{pass_name}");
            assert_eq!(
                pass["Parameters"]["event.$"].as_str(),
                Some(continue_with.as_str()),
                "{pass_name}: the next event"
            );
            assert_eq!(pass["Next"].as_str(), Some(name.as_str()), "{pass_name}: back to {name}");
            // Any other answer is outside the contract: fail, never loop.
            let default = &scope[choice["Default"].as_str().unwrap_or_else(|| panic!("{choice_name}: a Default"))];
            assert_eq!(default["Type"], "Fail", "{choice_name}: Default fails");
            assert_eq!(rules.len(), 3, "{choice_name}: complete, back off and continue, or continue, nothing else");
        }
    }
    assert_eq!(loops, SIDES.len() + 1, "a loop per side's part and the final one");
}

#[test]
fn the_billing_state_machine_has_alarms_on_the_dashboard() {
    let template = Template::load();
    let (id, _) = billing_state_machine(&template);
    let dashboard = &template.only_resource_of_type("AWS::CloudWatch::Dashboard").1["Properties"]["DashboardBody"];
    let Value::Tagged(dashboard) = dashboard else { panic!("DashboardBody is !Sub [text, vars]") };
    let body = as_list(&dashboard.value)[0].as_str().unwrap().to_owned();
    for metric in ["ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"] {
        let alarms = alarms_on(&template, "AWS/States", metric, "StateMachineArn", |v| ref_target(v) == Some(id));
        assert_eq!(alarms.len(), 1, "{id}: one {metric} alarm, found {alarms:?}");
        let props = &template.resources()[alarms[0]]["Properties"];
        assert_eq!(props["Threshold"].as_f64(), Some(0.0), "{metric}: any execution");
        let description = props["AlarmDescription"].as_str().unwrap();
        assert!(
            description.contains("start-execution") && description.contains("same cycleEnd"),
            "{}: the runbook restarts with the same cycleEnd",
            alarms[0]
        );
        assert!(body.contains(&format!("${{{}.Arn}}", alarms[0])), "{}: on the dashboard's alarm list", alarms[0]);
    }
    // No runbook still sends people to the schedule's old target.
    for (alarm_id, alarm) in template.resources_of_type("AWS::CloudWatch::Alarm") {
        let description = alarm["Properties"]["AlarmDescription"].as_str().unwrap_or_default();
        for stale in ["invoke billing-run", "Lambda retries it twice", "reserved concurrency 1) or"] {
            let billing = alarm_id.starts_with("Billing") || description.contains("billing-run");
            assert!(
                !(billing && description.contains(stale)),
                "{alarm_id}: says {stale:?}; the state machine is the way"
            );
        }
    }
}

/// Runs every route of agency-read and of agency-write through its real handler against dynoxide (the paths a
/// policy must allow: a purchase list of a current client and of another agency's, a void with its key, ...)
/// and records what each request needed IAM to allow: FUNCTIONS lists exactly that for both, so a grant the code
/// never uses fails here (through the test above, which holds the template to FUNCTIONS), and so does a call the
/// policy would refuse with AccessDenied.
#[tokio::test]
async fn the_agency_functions_touch_exactly_what_functions_lists() {
    use serde_json::json;
    use shared::api;
    use testkit::{ApiEvent, BIKES, COFFEE, DENTAL, TestEnv, answer};
    const NORTHWIND: &str = "agency-northwind";
    let env = TestEnv::seeded().await;
    // Statements for the clients page's last statements and the overview's held one (BIKES declined).
    let clients = [COFFEE, BIKES].map(str::to_owned);
    testkit::seed_loader::seed_settled_statements(&env.app.store, &clients, BIKES, std::time::SystemTime::now())
        .await
        .unwrap();
    let event = ApiEvent::purchase(COFFEE, &json!({"quantities": {"audience": 2}}));
    let bought = answer(api::purchase_credits(&env.app, event.request()).await);
    assert_eq!(bought.status, 201, "{}", bought.body);
    let purchase_id = bought.body["purchase"]["purchaseId"].as_str().unwrap().to_owned();
    let granted = |logical_id: &str| -> BTreeSet<Allowed> {
        expected_allowed(FUNCTIONS.iter().find(|f| f.logical_id == logical_id).unwrap())
    };
    let admin = |method: &str, route: &str| ApiEvent::agency(method, route, NORTHWIND).as_agency_admin(NORTHWIND);

    env.operations.reset();
    for (route, query) in [
        ("/agencies/{agencyId}/pricing", None),
        ("/agencies/{agencyId}/pricing/history", None),
        ("/agencies/{agencyId}/clients", None),
        ("/agencies/{agencyId}/purchases", None),
        ("/agencies/{agencyId}/purchases", Some(format!("accountId={COFFEE}"))),
        ("/agencies/{agencyId}/purchases", Some(format!("accountId={DENTAL}"))),
        ("/agencies/{agencyId}/statements", None),
        ("/agencies/{agencyId}/overview", None),
    ] {
        let mut event = admin("GET", route);
        if let Some(query) = &query {
            event = event.query(query);
        }
        let a = answer(api::agency_read(&env.app, event.request()).await);
        assert_eq!(a.status, 200, "{route} {query:?}: {}", a.body);
    }
    assert_eq!(env.operations.accesses(), granted("AgencyReadFunction"), "agency-read: what it did vs FUNCTIONS");

    let pricing = answer(api::agency_read(&env.app, admin("GET", "/agencies/{agencyId}/pricing").request()).await);
    let etag = pricing.header("etag").unwrap().to_owned();
    env.operations.reset();
    let put = admin("PUT", "/agencies/{agencyId}/pricing")
        .header("if-match", &etag)
        .json(&json!({"prices": {"pixel": "11"}}));
    assert_eq!(answer(api::agency_write(&env.app, put.request()).await).status, 200);
    let limit = admin("PUT", "/agencies/{agencyId}/clients/{accountId}/credit-limit")
        .path_parameter("accountId", COFFEE)
        .json(&json!({"creditLimit": "20000"}));
    assert_eq!(answer(api::agency_write(&env.app, limit.request()).await).status, 200);
    for _ in 0..2 {
        // The void, then its replay under the same key.
        let void = admin("POST", "/agencies/{agencyId}/purchases/{purchaseId}/void")
            .path_parameter("purchaseId", &purchase_id)
            .header("Idempotency-Key", "policy-check")
            .json(&json!({"accountId": COFFEE}));
        let a = answer(api::agency_write(&env.app, void.request()).await);
        assert_eq!(a.status, 200, "{}", a.body);
    }
    assert_eq!(env.operations.accesses(), granted("AgencyWriteFunction"), "agency-write: what it did vs FUNCTIONS");
}

/// The overdue sweep and a billing run (billing, then finishing the cycle with its `statement.payable` outbox
/// items) through their real code against dynoxide: what they needed IAM to allow is exactly what FUNCTIONS lists
/// (and so the template: an outbox Put a policy lacks would be AccessDenied for the whole transaction).
#[tokio::test]
async fn the_sweep_and_a_billing_run_touch_exactly_what_functions_lists() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use serde_json::json;
    use shared::billing::{self, BillingRun};
    use shared::domain::billing::{CycleEnd, StatementKind};
    use std::time::{Duration, SystemTime};
    use testkit::{ApiEvent, BIKES, TestEnv, answer};
    let env = TestEnv::seeded().await;
    let event = ApiEvent::purchase(BIKES, &json!({"quantities": {"pixel": 1}}));
    assert_eq!(answer(shared::api::purchase_credits(&env.app, event.request()).await).status, 201);
    let granted = |logical_id: &str| -> BTreeSet<Allowed> {
        expected_allowed(FUNCTIONS.iter().find(|f| f.logical_id == logical_id).unwrap())
    };

    env.operations.reset();
    let cycle_end = CycleEnd::at(SystemTime::now() + Duration::from_millis(5));
    tokio::time::sleep(Duration::from_millis(10)).await;
    // The client side billed alone first; its statement then loses `lastPurchaseAt#…`, as one billed before those
    // attributes existed, so finishing the cycle also reads the account's agency (the GetItem FUNCTIONS grants).
    let side = BillingRun {
        payment_due_days: 0,
        slice: Some(billing::BillingSlice { side: StatementKind::Client, part: None }),
        ..BillingRun::new(cycle_end.clone())
    };
    billing::run_billing(&env.app.store, &side).await.unwrap();
    let statement_sk = format!("STATEMENT#{}", cycle_end.as_str());
    let statement = env
        .client
        .get_item()
        .table_name(&env.table)
        .key("pk", AttributeValue::S(format!("ACCOUNT#{BIKES}")))
        .key("sk", AttributeValue::S(statement_sk.clone()))
        .send()
        .await
        .unwrap()
        .item
        .expect("the client statement, building");
    let instants: Vec<String> = statement.keys().filter(|name| name.starts_with("lastPurchaseAt#")).cloned().collect();
    assert_eq!(instants.len(), 1, "{statement:?}");
    env.client
        .update_item()
        .table_name(&env.table)
        .key("pk", AttributeValue::S(format!("ACCOUNT#{BIKES}")))
        .key("sk", AttributeValue::S(statement_sk))
        .update_expression("REMOVE #instant")
        .expression_attribute_names("#instant", &instants[0])
        .send()
        .await
        .unwrap();
    let run = BillingRun { payment_due_days: 0, ..BillingRun::new(cycle_end) };
    assert_eq!(billing::run_billing(&env.app.store, &run).await.unwrap().statements_made_payable, 2);
    assert_eq!(env.operations.accesses(), granted("BillingRunFunction"), "billing-run: what it did vs FUNCTIONS");

    env.operations.reset();
    let swept = shared::payments::sweep(&env.app.store, SystemTime::now() + Duration::from_secs(2 * 86_400));
    assert_eq!(swept.await.unwrap().marked_overdue, 1);
    assert_eq!(
        env.operations.accesses(),
        granted("StatementSweepFunction"),
        "statement-sweep: what it did vs FUNCTIONS"
    );
}
