"""Chat and compare against a real tiny lineage: targets, streaming, stop, history, refusals, CLI."""
from __future__ import annotations

import dataclasses
import json
import threading

import pytest

from rich.console import Console
from transformers import AutoTokenizer

from cli.main import main
from core.chat_client import ChatSession, GenerationSettings, chat_history, prompt_set, run_compare
from core.errors import UserError
from core.runs import find_run
from core.store import RunStore
from core.targets import Target, lineage_targets, resolve_target, resolve_targets, run_targets
from workers.chat.generate import prompt_text
from tui.compare_tables import outputs_table, shown_prompts
from tiny_lineage import chat_worker, lineage_runs, pickle_only_folder  # noqa: F401  (fixtures: worker, runs)

GREEDY = GenerationSettings(temperature=0.0, max_new_tokens=12)


def test_every_target_form_resolves(runs):
    run = find_run(runs, "latest")
    assert resolve_target("latest:sft", runs).path == str(run.stage_final("sft"))
    step = resolve_target(f"{run.id}:sft@2", runs)
    assert step.path.endswith("checkpoint-2") and step.base == str(run.base.resolve())
    assert resolve_target("latest:dpo", runs).base == str(run.stage_final("sft"))
    assert resolve_target("latest:base", runs).base is None
    assert resolve_target(str(run.stage_final("dpo")), runs).base == str(run.stage_final("sft"))
    assert [t.label for t in run_targets(run)] == ["base", "sft@2", "sft@4", "sft", "dpo"]
    assert [t.label for t in lineage_targets(run)] == ["base", "sft", "dpo"]
    assert [t.label for t in resolve_targets(["latest"], runs)] == ["base", "sft", "dpo"]


@pytest.mark.parametrize("text, words", [
    ("latest:nope", "no stage 'nope'"), ("latest:sft@3", "no complete checkpoint at step 3 (checkpoints: 2, 4)"),
    ("latest:sft@x", "step must be a number"), ("nosuchrun:sft", "no run 'nosuchrun'"),
    ("/no/such/folder", "neither a folder nor RUN:STAGE")])
def test_missing_targets_are_clear_errors(runs, text, words):
    with pytest.raises(UserError, match=words.replace("(", r"\(").replace(")", r"\)")):
        resolve_target(text, runs)


def test_reply_streams_and_history_is_saved(runs, worker):
    target = resolve_target("latest:sft", runs)
    session = ChatSession(worker, target)
    assert session.load()["adapter"] is True
    pieces = []
    reply = session.send("What is 2+3?", GREEDY, pieces.append)
    assert reply.text == "".join(pieces) and reply.tokens >= 1 and reply.ttft_ms > 0
    again = session.send("And 4+4?", GREEDY)
    assert [m["role"] for m in session.history] == ["user", "assistant"] * 2
    turns = chat_history(target.run_paths, session.session)
    assert [(t["role"], t["content"]) for t in turns] == [(m["role"], m["content"]) for m in session.history]
    assert turns[-1]["content"] == again.text and turns[-1]["ttft_ms"] > 0 and turns[-1]["target"] == "sft"


def test_every_target_loads_and_adapters_share_their_base(runs, worker):
    replies = {}
    for text in ("latest:sft@2", "latest:sft@4", "latest:base", "latest:dpo", str(find_run(runs, "latest").base)):
        session = ChatSession(worker, resolve_target(text, runs))
        loaded = session.load()
        replies[text] = session.send("What is 7+8?", GREEDY).text
        if text in ("latest:sft@4", "latest:base"):
            assert loaded["reused_base"], text
    assert len({replies["latest:sft@2"], replies["latest:sft@4"], replies["latest:base"]}) == 3


def test_stop_ends_a_long_generation(runs, worker):
    session = ChatSession(worker, resolve_target("latest:sft", runs))
    session.load()
    first = threading.Event()
    long = GenerationSettings(temperature=1.0, max_new_tokens=200, min_new_tokens=200)
    stopper = threading.Thread(target=lambda: first.wait(30) and session.stop())
    stopper.start()
    reply = session.send("Tell me everything.", long, lambda _: first.set())
    stopper.join()
    assert reply.stopped and 1 <= reply.tokens < 200


def test_pickle_only_folder_is_refused_by_the_worker_too(runs, worker, tmp_path):
    folder = pickle_only_folder(tmp_path)
    target = Target("pickled", str(folder))
    with pytest.raises(UserError, match="only pickle weights"):
        ChatSession(worker, target).load()


def test_cli_refuses_pickle_and_missing_targets(runs, tmp_path, capsys):
    assert main(["chat", str(pickle_only_folder(tmp_path)), "--prompt", "hi", "--runs-dir", str(runs)]) == 2
    assert "only pickle weights" in capsys.readouterr().err
    assert main(["chat", "latest:ghost", "--prompt", "hi", "--runs-dir", str(runs)]) == 2
    assert "no stage 'ghost'" in capsys.readouterr().err


def test_cli_prompt_prints_the_reply(runs, worker, capsys):
    session = ChatSession(worker, resolve_target("latest:sft@4", runs))
    session.load()
    expected = session.send("What is 1+1?", GREEDY).text
    assert main(["chat", "latest:sft@4", "--prompt", "What is 1+1?", "--temperature", "0", "--max-new-tokens",
                 "12", "--runs-dir", str(runs)]) == 0
    assert capsys.readouterr().out == expected + "\n"
    # a script that gives no --temperature gets the greedy reply too, every time
    assert main(["chat", "latest:sft@4", "--prompt", "What is 1+1?", "--max-new-tokens", "12",
                 "--runs-dir", str(runs)]) == 0
    assert capsys.readouterr().out == expected + "\n"


def test_compare_matches_the_recorded_eval(runs, capsys):
    assert main(["compare", "latest:base", "latest:sft", "latest:dpo", "--json",
                 "--runs-dir", str(runs)]) == 0
    result = json.loads(capsys.readouterr().out)
    metrics = {m["target"]: m for m in result["metrics"]}
    assert list(metrics) == ["base", "sft", "dpo"] and result["bases_loaded"] == 2
    with RunStore(find_run(runs, "latest").db) as store:
        recorded = store.final_metrics("sft")
    assert metrics["sft"]["accuracy"] == recorded["eval/accuracy"]
    assert metrics["sft"]["perplexity"] == pytest.approx(recorded["eval/perplexity"], rel=1e-5)
    assert len(result["prompts"]) == 24 and len({metrics[t]["perplexity"] for t in metrics}) == 3
    assert all(set(p["outputs"]) == set(metrics) for p in result["prompts"])


def test_compare_marks_answers_and_shows_the_notable_prompts_first(runs, worker):
    targets = resolve_targets(["latest:base", "latest:sft"], runs)
    result = run_compare(worker, targets, prompt_set(targets))
    for res in result.results:  # the marks are the accuracy, prompt by prompt
        assert sum(res["right"]) == round(res["accuracy"] * res["answered"])
    order = shown_prompts(result, only_notable=False)
    notable = [i for i in order if result.notable(i)]
    assert order[:len(notable)] == notable and sorted(order) == list(range(len(result.rows)))
    wrong = sum(res["right"][i] is False for res in result.results for i in notable)
    console = Console(width=120, record=True)
    console.print(outputs_table(result, only_notable=True))
    text = console.export_text()
    assert f"{len(notable)} of {len(result.rows)} prompts differ or have a wrong answer, only those" in text
    assert text.count("✗ ") == wrong + 1 and wrong > 0 and text.count("answer:") == len(notable)  # +1: the key


def test_a_text_model_is_prompted_with_plain_text(runs, worker):
    """A pretrain stage never saw the chat template: its prompt goes in as text, and the load says so."""
    text_target = dataclasses.replace(resolve_target("latest:base", runs), kind="pretrain")
    assert ChatSession(worker, text_target).load()["format"] == "text"
    assert ChatSession(worker, resolve_target("latest:base", runs)).load()["format"] == "chat"
    tokenizer = AutoTokenizer.from_pretrained(find_run(runs, "latest").base)
    turn = [{"role": "user", "content": "37+48="}]
    assert prompt_text(tokenizer, turn, "text") == "37+48=" and prompt_text(tokenizer, turn, "chat").startswith("<")
