# Two commands a user needs: `make demo` and `make test`. Both create .venv on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SKY    ?= .venv-sky
SKY_STAMP := $(SKY)/.installed
PIP    := $(PY) -m pip install --quiet --constraint constraints.txt

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cockpit run configs/demo.yaml || test $$? -eq 4  # 4: you detached, the run goes on

# SkyPilot lives in its own environment: it pins click below what huggingface_hub needs (README, Scale)
$(SKY_STAMP):
	test -x $(SKY)/bin/python || python3 -m venv $(SKY)
	$(SKY)/bin/python -m pip install --quiet skypilot==0.14.1
	touch $(SKY_STAMP)

test: $(STAMP) $(SKY_STAMP)
	COCKPIT_SKYPILOT_PYTHON=$(SKY)/bin/python $(PY) -m pytest -q

clean:
	rm -rf $(VENV) $(SKY) runs .pytest_cache
