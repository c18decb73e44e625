"""``scaled_dot_product_attention`` with torch's signature, on ``kaiodsl.ops.attention``."""

from __future__ import annotations

import kaiodsl.torch as kt
from kaiodsl.errors import ArgumentError


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale=None, enable_gqa: bool = False):
    """As ``torch.nn.functional.scaled_dot_product_attention`` over [B, H, S, D] tensors: causal masking
    (top-left aligned, as torch's ``is_causal``), ``scale`` and GQA (``enable_gqa``: H a multiple of H_kv).
    An arbitrary ``attn_mask`` and dropout are not supported: they raise, naming the argument."""
    if attn_mask is not None:
        raise ArgumentError("scaled_dot_product_attention(): 'attn_mask' is not supported by kaiodsl's attention "
                            "(only causal masking): pass attn_mask=None and is_causal=True, or use torch's sdpa")
    if dropout_p:
        raise ArgumentError(f"scaled_dot_product_attention(): 'dropout_p'={dropout_p} is not supported; "
                            f"kaiodsl's attention has no dropout: pass dropout_p=0.0")
    for name, t in (("query", query), ("key", key), ("value", value)):
        if t.dim() != 4:
            raise ArgumentError(f"scaled_dot_product_attention(): '{name}' must be 4-D [B, H, S, D], "
                                f"got shape {tuple(t.shape)}")
    hq, hkv = query.shape[1], key.shape[1]
    if hq != hkv and not enable_gqa:
        raise ArgumentError(f"scaled_dot_product_attention(): query has {hq} heads and key {hkv}: "
                            f"pass enable_gqa=True for grouped-query attention")
    if hq % hkv:
        raise ArgumentError(f"scaled_dot_product_attention(): query heads {hq} must be a multiple of key "
                            f"heads {hkv} (enable_gqa)")
    return kt.attention(query, key, value, causal="top_left" if is_causal else False, scale=scale)
