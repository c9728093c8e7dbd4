"""Models for chat and compare: each distinct base loaded once, its adapters attached and switched by peft.

Switching between adapters of one base is `set_adapter` (~1 ms, no weight copies); the base itself is
served from the same weights with `disable_adapter()`. Loading goes through workers.modeling, so
pickle-only folders are refused and remote code runs only when the target says so.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from workers.heldout import resolve_format
from workers.modeling import adapter_base, check_weights, is_adapter, load_full, load_tokenizer

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


class ModelPool:
    """Loaded bases keyed by folder; a target is an adapter on one of them or a base itself."""

    def __init__(self):
        self._bases: dict[str, LoadedBase] = {}
        self._tokenizers: dict[str, object] = {}

    @property
    def bases_loaded(self) -> int:
        return len(self._bases)

    def activate(self, target: dict) -> Active:
        """Load (or reuse) what `target` (a core.targets.Target as JSON) needs."""
        path, trust = _folder(target["path"]), bool(target.get("trust_remote_code"))
        check_weights(path)
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
    model = active.base.model
    if active.adapter is not None:
        model.set_adapter(active.adapter)
        yield model
        return
    with (model.disable_adapter() if active.base.adapters else nullcontext()):
        yield model


def _device() -> str:
    """The chat worker's own GPU when there is one (its memory stays apart from training's), else CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _folder(path: str) -> str:
    """Folders keyed by their resolved path; hub ids unchanged."""
    folder = Path(path)
    return str(folder.resolve()) if folder.is_dir() else path
