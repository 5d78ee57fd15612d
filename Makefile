# The README commands: `make dev` runs the service locally, `make test` runs every test, `make bench` reports
# performance figures into bench/RESULTS.md (exit 0 even on a missed target; BENCH_ARGS=--quick for a short run).
BENCH_ARGS ?=

.PHONY: dev test bench

dev:
	scripts/dev.sh

test:
	scripts/test.sh

bench:
	scripts/bench.sh $(BENCH_ARGS)
