# Accuracy evaluation (docs/accuracy.md). Uses the main venv plus the `eval` extra (matplotlib for the DET plot).
EVAL_STAMP := $(VENV)/.eval-installed

$(EVAL_STAMP): $(STAMP) pyproject.toml constraints.txt
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[test,eval]'
	touch $(EVAL_STAMP)

.PHONY: eval eval-fit synth cue-cost probe stress

## make synth: synthetic print/replay attacks from the live clips in ../shared (into .cache/synth)
synth: $(STAMP)
	$(PY) -m tools.synth.generate

## make eval: per-clip scores, APCER/BPCER/ACER per configuration, eval/out/{figures.json,det.png}
eval: $(EVAL_STAMP)
	$(PY) -m tools.eval

## make eval-fit: refit models/fusion.json on ../shared + synthetic attacks (then make eval re-measures)
eval-fit: $(EVAL_STAMP)
	$(PY) -m tools.eval --reuse --fit-write models/fusion.json

## make cue-cost: ms per selected frame of each clip cue on the clips in ../shared (python -m tools.eval.cuecost)
cue-cost: $(STAMP)
	$(PY) -m tools.eval.cuecost

## make probe: a linear probe on the bundled CNNs' embeddings, leave-one-source-out (python -m tools.eval.probe)
probe: $(STAMP)
	$(PY) -m tools.eval.probe

## make stress: prints held still, and the real clips re-encoded harder, at half size, as MJPEG and as a hand-held camera films them, each scored by a fusion fitted without its source; after make eval
stress: $(EVAL_STAMP)
	$(PY) -m tools.eval.stress
