"""Context-length phases within one stage: sequences cut per phase, one optimizer and LR schedule throughout."""
import json

import pytest

from conftest import WorkerRun
from core.config import TrainSpec
from core.config_load import load_curriculum
from core.errors import ConfigErrors
from core.run_state import RunState
from workers.context_phases import cut

PHASES = [{"steps": 3, "max_length": 16}, {"steps": 3, "max_length": 64}]
BATCH = 4


def test_max_length_as_a_list_is_phases_whose_steps_are_the_stages():
    train = TrainSpec.model_validate({"max_length": PHASES})
    assert (train.steps, train.max_length, train.phase_bounds()) == (6, 64, [(0, 16), (3, 64)])
    assert TrainSpec.model_validate(train.model_dump()).phase_bounds() == [(0, 16), (3, 64)]  # resolved config
    with pytest.raises(ValueError, match="add up to 6 steps but steps is 10"):
        TrainSpec.model_validate({"max_length": PHASES, "steps": 10})


def test_phases_only_where_whole_sequences_train(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("name: c\nstages:\n  - {name: p, kind: pretrain, data: 'builtin:arithmetic-text'}\n"
                      "  - name: d\n    kind: dpo\n    data: 'builtin:arithmetic-preference'\n"
                      f"    train: {{max_length: {json.dumps(PHASES)}}}\n")
    with pytest.raises(ConfigErrors) as err:
        load_curriculum(config)
    assert "c.yaml:7: stages.1.train.max_length: context phases (max_length as a list) are for pretrain and sft" \
        in str(err.value)


def test_a_packed_row_is_cut_with_its_lengths():
    row = {"input_ids": list(range(10)), "seq_lengths": [4, 3, 3], "text": "kept"}
    assert cut(row, 6) == {"input_ids": [0, 1, 2, 3, 4, 5], "seq_lengths": [4, 2], "text": "kept"}
    assert cut(row, 12) is row


def test_phases_switch_at_their_steps_with_one_schedule(tmp_path):
    data = tmp_path / "long.txt"
    data.write_text("".join(" ".join(f"{a}+{a + 1}={2 * a + 1}" for a in range(i, i + 12)) + "\n"
                            for i in range(200)))  # every line far longer than the first phase's 16 tokens
    run = WorkerRun(tmp_path / "run")
    train = {"steps": 6, "max_length": PHASES, "batch_size": BATCH, "save_steps": 3, "lr": 1e-3}
    spec = run.spec("text", kind="pretrain", data=str(data), lora=False, eval=False, train=train)
    done = run.run("pretrain", spec)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    with run.store() as store:
        phases = [(e.step, e.data) for e in store.events(kinds=["phase_started"], stage="text")]
        metrics = store.events(kinds=["metric"], stage="text")
    assert phases == [(0, {"phase": 1, "phases": 2, "max_length": 16}), (3, {"phase": 2, "phases": 2,
                                                                           "max_length": 64})]
    state = RunState()
    with run.store() as store:
        state.fold(store.events())
    assert state.phases["text"] == {0: 16, 3: 64}  # what the chart marks
    assert "context phase 2/2: sequences up to 64 tokens from step 3" in [e.text for e in state.events]
    tokens = {e.step: e.value for e in metrics if e.name == "num_tokens"}
    per_step = [tokens[s] - tokens.get(s - 1, 0) for s in range(1, 7)]
    assert all(n <= BATCH * 16 for n in per_step[:3]) and all(n > BATCH * 16 for n in per_step[3:]), per_step
    lrs = [e.value for e in sorted(metrics, key=lambda e: e.step) if e.name == "learning_rate"]
    assert lrs == sorted(lrs, reverse=True) and len(set(lrs)) == len(lrs)  # one cosine schedule, no restart

    resumed = run.spec("text", kind="pretrain", data=str(data), lora=False, eval=False, train=train, attempt=2,
                       resume_from=str(run.root / "stages/text/checkpoints/checkpoint-3"))
    with run.store() as store:
        after = store.last_event_id()
    assert run.run("pretrain", resumed).returncode == 0
    with run.store() as store:
        again = [(e.step, e.data["phase"]) for e in store.events(after_id=after, kinds=["phase_started"])]
    assert again == [(3, 2)]  # a resume inside the second phase starts there
