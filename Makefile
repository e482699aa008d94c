# The two commands of the README, each doing its own set-up on a fresh machine:
#   make demo   train the quick model, start a broker + the agent, replay flows, score the verdicts
#   make test   lint + the whole test suite (real Mosquitto, real interpreters, real training)
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: demo test lint setup broker clean

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[agent,flowmeter,lab,train,bundle,dev,demo]'
	touch $@

setup: $(BIN)/.installed

# Mosquitto from the distribution when missing (root or passwordless sudo); the demo can do without it.
broker:
	@if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then exit 0; fi; \
	 SUDO=$$( [ "$$(id -u)" = 0 ] && echo "" || echo "sudo -n" ); \
	 echo "installing mosquitto (apt-get)"; \
	 ($$SUDO apt-get install -y mosquitto >/dev/null 2>&1 || ($$SUDO apt-get update >/dev/null && $$SUDO apt-get install -y mosquitto >/dev/null)) \
	 || echo "WARNING: could not install mosquitto (the tests need it; the demo falls back to amqtt)"

demo: setup
	@$(MAKE) --no-print-directory broker || true
	$(BIN)/iotids-demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup broker lint
	$(BIN)/pytest -q --durations=25

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
