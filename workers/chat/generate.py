"""One chat reply: the checkpoint's own chat template, sampling settings, token streaming and stop."""
from __future__ import annotations

import threading
import time
from typing import Callable

from workers.chat.model_pool import Active, using

DEFAULTS = {"temperature": 0.7, "top_p": 0.95, "max_new_tokens": 128, "min_new_tokens": 0, "system": ""}


def with_system(messages: list[dict], system: str) -> list[dict]:
    """The conversation with the system prompt first (when one is set and none is there yet)."""
    if not system or (messages and messages[0]["role"] == "system"):
        return list(messages)
    return [{"role": "system", "content": system}, *messages]


def prompt_text(tokenizer, messages: list[dict], fmt: str) -> str:
    """In chat format, the chat template's rendering ending in the assistant's turn; in text format (a pretrain
    stage, or no template), the turns as plain text for the model to continue."""
    if fmt == "chat":
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return "\n".join(m["content"] for m in messages)


class TokenStream:
    """A generate() streamer that hands on each newly decodable piece of text as soon as its token exists."""

    def __init__(self, tokenizer, on_text: Callable[[str], None]):
        self.tokenizer, self.on_text = tokenizer, on_text
        self.ids: list[int] = []
        self.sent = ""
        self.first_token_at: float | None = None
        self.last_token_at: float | None = None
        self._prompt_seen = False

    def put(self, value) -> None:
        if not self._prompt_seen:  # generate() first pushes the prompt
            self._prompt_seen = True
            return
        now = time.perf_counter()
        self.first_token_at = self.first_token_at or now
        self.last_token_at = now
        self.ids.extend(value.reshape(-1).tolist())
        self._flush(final=False)

    def end(self) -> None:
        self._flush(final=True)

    @property
    def text(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=True)

    def _flush(self, final: bool) -> None:
        """Hand on the new text; "" when a token adds none yet (so the first token is always announced)."""
        text = self.text
        if (text.endswith("\ufffd") and not final) or len(text) <= len(self.sent):
            if not final:
                self.on_text("")
            return
        piece, self.sent = text[len(self.sent):], text
        self.on_text(piece)


class StopFlag:
    """A stopping criterion that ends generation when the client asks for it."""

    def __init__(self, flag: threading.Event):
        self.flag = flag

    def __call__(self, input_ids, scores, **_):
        import torch

        return torch.full((input_ids.shape[0],), self.flag.is_set(), dtype=torch.bool, device=input_ids.device)


def sampling_args(settings: dict) -> dict:
    """generate() keyword arguments from the chat settings; temperature 0 means greedy."""
    s = {**DEFAULTS, **settings}
    args = {"max_new_tokens": int(s["max_new_tokens"]), "min_new_tokens": int(s["min_new_tokens"]) or None}
    if float(s["temperature"]) > 0:
        args.update(do_sample=True, temperature=float(s["temperature"]), top_p=float(s["top_p"]))
    else:
        args["do_sample"] = False
    return args


def generate_reply(active: Active, messages: list[dict], settings: dict, stop: threading.Event,
                   on_text: Callable[[str], None]) -> dict:
    """Generate one reply, streaming text through `on_text`; the summary the `done` event carries."""
    import torch
    from transformers import StoppingCriteriaList

    started = time.perf_counter()
    tokenizer = active.tokenizer
    text = prompt_text(tokenizer, with_system(messages, settings.get("system", "")), active.format)
    enc = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    stream = TokenStream(tokenizer, on_text)
    with using(active) as model, torch.no_grad():
        model.generate(**enc.to(model.device), streamer=stream, pad_token_id=tokenizer.pad_token_id,
                       stopping_criteria=StoppingCriteriaList([StopFlag(stop)]), **sampling_args(settings))
        routes = getattr(model, "last_routes", None)  # a route stage: the expert its router picked
    return summary(stream, started, stop.is_set()) | {"expert": routes[0] if routes else None}


def summary(stream: TokenStream, started: float, stopped: bool) -> dict:
    """Reply text, token count, time to first token and decode speed (tokens after the first / their time)."""
    tokens = len(stream.ids)
    ttft = (stream.first_token_at - started) * 1000 if stream.first_token_at else None
    span = (stream.last_token_at or 0) - (stream.first_token_at or 0)
    return {"text": stream.sent, "tokens": tokens, "ttft_ms": ttft,
            "tokens_per_s": (tokens - 1) / span if tokens > 1 and span > 0 else None, "stopped": stopped}
