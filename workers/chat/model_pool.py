"""Models for chat and compare: each distinct base loaded once, its adapters attached and switched by peft.

Switching between adapters of one base is `set_adapter` (~1 ms, no weight copies); the base itself is
served from the same weights with `disable_adapter()`. A route stage's output is its experts' adapters on
that shared base behind its saved router (a classifier copy of the base; Arrow and X-LoRA, which mix the
experts per token, get a base of their own).
Loading goes through workers.modeling, so pickle-only folders are refused and remote code runs only when
the target says so.
"""
from __future__ import annotations

import json
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from core.targets import is_routed
from workers.heldout import resolve_format
from workers.modeling import adapter_base, check_weights, is_adapter, load_full, load_tokenizer
from workers.routing import MixedModel, RoutedModel, load_router, load_xlora

TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")


@dataclass
class LoadedBase:
    """One base model in memory (a PeftModel once an adapter is attached) and its adapters by folder."""

    model: object
    adapters: dict[str, str] = field(default_factory=dict)  # adapter folder -> peft adapter name


@dataclass(frozen=True)
class Active:
    """A target ready to generate: the shared model, which adapter to switch on (None: the base), its tokenizer,
    and its prompt format (text after pretrain or without a chat template, else chat)."""

    label: str
    base: LoadedBase
    adapter: str | None
    tokenizer: object
    reused_base: bool
    format: str
    routed: object | None = None  # a route stage's model (generates through its router), used instead of base
    experts: tuple[str, ...] = ()  # ... and the experts it routes to


class ModelPool:
    """Loaded bases keyed by folder; a target is an adapter on one of them or a base itself."""

    def __init__(self):
        self._bases: dict[str, LoadedBase] = {}
        self._tokenizers: dict[str, object] = {}
        self._routed: dict[str, tuple[LoadedBase, object, tuple[str, ...]]] = {}

    @property
    def bases_loaded(self) -> int:
        return len(self._bases)

    def activate(self, target: dict) -> Active:
        """Load (or reuse) what `target` (a core.targets.Target as JSON) needs."""
        path, trust = _folder(target["path"]), bool(target.get("trust_remote_code"))
        check_weights(path)
        if is_routed(Path(path)):
            return self._activate_routed(path, target, trust)
        if is_adapter(path):
            base_path = _folder(target.get("base") or adapter_base(path))
            reused = base_path in self._bases
            loaded = self._base(base_path, trust)
            adapter = self._attach(loaded, path)
        else:
            reused = path in self._bases
            loaded, adapter = self._base(path, trust), None
        tokenizer = self._tokenizer(path, target, trust)
        return Active(target.get("label") or Path(path).name, loaded, adapter, tokenizer, reused,
                      resolve_format("auto", target.get("kind"), tokenizer))

    def _activate_routed(self, path: str, target: dict, trust: bool) -> Active:
        """A route stage's output (its folder's cockpit.json names the router, the experts and their base)."""
        reused = path in self._routed
        tokenizer = self._tokenizer(path, target, trust)
        if not reused:
            self._routed[path] = self._routed_model(path, trust, tokenizer.pad_token_id)
        loaded, model, experts = self._routed[path]
        return Active(target.get("label") or Path(path).name, loaded, None, tokenizer, reused,
                      resolve_format("auto", target.get("kind"), tokenizer), model, experts)

    def _routed_model(self, path: str, trust: bool, pad_token_id: int) -> tuple[LoadedBase, object, tuple[str, ...]]:
        meta = json.loads((Path(path) / "cockpit.json").read_text())
        names, folders = list(meta["experts"]), [_folder(p) for p in meta["experts"].values()]
        if meta["router"] in ("arrow", "xlora"):
            model = _mixing_model(meta, folders, str(Path(path) / "router"), trust)
            return LoadedBase(model), MixedModel(model, names) if meta["router"] == "xlora" else model, tuple(names)
        loaded = self._base(_folder(meta["base"]), trust)
        adapters = [self._attach(loaded, folder) for folder in folders]
        router = load_router(load_full(meta["base"], trust), str(Path(path) / "router"), len(names), pad_token_id)
        return loaded, RoutedModel(loaded.model, names, router.to(_device()), pad_token_id, adapters), tuple(names)

    def _base(self, path: str, trust: bool) -> LoadedBase:
        if path not in self._bases:
            model = load_full(path, trust).to(_device())
            model.eval()
            self._bases[path] = LoadedBase(model)
        return self._bases[path]

    def _attach(self, loaded: LoadedBase, adapter_path: str) -> str:
        """The peft name of an adapter on this base, loading it on first use."""
        if adapter_path in loaded.adapters:
            return loaded.adapters[adapter_path]
        from peft import PeftModel

        name = f"adapter_{len(loaded.adapters)}"
        if isinstance(loaded.model, PeftModel):
            loaded.model.load_adapter(adapter_path, adapter_name=name)
        else:
            loaded.model = PeftModel.from_pretrained(loaded.model, adapter_path, adapter_name=name)
        loaded.model.eval()
        loaded.adapters[adapter_path] = name
        return name

    def _tokenizer(self, path: str, target: dict, trust: bool):
        """The checkpoint's own tokenizer (and chat template), else its base's."""
        source = path
        if not any((Path(path) / f).is_file() for f in TOKENIZER_FILES) and target.get("base"):
            source = _folder(target["base"])
        if source not in self._tokenizers:
            self._tokenizers[source] = load_tokenizer(source, trust)
        return self._tokenizers[source]


@contextmanager
def using(active: Active):
    """The model with exactly this target's weights switched on."""
    if active.routed is not None:
        yield active.routed
        return
    model = active.base.model
    if active.adapter is not None:
        model.set_adapter(active.adapter)
        yield model
        return
    with (model.disable_adapter() if active.base.adapters else nullcontext()):
        yield model


def _mixing_model(meta: dict, experts: list[str], router: str, trust: bool):
    """Arrow or X-LoRA: the experts mixed per token inside one peft model, on a base of its own."""
    base = load_full(meta["base"], trust).to(_device())
    if meta["router"] == "xlora":
        return load_xlora(base, experts, Path(router))
    from peft import ArrowConfig, create_arrow_model

    return create_arrow_model(base, experts, ArrowConfig(top_k=min(meta.get("top_k", 1), len(experts)))).eval()


def _device() -> str:
    """The chat worker's own GPU when there is one (its memory stays apart from training's), else CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _folder(path: str) -> str:
    """Folders keyed by their resolved path; hub ids unchanged."""
    folder = Path(path)
    return str(folder.resolve()) if folder.is_dir() else path
