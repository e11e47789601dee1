# Service hardening (issue 5): long fuzz and load runs against a real daemon on an ephemeral loopback port.
#   make fuzz   >= 2,000 mutated clips (plus ../shared/data in place when present); counts by status and code
#   make load   2,000 mixed requests from 16 clients; statuses, p50/p95/p99, shed rate, peak/final RSS and growth
# Both exit non-zero on a rule violation (5xx, malformed error body, dead daemon, unexpected status, RSS growth).
FUZZ_INPUTS ?= 2000
FUZZ_SEED   ?= 1
LOAD_REQUESTS ?= 2000
LOAD_CLIENTS  ?= 16

.PHONY: fuzz load

fuzz: $(STAMP) $(TESTDATA)
	$(PY) -m tools.fuzz --inputs $(FUZZ_INPUTS) --seed $(FUZZ_SEED)

load: $(STAMP) $(TESTDATA)
	$(PY) -m tools.load --requests $(LOAD_REQUESTS) --clients $(LOAD_CLIENTS)
