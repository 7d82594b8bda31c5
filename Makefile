# The README's two commands: `make demo` and `make test`. Both install what they need first.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint bench serve

install:
	@bash scripts/install.sh

demo: install
	$(BIN)/hotline demo

serve: install
	$(BIN)/hotline serve

# pytest exits 5 when no test ran; that is a failure here, as every other non-zero code.
test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy hotline telephony asr tts dialog routing recordings
