//! The billing-run event: what an event may say (cycle end, hand-over, side, part, off-cycle, resume
//! position), each field checked strictly before anything is read, and the event that continues a run.

use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::domain::billing::{CycleEnd, Part, StatementKind};
use crate::domain::time;
use crate::storage::{PageKey, Store};
use crate::table::UNBILLED_SHARDS;

use super::*;

/// How long after a cycle end its run may start: longer than any request can take (the 7 s request budget,
/// API Gateway's 30 s integration limit), because a purchase's `createdAt` is stamped before it commits. A run
/// started at the cycle end could miss a purchase stamped just before it that commits a moment later, on one
/// side and not the other. The state machine waits [`BILLING_GRACE`] and more (its `Grace` state) first.
pub const BILLING_GRACE: Duration = Duration::from_secs(60);

/// The fields of a manual or state-machine event.
pub(super) const EVENT_FIELDS: [&str; 6] = ["cycleEnd", "handOver", "side", "part", "offCycle", "resumeAt"];

/// The cycle end an event asks for. It must be a cycle boundary (00:00:00.000Z on the 1st of a month) unless
/// the event says `"offCycle": true` (a cycle end elsewhere bills part of a month on a statement of its own, so
/// a typo would split a month in two), and at least [`BILLING_GRACE`] before `now`:
/// - `{"cycleEnd": "2026-12-01T00:00:00Z"}`: that instant (what the schedule sends, and what a manual run
///   must name);
/// - an EventBridge scheduled event (`"detail-type": "Scheduled Event"`): its `time`, the scheduled instant, so
///   Lambda's retries of the same event bill the same cycle. One without `time` is refused: every real
///   scheduled event has it, and "now" would bill a different cycle on each retry.
///
/// Anything else is refused, `{}` and `null` included: a run never picks its cycle end from the clock.
pub fn cycle_end_from_event(event: &Value, now: SystemTime) -> Result<CycleEnd, BillingError> {
    let invalid = |why: String| BillingError::InvalidEvent(why);
    let object = match event {
        Value::Object(object) => object,
        other => return Err(invalid(format!("expected {{\"cycleEnd\": \"<RFC 3339 UTC>\"}}, got {other}"))),
    };
    let cycle_end = if let Some(detail_type) = object.get("detail-type") {
        if detail_type != "Scheduled Event" {
            return Err(invalid(format!("unsupported EventBridge detail-type {detail_type}")));
        }
        match object.get("time") {
            None => return Err(invalid("a Scheduled Event without `time`".into())),
            Some(Value::String(time)) => CycleEnd::parse(time).map_err(invalid)?,
            Some(other) => return Err(invalid(format!("`time` must be a string, got {other}"))),
        }
    } else {
        if let Some(unknown) = object.keys().find(|k| !EVENT_FIELDS.contains(&k.as_str())) {
            let allowed = EVENT_FIELDS.map(|field| format!("`{field}`")).join(", ");
            return Err(invalid(format!("unknown field `{unknown}`; allowed: {allowed}")));
        }
        match object.get("cycleEnd") {
            None => {
                return Err(invalid(
                    "`cycleEnd` is required: name the cycle to bill, e.g. {\"cycleEnd\": \"2026-11-01T00:00:00Z\"}"
                        .into(),
                ));
            }
            Some(Value::String(text)) => CycleEnd::parse(text).map_err(invalid)?,
            Some(other) => return Err(invalid(format!("`cycleEnd` must be a string, got {other}"))),
        }
    };
    let off_cycle = match object.get("offCycle") {
        None | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) if object.get("detail-type").is_none() => true,
        Some(other) => return Err(invalid(format!("`offCycle` must be true or false, got {other}"))),
    };
    if !off_cycle && !cycle_end.is_month_boundary() {
        return Err(invalid(format!(
            "cycle end {cycle_end} is not a cycle boundary (00:00:00.000Z on the 1st of a month); to bill up to \
             another instant on purpose, say \"offCycle\": true"
        )));
    }
    if now < cycle_end.instant() + BILLING_GRACE {
        return Err(invalid(format!(
            "cycle end {cycle_end} is less than {} s before now ({}): purchases stamped before it may still be \
             committing; a cycle is billed once its grace period has passed",
            BILLING_GRACE.as_secs(),
            time::timestamp(now)
        )));
    }
    Ok(cycle_end)
}

/// The slice of the cycle an event asks for, `None` for the whole cycle:
/// - `"side": "client" | "agency"`: bill only that side;
/// - with it, `"part": {"index": k, "of": n}` (1 ≤ n ≤ 64, 0 ≤ k < n): only the statements whose owner is in
///   part k of n ([`Part::holds`]).
///
/// `part` without `side`, other values, fields inside `part` other than `index` and `of`, and a slice in a
/// Scheduled Event (the schedule bills whole cycles) are refused.
pub fn slice_from_event(event: &Value) -> Result<Option<BillingSlice>, BillingError> {
    let invalid = |why: String| BillingError::InvalidEvent(why);
    let (side, part) = (event.get("side"), event.get("part"));
    if side.is_none() && part.is_none() {
        return Ok(None);
    }
    if event.get("detail-type").is_some() {
        return Err(invalid(
            "a Scheduled Event bills the whole cycle; `side` and `part` are for fanned-out runs".into(),
        ));
    }
    let side = match side {
        None => {
            return Err(invalid(
                "`part` needs `side`: a part divides the owners of one side, \"client\" or \"agency\"".into(),
            ));
        }
        Some(Value::String(text)) => StatementKind::parse(text)
            .ok_or_else(|| invalid(format!("unknown side {text:?}; allowed: \"client\", \"agency\"")))?,
        Some(other) => return Err(invalid(format!("`side` must be \"client\" or \"agency\", got {other}"))),
    };
    let part = part.map(part_from_value).transpose()?;
    Ok(Some(BillingSlice { side, part }))
}

/// `{"index": k, "of": n}`, both whole numbers, nothing else.
pub(super) fn part_from_value(value: &Value) -> Result<Part, BillingError> {
    let invalid = |why: String| BillingError::InvalidEvent(why);
    let Value::Object(object) = value else {
        return Err(invalid(format!("`part` must be {{\"index\": k, \"of\": n}}, got {value}")));
    };
    if let Some(unknown) = object.keys().find(|k| *k != "index" && *k != "of") {
        return Err(invalid(format!("unknown field `part.{unknown}`; allowed: `index`, `of`")));
    }
    let number = |name: &str| match object.get(name) {
        None => Err(invalid(format!("`part.{name}` is required"))),
        // Out-of-range numbers saturate, so `Part::new` names the range.
        Some(v) => v
            .as_u64()
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
            .ok_or_else(|| invalid(format!("`part.{name}` must be a whole number, got {v}"))),
    };
    Part::new(number("index")?, number("of")?).map_err(invalid)
}

/// Where a resumed slice run starts reading (`"resumeAt": {"shard": s, "after": {<the index key>}}`, as a
/// hand-over's `continueWith` carries it), checked strictly: only with a `side` (a whole-cycle run reads from
/// the start), a shard of the index, and `after` a key of that shard's index partition before the cycle end
/// ([`PageKey::unbilled_position`]). `None` without `resumeAt`.
pub fn resume_from_event(
    event: &Value,
    slice: Option<&BillingSlice>,
    cycle_end: &CycleEnd,
) -> Result<Option<ResumeAt>, BillingError> {
    let invalid = |why: String| BillingError::InvalidEvent(why);
    let Some(value) = event.get("resumeAt") else { return Ok(None) };
    let Some(slice) = slice else {
        return Err(invalid("`resumeAt` needs `side`: only a slice run resumes where it stopped".into()));
    };
    let Value::Object(object) = value else {
        return Err(invalid(format!("`resumeAt` must be {{\"shard\": s, \"after\": {{...}}}}, got {value}")));
    };
    if let Some(unknown) = object.keys().find(|k| *k != "shard" && *k != "after") {
        return Err(invalid(format!("unknown field `resumeAt.{unknown}`; allowed: `shard`, `after`")));
    }
    let shard = match object.get("shard") {
        None => return Err(invalid("`resumeAt.shard` is required".into())),
        Some(v) => v
            .as_u64()
            .filter(|shard| *shard < u64::from(UNBILLED_SHARDS))
            .ok_or_else(|| invalid(format!("`resumeAt.shard` must be 0..{UNBILLED_SHARDS}, got {v}")))?
            as u32,
    };
    let after = object
        .get("after")
        .map(|after| PageKey::unbilled_position(slice.side, shard, cycle_end, after).map_err(invalid))
        .transpose()?;
    Ok(Some(ResumeAt { shard, after }))
}

/// The event that continues `run` after a hand-over: the same cycle end and slice, and where a slice's
/// reading stopped (`resumeAt`, unless that is the start).
pub(super) fn continuation(run: &BillingRun, resume: Option<&ResumeAt>) -> Value {
    let mut event = json!({"cycleEnd": run.cycle_end.as_str(), "handOver": true});
    if !run.cycle_end.is_month_boundary() {
        event["offCycle"] = json!(true);
    }
    if let Some(slice) = &run.slice {
        event["side"] = json!(slice.side.as_str());
        if let Some(part) = slice.part {
            event["part"] = json!({"index": part.index(), "of": part.of()});
        }
        if let Some(resume) = resume.filter(|resume| **resume != ResumeAt::START) {
            event["resumeAt"] = resume.to_json();
        }
    }
    event
}

/// The `billing-run` function: reads the cycle end from the event, runs, logs and returns the summary.
/// `deadline` is the Lambda invocation's; the run stops starting transactions shortly before it.
pub async fn run_from_event(
    store: &Store,
    settings: &BillingSettings,
    event: &Value,
    deadline: Option<SystemTime>,
    now: SystemTime,
) -> Result<RunSummary, BillingError> {
    let refused = |e: &BillingError| {
        tracing::error!(error = %e, error_type = e.error_type(), "billing run refused; nothing written");
    };
    let cycle_end = cycle_end_from_event(event, now).inspect_err(refused)?;
    let hand_over = match event.get("handOver") {
        None | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) if event.get("detail-type").is_none() => true,
        Some(other) => {
            let error = BillingError::InvalidEvent(format!("`handOver` must be true or false, got {other}"));
            refused(&error);
            return Err(error);
        }
    };
    let slice = slice_from_event(event).inspect_err(refused)?;
    let resume = resume_from_event(event, slice.as_ref(), &cycle_end).inspect_err(refused)?;
    let mut run = BillingRun {
        hand_over,
        slice,
        resume,
        concurrency: settings.concurrency,
        payment_due_days: settings.payment_due_days,
        ..BillingRun::new(cycle_end)
    };
    // A deadline from before any real invocation is no real one (`cargo lambda watch` sends 600000 ms after the
    // epoch): ignore it rather than refuse to work. One that passed a moment ago is real (a loaded instance got
    // to it late): the run is out of time.
    let deadline = deadline.filter(|at| {
        let real = at.duration_since(SystemTime::UNIX_EPOCH).is_ok_and(|since| since > NO_REAL_DEADLINE_BEFORE);
        if !real {
            tracing::warn!(deadline = %humantime::format_rfc3339_millis(*at), "ignoring a deadline from before any real invocation");
        }
        real
    });
    run.deadline = deadline.map(|at| {
        let left = at.duration_since(now).unwrap_or_default();
        // A tenth of the time left, at most DEADLINE_MARGIN, so a short timeout still gets most of its time.
        let budget = left - (left / 10).min(DEADLINE_MARGIN);
        tracing::info!(
            deadline = %humantime::format_rfc3339_millis(at),
            time_budget_ms = budget.as_millis() as u64,
            "billing run time budget"
        );
        Instant::now() + budget
    });
    run_billing(store, &run).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn events_name_a_cycle_end_that_has_passed() {
        let now = at("2026-11-26T15:00:00.123Z");
        let parse = |v: Value| cycle_end_from_event(&v, now).map(|c| c.as_str().to_owned());
        assert_eq!(parse(json!({"cycleEnd": "2026-11-01T00:00:00Z"})).unwrap(), "2026-11-01T00:00:00.000Z");
        // Off a boundary only when the event says so, and only once the grace period has passed.
        let off = json!({"cycleEnd": "2026-11-26T14:59:00.123Z", "offCycle": true});
        assert_eq!(parse(off).unwrap(), "2026-11-26T14:59:00.123Z");
        assert_eq!(
            parse(json!({"cycleEnd": "2026-11-01T00:00:00Z", "offCycle": false})).unwrap(),
            "2026-11-01T00:00:00.000Z"
        );
        // The month that ended a moment ago is refused until its grace period has passed.
        let early = cycle_end_from_event(&json!({"cycleEnd": "2026-12-01T00:00:00Z"}), at("2026-12-01T00:00:59.999Z"));
        assert!(matches!(early, Err(BillingError::InvalidEvent(m)) if m.contains("less than 60 s")));
        assert!(cycle_end_from_event(&json!({"cycleEnd": "2026-12-01T00:00:00Z"}), at("2026-12-01T00:01:00Z")).is_ok());
        let scheduled = json!({
            "version": "0", "id": "x", "detail-type": "Scheduled Event", "source": "aws.events",
            "time": "2026-11-01T00:00:00Z", "region": "us-east-1", "resources": [], "detail": {}
        });
        assert_eq!(parse(scheduled).unwrap(), "2026-11-01T00:00:00.000Z");
        for bad in [
            json!({}),
            Value::Null,
            json!({"detail-type": "Scheduled Event"}),
            json!({"detail-type": "Scheduled Event", "time": null}),
            json!({"cycleEnd": "2026-12-01T00:00:00Z"}),
            json!({"cycleEnd": "2026-11-26T15:01:00.124Z"}),
            // An operator's typo on 20 November would bill 1-9 November on a statement of its own.
            json!({"cycleEnd": "2026-11-10T00:00:00Z"}),
            json!({"cycleEnd": "2026-11-01T00:00:00.001Z"}),
            json!({"cycleEnd": "2026-11-26T14:59:00.124Z", "offCycle": true}),
            json!({"cycleEnd": "2026-11-10T00:00:00Z", "offCycle": "yes"}),
            json!({"cycleEnd": "2026-11-01T00:00:00Z", "offCycle": 1}),
            json!({"detail-type": "Scheduled Event", "time": "2026-11-10T00:00:00Z"}),
            json!({"detail-type": "Scheduled Event", "time": "2026-12-01T00:00:00Z"}),
            json!({"cycleEnd": 1}),
            json!({"cycleEnd": null}),
            json!({"cycleEnd": "soon"}),
            json!({"cycleend": "2026-11-01T00:00:00Z"}),
            json!({"detail-type": "Object Created"}),
            json!([1]),
            json!("2026-11-01T00:00:00Z"),
        ] {
            assert!(matches!(parse(bad.clone()), Err(BillingError::InvalidEvent(_))), "{bad}");
        }
    }

    #[test]
    fn events_may_name_a_side_and_a_part_of_it() {
        let now = at("2026-11-26T15:00:00Z");
        let slice = |v: Value| {
            cycle_end_from_event(&v, now)?;
            slice_from_event(&v)
        };
        let base = json!({"cycleEnd": "2026-11-01T00:00:00Z", "handOver": true});
        let with = |extra: Value| {
            let mut event = base.clone();
            event.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            event
        };
        assert_eq!(slice(base.clone()), Ok(None));
        assert_eq!(
            slice(with(json!({"side": "client"}))),
            Ok(Some(BillingSlice { side: StatementKind::Client, part: None }))
        );
        assert_eq!(
            slice(with(json!({"side": "agency", "part": {"index": 3, "of": 4}}))),
            Ok(Some(BillingSlice { side: StatementKind::Agency, part: Some(Part::new(3, 4).unwrap()) }))
        );
        assert_eq!(
            slice(with(json!({"side": "client", "part": {"of": 64, "index": 0}}))).unwrap().unwrap().part,
            Some(Part::new(0, 64).unwrap())
        );
        assert_eq!(
            slice(with(json!({"side": "client", "part": {"index": 0, "of": 1}}))).unwrap().unwrap().side,
            StatementKind::Client
        );
        for (bad, says) in [
            (json!({"part": {"index": 0, "of": 2}}), "`part` needs `side`"),
            (json!({"side": "clients"}), "unknown side \"clients\"; allowed: \"client\", \"agency\""),
            (json!({"side": "Client"}), "unknown side"),
            (json!({"side": 1}), "`side` must be \"client\" or \"agency\", got 1"),
            (json!({"side": null}), "`side` must be"),
            (json!({"side": "client", "part": null}), "`part` must be {\"index\": k, \"of\": n}, got null"),
            (json!({"side": "client", "part": 2}), "`part` must be"),
            (json!({"side": "client", "part": [0, 2]}), "`part` must be"),
            (json!({"side": "client", "part": {"index": 0}}), "`part.of` is required"),
            (json!({"side": "client", "part": {"of": 2}}), "`part.index` is required"),
            (json!({"side": "client", "part": {"index": 2, "of": 2}}), "`part.index` must be 0..2"),
            (json!({"side": "client", "part": {"index": 0, "of": 0}}), "`part.of` must be 1..=64, got 0"),
            (json!({"side": "client", "part": {"index": 0, "of": 65}}), "`part.of` must be 1..=64, got 65"),
            (json!({"side": "client", "part": {"index": 0, "of": 4294967296u64}}), "`part.of` must be 1..=64"),
            (json!({"side": "client", "part": {"index": -1, "of": 2}}), "`part.index` must be a whole number, got -1"),
            (json!({"side": "client", "part": {"index": 0.0, "of": 2}}), "`part.index` must be a whole number"),
            (json!({"side": "client", "part": {"index": "0", "of": 2}}), "`part.index` must be a whole number"),
            (json!({"side": "client", "part": {"index": 0, "of": 2, "k": 1}}), "unknown field `part.k`"),
            (
                json!({"side": "client", "parts": 2}),
                "unknown field `parts`; allowed: `cycleEnd`, `handOver`, `side`, `part`, `offCycle`",
            ),
        ] {
            let event = with(bad.clone());
            match slice(event.clone()) {
                Err(BillingError::InvalidEvent(message)) => assert!(message.contains(says), "{event}: {message}"),
                other => panic!("{event}: expected InvalidEvent, got {other:?}"),
            }
        }
        // The schedule bills whole cycles.
        let scheduled = json!({"detail-type": "Scheduled Event", "time": "2026-11-01T00:00:00Z", "side": "client"});
        assert!(matches!(slice(scheduled), Err(BillingError::InvalidEvent(m)) if m.contains("Scheduled Event")));
    }

    #[test]
    fn a_whole_cycle_summary_has_the_same_fields_as_before_and_a_slice_says_which_it_is() {
        let keys = |summary: &RunSummary| -> Vec<String> {
            serde_json::to_value(summary).unwrap().as_object().unwrap().keys().cloned().collect()
        };
        let mut whole = keys(&RunSummary::default());
        whole.sort();
        let mut before = [
            "runId",
            "cycleEnd",
            "clientStatementsWritten",
            "agencyStatementsWritten",
            "purchasesBilledToClient",
            "purchasesBilledToAgency",
            "totalAtPrice",
            "totalAtCost",
            "itemsRead",
            "itemsScanned",
            "queries",
            "transactions",
            "purchasesAlreadyBilled",
            "purchasesLeftForNextCycle",
            "statementsMadePayable",
            "durationMs",
            "finishMs",
            "complete",
        ];
        before.sort();
        assert_eq!(whole, before);
        let slice = RunSummary {
            side: Some(StatementKind::Agency),
            part: Some(Part::new(1, 3).unwrap()),
            purchases_in_other_parts: Some(7),
            ..RunSummary::default()
        };
        let answer = serde_json::to_value(&slice).unwrap();
        assert_eq!(
            (&answer["side"], &answer["part"], &answer["purchasesInOtherParts"]),
            (&json!("agency"), &json!({"index": 1, "of": 3}), &json!(7))
        );
    }

    #[test]
    fn a_hand_over_continues_the_same_slice() {
        let cycle_end = CycleEnd::parse("2026-11-01T00:00:00Z").unwrap();
        let whole = BillingRun::new(cycle_end.clone());
        assert_eq!(continuation(&whole, None), json!({"cycleEnd": "2026-11-01T00:00:00.000Z", "handOver": true}));
        let slice = BillingSlice { side: StatementKind::Client, part: Some(Part::new(2, 5).unwrap()) };
        let event = continuation(&BillingRun { slice: Some(slice), ..whole }, None);
        assert_eq!(
            event,
            json!({"cycleEnd": "2026-11-01T00:00:00.000Z", "handOver": true, "side": "client",
                "part": {"index": 2, "of": 5}})
        );
        assert_eq!(slice_from_event(&event), Ok(Some(slice)));
        // An off-cycle run's continuation says so again.
        let off = BillingRun::new(CycleEnd::parse("2026-11-10T00:00:00Z").unwrap());
        assert_eq!(
            continuation(&off, None),
            json!({"cycleEnd": "2026-11-10T00:00:00.000Z", "handOver": true, "offCycle": true})
        );
    }

    #[test]
    fn a_resume_position_is_checked_strictly() {
        let cycle_end = CycleEnd::parse("2026-11-01T00:00:00Z").unwrap();
        let client = BillingSlice { side: StatementKind::Client, part: Some(Part::new(1, 4).unwrap()) };
        let after = json!({"pk": "ACCOUNT#acct-1", "sk": "PURCHASE#p1", "unbilledClientPk": "UNBILLED#2",
            "unbilledClientSk": "2026-10-30T10:00:00.000Z#p1"});
        let resume =
            |v: Value, slice: Option<&BillingSlice>| resume_from_event(&json!({"resumeAt": v}), slice, &cycle_end);
        let at = resume(json!({"shard": 2, "after": after}), Some(&client)).unwrap().unwrap();
        assert_eq!(at.shard, 2);
        // What a hand-over writes is what the next invocation reads.
        assert_eq!(resume(at.to_json(), Some(&client)).unwrap(), Some(at.clone()));
        assert_eq!(resume(json!({"shard": 3}), Some(&client)).unwrap(), Some(ResumeAt { shard: 3, after: None }));
        assert_eq!(resume_from_event(&json!({}), Some(&client), &cycle_end).unwrap(), None);
        let with = |field: &str, value: Value| {
            let mut after = after.clone();
            if value.is_null() {
                after.as_object_mut().unwrap().remove(field);
            } else {
                after[field] = value;
            }
            json!({"shard": 2, "after": after})
        };
        for (bad, slice, says) in [
            (json!({"shard": 2}), None, "`resumeAt` needs `side`"),
            (json!([2]), Some(&client), "`resumeAt` must be"),
            (json!({"after": after}), Some(&client), "`resumeAt.shard` is required"),
            (json!({"shard": 4}), Some(&client), "`resumeAt.shard` must be 0..4"),
            (json!({"shard": -1}), Some(&client), "`resumeAt.shard` must be"),
            (json!({"shard": "1"}), Some(&client), "`resumeAt.shard` must be"),
            (json!({"shard": 2, "page": 1}), Some(&client), "unknown field `resumeAt.page`"),
            (json!({"shard": 2, "after": "x"}), Some(&client), "must be an object"),
            // The key of shard 2 given as shard 1's, or of the other side's index.
            (json!({"shard": 1, "after": after}), Some(&client), "is not shard 1's partition"),
            (with("unbilledClientSk", json!("2026-11-01T00:00:00.000Z#p1")), Some(&client), "not before the cycle end"),
            (with("unbilledClientSk", json!(3)), Some(&client), "must be a non-empty string"),
            (with("pk", json!("AGENCY#x")), Some(&client), "not a purchase's key"),
            (with("sk", json!("STATEMENT#x")), Some(&client), "not a purchase's key"),
            (with("sk", Value::Null), Some(&client), "`resumeAt.after.sk` is required"),
            (with("other", json!("x")), Some(&client), "unknown field `resumeAt.after.other`"),
            (
                json!({"shard": 2, "after": after}),
                Some(&BillingSlice { side: StatementKind::Agency, part: None }),
                "unknown field `resumeAt.after.unbilledClientPk`",
            ),
        ] {
            match resume(bad.clone(), slice) {
                Err(BillingError::InvalidEvent(message)) => assert!(message.contains(says), "{bad}: {message}"),
                other => panic!("{bad}: expected InvalidEvent, got {other:?}"),
            }
        }
    }

    #[test]
    fn every_failure_has_its_own_error_type() {
        let diagnostic = |e: BillingError| Diagnostic::from(e);
        for (error, error_type) in [
            (BillingError::InvalidEvent("x".into()), "InvalidBillingEvent"),
            (BillingError::OutOfTime, "OutOfTime"),
            (BillingError::Storage(StoreError::Unavailable("x".into())), "StorageUnavailable"),
            (BillingError::Storage(StoreError::Internal("x".into())), "StorageError"),
        ] {
            let message = error.to_string();
            assert_eq!(diagnostic(error), Diagnostic { error_type: error_type.into(), error_message: message });
        }
    }
}
