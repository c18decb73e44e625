"""``patch(model, linear=..., attention=...)``: swap a Hugging Face decoder's layers for kaiodsl's.

Linear layers are replaced in place by ``kaiodsl.nn`` modules; attention is switched through
transformers' own attention registry (``AttentionInterface``) to a function over
``kaiodsl.ops.attention``, so the model's code is untouched. A layer kaiodsl cannot take (its
shape breaks a kernel's alignment rule) is left as it is and listed with the reason.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from torch import nn

from kaiodsl.errors import ArgumentError, KaioError

ATTENTION_NAME = "kaiodsl"


def _linear_kinds():
    from kaiodsl import nn as knn

    return {"float": knn.Linear.from_linear, "w8a8": knn.Int8Linear.from_linear,
            "w8a16": knn.W8A16Linear.from_linear, "w4a16": knn.Int4Linear.from_linear}


@dataclass
class PatchReport:
    """What ``patch`` swapped: ``linear`` maps module paths to the new class, ``skipped`` to the reason."""

    linear: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)
    attention: str = "not patched"
    parallel: str = ""

    def __str__(self) -> str:
        lines = [f"kaiodsl.patch: {len(self.linear)} linear layer(s) swapped, attention: {self.attention}"]
        lines += [f"  tensor parallel: {self.parallel}"] if self.parallel else []
        lines += [f"  {name}: {kind}" for name, kind in self.linear.items()]
        lines += [f"  skipped {name}: {why}" for name, why in self.skipped.items()]
        return "\n".join(lines)


def patch(model: nn.Module, linear: str | None = "float", attention="auto", skip=None, tp=None) -> PatchReport:
    """Swap ``model``'s ``nn.Linear`` layers and attention for kaiodsl's; returns a ``PatchReport``.

    ``linear``: ``"float"`` (f16/bf16 ``kaiodsl.nn.Linear``, the model's dtype), ``"w8a8"``, ``"w8a16"``,
    ``"w4a16"``, or None (leave them). ``attention``: True, False or ``"auto"`` (when this install has
    ``kaiodsl.ops.attention``). ``skip``: module-path patterns left alone (default: ``lm_head`` for
    the quantized kinds, nothing for ``"float"``).

    ``tp``: tensor parallelism (kaiodsl/torch/parallel.py): a ProcessGroup, ``"default"``, ``(rank,
    world_size)`` or a ``TensorParallel``. Each decoder layer's attention and MLP become this rank's
    Megatron-style blocks (``linear``: ``"float"``, ``"w8a16"`` or ``"w4a16"``; kaiodsl attention);
    what stays replicated (``lm_head``) is swapped as without ``tp``.
    """
    kinds = _linear_kinds()
    if linear is not None and linear not in kinds:
        raise ArgumentError(f"patch(): linear must be one of {', '.join(map(repr, kinds))} or None, got {linear!r}")
    if attention not in (True, False, "auto"):
        raise ArgumentError(f"patch(): attention must be True, False or 'auto', got {attention!r}")
    report = PatchReport()
    if tp is not None:
        from .parallel import WEIGHTS, shard_llama

        if linear not in WEIGHTS or attention is False:
            raise ArgumentError(f"patch(tp=...): tensor parallelism needs linear in {WEIGHTS} and kaiodsl "
                                f"attention (True or 'auto'), got linear={linear!r}, attention={attention!r}")
        report.parallel = shard_llama(model, tp, linear)
        attention = True
    if linear is not None:
        skip = (() if linear == "float" else ("lm_head",)) if skip is None else tuple(skip)
        _swap_linears(model, kinds[linear], skip, report)
    if attention:
        _patch_attention(model, attention, report)
    return report


def _swap_linears(model, make, skip, report) -> None:
    targets = [(name, m) for name, m in model.named_modules() if type(m) is nn.Linear]
    for name, m in targets:
        if any(fnmatch.fnmatch(name, p) or name.split(".")[-1] == p for p in skip):
            report.skipped[name] = "skipped by the skip patterns"
            continue
        try:
            new = make(m)
        except KaioError as e:
            report.skipped[name] = str(e)
            continue
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
        report.linear[name] = type(new).__name__


def _patch_attention(model, attention, report) -> None:
    from . import has_op

    if not has_op("attention"):
        if attention is True:
            raise KaioError("patch(attention=True): kaiodsl.ops.attention is not part of this kaiodsl install; "
                            "pass attention='auto' or False")
        report.attention = "not patched (kaiodsl.ops.attention is not in this install)"
        return
    try:
        from transformers import AttentionInterface
    except ImportError as e:
        raise KaioError("patch(): attention patching needs transformers (AttentionInterface)") from e
    AttentionInterface.register(ATTENTION_NAME, hf_attention)
    try:                                          # the causal-only mask: None when no padding (is_causal path)
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface, sdpa_mask

        AttentionMaskInterface.register(ATTENTION_NAME, ALL_MASK_ATTENTION_FUNCTIONS.get("sdpa", sdpa_mask))
    except ImportError:
        pass
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(ATTENTION_NAME)
    else:
        model.config._attn_implementation = ATTENTION_NAME
    report.attention = ATTENTION_NAME


def hf_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, is_causal=None,
                 **kwargs):
    """transformers' attention-function contract over kaiodsl.ops.attention: [B, H, S, D] in,
    ([B, S, H, D], None) out. Causal alignment is bottom-right, which is what a KV cache needs
    (for S_q == S_k it is torch's top-left mask)."""
    import kaiodsl.torch as kt

    if attention_mask is not None:
        raise ArgumentError("kaiodsl attention: got an explicit 'attention_mask' (padding or a custom mask); "
                            "kaiodsl's attention supports causal masking only: run without padding")
    if dropout:
        raise ArgumentError(f"kaiodsl attention: 'dropout'={dropout} is not supported; use model.eval() or "
                            f"attention_dropout=0")
    causal = getattr(module, "is_causal", True) if is_causal is None else is_causal
    mode = "bottom_right" if causal and query.shape[2] > 1 else False
    out = kt.attention(query, key, value, causal=mode, scale=scaling)
    return out.transpose(1, 2).contiguous(), None
