# The README commands: `make dev` runs the service locally, `make test` runs every test, `make bench` reports
# performance figures into bench/RESULTS.md (exit 0 even on a missed target; BENCH_ARGS=--quick for a short run).
BENCH_ARGS ?=

.PHONY: dev test bench build-GetPricingFunction build-PurchaseCreditsFunction build-GetBalancesFunction build-BillingRunFunction build-ListPurchasesFunction build-ListStatementsFunction build-ReconcileRunFunction build-RecordPaymentFunction build-StatementSweepFunction build-ConsumeCreditsFunction build-AgencyReadFunction build-AgencyWriteFunction build-CollectPaymentsFunction build-StripeWebhookFunction build-ProvisionAccountFunction build-PublishEventsFunction

dev:
	scripts/dev.sh

test:
	scripts/test.sh

bench:
	scripts/bench.sh $(BENCH_ARGS)

# `sam build` (BuildMethod: makefile, build_in_source in samconfig.toml) runs `make build-<LogicalId>` here with ARTIFACTS_DIR set.
# scripts/build-functions.sh builds every function at once on its first call and is a no-op afterwards; each
# target then copies its own bootstrap. A new function needs its target here (the template test checks it).
LAMBDA_DIR = $(or $(CARGO_TARGET_DIR),target)/lambda

define lambda_artifact
	scripts/build-functions.sh
	cp "$(LAMBDA_DIR)/$(1)/bootstrap" "$(ARTIFACTS_DIR)/bootstrap"
endef

build-GetPricingFunction:
	$(call lambda_artifact,get-pricing)

build-PurchaseCreditsFunction:
	$(call lambda_artifact,purchase-credits)

build-GetBalancesFunction:
	$(call lambda_artifact,get-balances)

build-BillingRunFunction:
	$(call lambda_artifact,billing-run)

build-ListPurchasesFunction:
	$(call lambda_artifact,list-purchases)

build-ListStatementsFunction:
	$(call lambda_artifact,list-statements)

build-ReconcileRunFunction:
	$(call lambda_artifact,reconcile-run)

build-RecordPaymentFunction:
	$(call lambda_artifact,record-payment)

build-StatementSweepFunction:
	$(call lambda_artifact,statement-sweep)

build-ConsumeCreditsFunction:
	$(call lambda_artifact,consume-credits)

build-AgencyReadFunction:
	$(call lambda_artifact,agency-read)

build-AgencyWriteFunction:
	$(call lambda_artifact,agency-write)

build-PublishEventsFunction:
	$(call lambda_artifact,publish-events)

build-CollectPaymentsFunction:
	$(call lambda_artifact,collect-payments)

build-StripeWebhookFunction:
	$(call lambda_artifact,stripe-webhook)

build-ProvisionAccountFunction:
	$(call lambda_artifact,provision-account)
