"""The distill stage kind: a student trained against a teacher through TRL's DistillationTrainer (jsd),
GKDTrainer (gkd) and SDPOTrainer (sdpo, the student shown feedback is its own teacher)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from core.config_load import load_curriculum
from core.dag import Holds
from core.errors import ConfigError
from core.store import RunStore
from conftest import run_batch

ROOT = Path(__file__).resolve().parents[1]
TRAIN = "{steps: 3, batch_size: 4, max_length: 48, logging_steps: 1, lr: 0.001, threads: 1, max_completion_length: 8}"


def _run(tmp_path: Path, stages: str) -> Path:
    """Run a curriculum of `stages` (YAML lines) through the CLI; the run's folder."""
    config = tmp_path / "d.yaml"
    config.write_text(f"name: d\ndefaults: {{train: {TRAIN}}}\nstages:\n{stages}")
    return run_batch(config)


def _moved(run: Path, stage: str) -> bool:
    """Whether a full-weights stage's final/ differs from the base model it started from."""
    trained, base = load_file(run / "stages" / stage / "final" / "model.safetensors"), \
        load_file(run / "base" / "model.safetensors")
    return any(not (trained[k] == base[k]).all() for k in base)


def test_a_jsd_student_from_base_learns_from_an_adapter_teacher(tmp_path):
    run = _run(tmp_path, """
  - {name: text, kind: pretrain, data: "builtin:arithmetic-text", lora: false, eval: false}
  - {name: teacher, kind: sft, data: "builtin:arithmetic-chat", lora: {r: 8, alpha: 16}, eval: false}
  - {name: student, kind: distill, from: base, data: "builtin:arithmetic-chat", lora: false, eval: false,
     distill: {method: jsd, teacher: teacher, beta: 0.5}}
""")
    teacher = run / "stages" / "teacher" / "final"
    assert (teacher / "adapter_config.json").is_file()  # loaded with its chain (text's weights) merged in
    spec = json.loads((run / "stages" / "student" / "spec.json").read_text())
    assert spec["input_model"] is None and spec["teacher_model"] == str(teacher.resolve())
    assert f"teacher loaded from {teacher.resolve()}" in (run / "stages" / "student" / "worker.log").read_text()
    with RunStore(run / "run.db") as store:
        metrics = store.final_metrics("student")
        steps = sorted(e.step for e in store.events(kinds=["metric"], stage="student") if e.name == "loss")
    assert steps == [1, 2, 3] and metrics["loss"] > 0 and metrics["completions/mean_length"] > 0
    assert _moved(run, "student")


def test_sdpo_distills_the_student_shown_the_answer_into_itself(tmp_path):
    run = _run(tmp_path, """
  - {name: self, kind: distill, data: "builtin:arithmetic-prompts", rewards: [exact_match], lora: false,
     eval: false, train: {num_generations: 2}, distill: {method: sdpo, feedback: answer},
     gate: {require: {self_distillation/feedback_used_fraction: {min: 1.0}}}}
""")
    spec = json.loads((run / "stages" / "self" / "spec.json").read_text())
    assert spec["teacher_model"] is None
    with RunStore(run / "run.db") as store:
        metrics = store.final_metrics("self")
        assert store.stage("self")["status"] == "passed"  # its gate read a metric SDPO logs
    assert {"loss", "self_distillation/distillation_loss", "sdpo/distillation_loss",
            "self_distillation/rewards/exact_match", "self_distillation/reprompt_sample_fraction"} <= set(metrics)
    assert metrics["self_distillation/feedback_used_fraction"] == 1.0  # every row's answer shown as feedback
    assert _moved(run, "self")


def test_gkd_trains_the_student_toward_its_teacher_on_its_own_and_the_datas_completions(tmp_path):
    run = _run(tmp_path, """
  - {name: teacher, kind: sft, data: "builtin:arithmetic-chat", lora: false, eval: false}
  - {name: student, kind: distill, from: base, data: "builtin:arithmetic-chat", lora: false, eval: false,
     distill: {method: gkd, teacher: teacher, lmbda: 0.5, beta: 0.1}}
""")
    with RunStore(run / "run.db") as store:
        losses = [e.value for e in store.events(kinds=["metric"], stage="student") if e.name == "loss"]
    assert len(losses) == 3 and all(v > 0 for v in losses)
    assert _moved(run, "student")


HEAD = "name: c\nstages:\n  - {name: p, kind: pretrain, data: 'builtin:arithmetic-text'}\n  - {name: check, kind: eval}\n"
CHAT = "data: 'builtin:arithmetic-chat'"


@pytest.mark.parametrize("stage, field, words", [
    (f"{{name: d, kind: distill, {CHAT}, distill: {{teacher: later}}}}", "stages.2.distill.teacher",
     "'later' names a later stage; teacher: must name an earlier stage, base or a model folder"),
    (f"{{name: d, kind: distill, {CHAT}, distill: {{teacher: d}}}}", "stages.2.distill.teacher",
     "'d' names this stage"),
    (f"{{name: d, kind: distill, {CHAT}, distill: {{teacher: check}}}}", "stages.2.distill.teacher",
     "'check' only evaluates: it writes no model to teach with"),
    (f"{{name: d, kind: distill, {CHAT}, distill: {{method: gkd, teacher: pp}}}}", "stages.2.distill.teacher",
     r"'pp' names no stage \(did you mean 'p'\?\)"),
    (f"{{name: d, kind: distill, {CHAT}, distill: {{teacher: ./nowhere}}}}", "stages.2.distill.teacher",
     "model folder './nowhere' not found"),
    (f"{{name: d, kind: distill, {CHAT}}}", "stages.2.kind", "a jsd distill stage needs distill.teacher"),
    ("{name: d, kind: distill, data: 'builtin:arithmetic-prompts', distill: {method: sdpo, teacher: p}}",
     "stages.2.distill.teacher", r"teacher is read by jsd and gkd distillation, not sdpo \(its student teaches"),
    (f"{{name: d, kind: distill, {CHAT}, distill: {{teacher: p, feedback: answer}}}}", "stages.2.distill.feedback",
     "feedback is read by sdpo distillation, not jsd"),
    (f"{{name: d, kind: distill, {CHAT}, rewards: [format], distill: {{teacher: p}}}}", "stages.2.rewards",
     "rewards are read by sdpo distillation, not jsd"),
    (f"{{name: d, kind: distill, {CHAT}, train: {{beta: 0.2}}, distill: {{teacher: p}}}}", "stages.2.train.beta",
     "set by distill.beta, not train.beta"),
    (f"{{name: d, kind: distill, {CHAT}, distill: {{teacher: p}}, trl: {{distillation_weight: 0.5}}}}",
     "stages.2.trl.distillation_weight", "DistillationConfig has no field 'distillation_weight'"),
    (f"{{name: d, kind: distill, {CHAT}, distill: {{method: gkd, teacher: p}}, trl: {{lmbda: 0.5}}}}",
     "stages.2.trl.lmbda", "lmbda is set by distill.lmbda, not through trl:"),
    (f"{{name: s, kind: sft, {CHAT}, distill: {{teacher: p}}}}", "stages.2.distill",
     "distill is read by distill stages, not sft"),
])
def test_a_teacher_and_the_methods_fields_are_checked_at_load(tmp_path, stage, field, words):
    path = tmp_path / "c.yaml"
    path.write_text(HEAD + f"  - {stage}\n  - {{name: later, kind: sft, {CHAT}}}\n")
    with pytest.raises(ConfigError, match=words) as caught:
        load_curriculum(path)
    assert any(e.field == field and e.line == 5 for e in getattr(caught.value, "errors", [caught.value])), \
        str(caught.value)


def test_cockpit_check_reports_a_bad_teacher_without_a_traceback(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(HEAD + f"  - {{name: d, kind: distill, {CHAT}, distill: {{teacher: bas}}}}\n")
    done = subprocess.run([sys.executable, "-m", "cli.main", "check", str(path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{path}:5: stages.2.distill.teacher: 'bas' names no stage (did you mean 'base'?)" in done.stderr


def test_each_method_takes_its_own_trl_settings_and_a_teacher_folder_is_made_absolute(tmp_path):
    folder = tmp_path / "teachers" / "t"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"")
    path = tmp_path / "c.yaml"
    path.write_text(HEAD + f"  - {{name: j, kind: distill, {CHAT}, distill: {{teacher: teachers/t}}, "
                    "trl: {top_p: 0.9}}\n"
                    f"  - {{name: g, kind: distill, {CHAT}, distill: {{method: gkd, teacher: base}}, "
                    "trl: {disable_dropout: false}}\n"
                    "  - {name: s, kind: distill, data: 'builtin:arithmetic-prompts', distill: {method: sdpo}, "
                    "trl: {distillation_weight: 0.5}}\n")
    j, g, s = load_curriculum(path).stages[2:]
    assert j.distill.teacher == str(folder.resolve()) and g.distill.teacher == "base" and s.distill.teacher is None
    assert s.row_fields() == ("prompt", "answer")  # prompts, and the column exact_match reads


def test_a_teacher_that_did_not_pass_holds_its_students_back(tmp_path):
    path = tmp_path / "h.yaml"
    path.write_text("name: h\nstages:\n  - {name: p, kind: pretrain, data: 'builtin:arithmetic-text'}\n"
                    f"  - {{name: t, kind: sft, {CHAT}}}\n"
                    f"  - {{name: d, kind: distill, from: base, {CHAT}, distill: {{teacher: t}}}}\n"
                    f"  - {{name: free, kind: distill, from: base, {CHAT}, distill: {{teacher: base}}}}\n")
    p, t, d, free = load_curriculum(path).stages
    holds = Holds()
    assert holds.held(d) is None
    holds.ended_badly(p, "failed")
    assert holds.held(t) == "p failed"  # t starts from p: skipped, and so its student too
    assert holds.held(d) == "p failed" and holds.held(free) is None
