"""Tensor parallelism for Llama blocks on kaiodsl's kernels, in Megatron-LM's layout (Shoeybi et al.
2019, sec. 3): each block does one all-reduce and nothing else crosses ranks.

* Attention: the QKV projection is column-parallel (rank r of W holds query heads
  [r H/W, (r+1) H/W) and, GQA, kv heads [r H_kv/W, (r+1) H_kv/W), so each rank's query heads
  read only its own kv heads), attention runs on the local heads, the output projection is
  row-parallel (its input columns are the local heads) and the partial outputs are summed.
* MLP: gate and up are one column-parallel matmul over the rank's slice of the intermediate
  dimension, down is row-parallel, then the sum.

Weights: ``"float"`` (the model's f16/bf16), ``"w8a16"`` or ``"w4a16"``. A quantized matrix is
quantized whole, as the single-GPU block does, and then sliced, so a rank computes exactly its part
of the single-GPU product: int8 per output channel (a row-parallel slice keeps its rows' scales),
int4 per group along K (a row-parallel slice must hold whole groups). The blocks are for inference
and for activation gradients (Megatron's f / g pair); quantized weights take no gradient.

``shard_llama`` (what ``kaiodsl.torch.patch(model, tp=...)`` calls) swaps every decoder layer's
attention and MLP of a transformers Llama model for these blocks. See docs/torch.md.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist
from torch import nn

from kaiodsl.errors import ArgumentError

WEIGHTS = ("float", "w8a16", "w4a16")


@dataclass(frozen=True)
class TensorParallel:
    """This process's place: ``rank`` of ``world_size``, summing over ``group`` (a torch.distributed
    ProcessGroup; None: the default group). ``world_size=1`` is the single-GPU block (no collective)."""

    rank: int = 0
    world_size: int = 1
    group: object = None

    def __post_init__(self):
        for name in ("rank", "world_size"):
            v = getattr(self, name)
            if type(v) is not int or v < 0:
                raise ArgumentError(f"TensorParallel: {name} must be a non-negative int, got {v!r}")
        if self.world_size < 1 or self.rank >= self.world_size:
            raise ArgumentError(f"TensorParallel: rank={self.rank} must lie in [0, world_size={self.world_size})")

    def slice(self, n: int, what: str) -> slice:
        """This rank's contiguous share of ``n`` items (heads, channels); ``n`` must divide evenly."""
        if n % self.world_size:
            raise ArgumentError(f"tensor parallel: {what}={n} must be divisible by world_size={self.world_size} "
                                f"(each rank holds {what} / world_size)")
        step = n // self.world_size
        return slice(self.rank * step, (self.rank + 1) * step)


def tensor_parallel(tp=None) -> TensorParallel:
    """``tp`` as a TensorParallel: one already, ``(rank, world_size)``, a ProcessGroup (its rank and
    size), ``"default"`` (the default group), or None (no tensor parallelism)."""
    if tp is None:
        return TensorParallel()
    if isinstance(tp, TensorParallel):
        return tp
    if isinstance(tp, tuple) and len(tp) == 2:
        return TensorParallel(*tp)
    if tp == "default" or isinstance(tp, dist.ProcessGroup):
        if not dist.is_initialized():
            raise ArgumentError("tensor parallel: torch.distributed is not initialized; call "
                                "torch.distributed.init_process_group first (or pass (rank, world_size))")
        group = None if tp == "default" else tp
        return TensorParallel(dist.get_rank(group), dist.get_world_size(group), group)
    raise ArgumentError(f"tensor parallel: tp must be a TensorParallel, (rank, world_size), a ProcessGroup, "
                        f"'default' or None, got {tp!r}")


# -- the two collectives (Megatron's f and g) ----------------------------------------------------------
class _SumOverRanks(torch.autograd.Function):
    """g: the partial outputs summed; the output is replicated, so its gradient is each rank's own."""

    @staticmethod
    def forward(ctx, x, group):
        x = x.clone()
        dist.all_reduce(x, group=group)
        return x

    @staticmethod
    def backward(ctx, g):
        return g, None


class _CopyToRanks(torch.autograd.Function):
    """f: the replicated input, unchanged; its gradient is the sum of the ranks' partial gradients."""

    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        g = g.contiguous().clone()
        dist.all_reduce(g, group=ctx.group)
        return g, None


def _wants_grad(x) -> bool:
    return torch.is_grad_enabled() and x.requires_grad


def sum_over_ranks(x, tp: TensorParallel):
    """All-reduce (sum) of a row-parallel block's partial output; in place when no gradient is wanted
    (x is a kaiodsl op's fresh output)."""
    if tp.world_size == 1:
        return x
    if _wants_grad(x):
        return _SumOverRanks.apply(x, tp.group)
    dist.all_reduce(x, group=tp.group)
    return x


def copy_to_ranks(x, tp: TensorParallel):
    return _CopyToRanks.apply(x, tp.group) if tp.world_size > 1 and _wants_grad(x) else x


# -- local matmuls ---------------------------------------------------------------------------------------
def _as_linear(w, bias=None) -> nn.Linear:
    lin = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None, device="meta")
    lin.weight = nn.Parameter(w, requires_grad=False)
    if bias is not None:
        lin.bias = nn.Parameter(bias, requires_grad=False)
    return lin


def local_linear(weight, rows, cols, weights: str, bias=None, group_size: int = 128, what: str = "weight"):
    """The kaiodsl module for ``weight[rows][:, cols]`` (+ ``bias``): ``rows`` a slice or an index
    tensor (several slices of a fused projection), ``cols`` a slice. Quantized whole, then sliced."""
    if weights not in WEIGHTS:
        raise ArgumentError(f"tensor parallel: weights must be one of {', '.join(map(repr, WEIGHTS))}, "
                            f"got {weights!r}")
    from kaiodsl import nn as knn

    w = weight.detach()
    if weights == "float":
        return knn.Linear.from_linear(_as_linear(w[rows][:, cols].contiguous(), bias))
    if weights == "w8a16":
        w_q, scale = knn.quantize_per_channel_int8(w)          # per output channel over the whole row
        return knn.W8A16Linear(w_q[rows][:, cols], scale[rows], bias, dtype=w.dtype)
    start, stop = cols.indices(w.shape[1])[:2]
    if start % group_size or (stop - start) % group_size:
        raise ArgumentError(f"tensor parallel: w4a16 {what}: this rank's in_features slice [{start}, {stop}) "
                            f"must hold whole groups of group_size={group_size} (in_features / world_size "
                            f"a multiple of {group_size})")
    return knn.Int4Linear.from_linear(_as_linear(w[rows][:, cols].contiguous(), bias), group_size=group_size)


def _rows(*slices: slice, device) -> torch.Tensor:
    return torch.cat([torch.arange(s.start, s.stop, device=device) for s in slices])


class _RowParallel(nn.Module):
    """The row-parallel half of a block: the local partial product, the sum over ranks, the bias once."""

    def __init__(self, local: nn.Module, bias, tp: TensorParallel):
        super().__init__()
        self.local, self.tp = local, tp
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    def forward(self, x):
        y = sum_over_ranks(self.local(x), self.tp)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"rank={self.tp.rank}, world_size={self.tp.world_size}"


def _rope(x, cos, sin):
    """Rotary embedding, the rotate-half pairing (i, i + D/2) Llama uses; cos/sin [B, S, D]."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


# -- the blocks --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AttentionShape:
    """Global head counts of an attention block (what every rank's slice is cut from)."""

    hidden: int
    heads: int
    kv_heads: int
    head_dim: int


class TPAttention(nn.Module):
    """Llama self-attention over this rank's heads; every rank returns the full output.

    A drop-in for transformers' ``LlamaAttention`` in a decoder layer (same call, ``(output, None)``
    back, a DynamicCache holds the rank's kv heads); standalone, ``forward(x, (cos, sin))``.
    Attention is ``kaiodsl.ops.attention``, causal (bottom-right with a cache), without padding masks.
    """

    def __init__(self, shape: AttentionShape, wq, wk, wv, wo, tp=None, *, weights: str = "float", biases=None,
                 layer_idx: int = 0, scaling: Optional[float] = None, group_size: int = 128):
        super().__init__()
        tp = tensor_parallel(tp)
        if shape.heads % shape.kv_heads:
            raise ArgumentError(f"TPAttention: heads={shape.heads} must be a multiple of kv_heads={shape.kv_heads}")
        hs = tp.slice(shape.heads, "num_attention_heads")
        ks = tp.slice(shape.kv_heads, "num_key_value_heads")
        D = shape.head_dim
        q_rows, kv_rows = slice(hs.start * D, hs.stop * D), slice(ks.start * D, ks.stop * D)
        bq, bk, bv, bo = biases or (None, None, None, None)
        self.shape, self.tp, self.weights = shape, tp, weights
        self.local_heads, self.local_kv_heads = hs.stop - hs.start, ks.stop - ks.start
        self.layer_idx, self.is_causal = layer_idx, True
        self.scaling = D ** -0.5 if scaling is None else scaling
        self.n_q, self.n_kv = self.local_heads * D, self.local_kv_heads * D
        everything = slice(0, shape.hidden)
        if weights == "float" and bq is None:
            from kaiodsl import nn as knn

            self.qkv = knn.FusedQKV(wq.detach()[q_rows], wk.detach()[kv_rows], wv.detach()[kv_rows])
        else:          # one launch as well: q, k and v rows stacked in one quantized matrix
            w = torch.cat([wq.detach(), wk.detach(), wv.detach()])
            nq, nkv = shape.heads * D, shape.kv_heads * D
            rows = _rows(q_rows, _shift(kv_rows, nq), _shift(kv_rows, nq + nkv), device=w.device)
            b = None if bq is None else torch.cat([bq[q_rows], bk[kv_rows], bv[kv_rows]]).detach()
            self.qkv = _Split(local_linear(w, rows, everything, weights, b, group_size, "qkv"),
                              (self.n_q, self.n_kv, self.n_kv))
        self.o_proj = _RowParallel(local_linear(wo, everything, q_rows, weights, None, group_size, "o_proj"),
                                   bo, tp)

    @classmethod
    def from_hf(cls, attn, tp=None, weights: str = "float", group_size: int = 128) -> "TPAttention":
        """Shard a transformers ``LlamaAttention`` (or any module with q/k/v/o_proj and its config)."""
        cfg = attn.config
        D = getattr(attn, "head_dim", cfg.hidden_size // cfg.num_attention_heads)
        shape = AttentionShape(attn.q_proj.in_features, cfg.num_attention_heads, cfg.num_key_value_heads, D)
        projs = (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj)
        biases = tuple(p.bias for p in projs) if any(p.bias is not None for p in projs) else None
        return cls(shape, *(p.weight for p in projs), tp, weights=weights, biases=biases,
                   layer_idx=getattr(attn, "layer_idx", 0) or 0, scaling=getattr(attn, "scaling", None),
                   group_size=group_size)

    @classmethod
    def from_block(cls, block: "TPAttention", tp=None, weights: str = "float",
                   group_size: int = 128) -> "TPAttention":
        """Shard a single-GPU (world_size 1) float kaiodsl block."""
        if block.tp.world_size != 1 or block.weights != "float" or not hasattr(block.qkv, "wq"):
            raise ArgumentError(f"TPAttention.from_block(): the block must be a world_size 1 float block without "
                                f"bias, got world_size={block.tp.world_size}, weights={block.weights!r}")
        q = block.qkv
        return cls(block.shape, q.wq, q.wk, q.wv, block.o_proj.local.weight, tp, weights=weights,
                   biases=None if block.o_proj.bias is None else (None, None, None, block.o_proj.bias),
                   layer_idx=block.layer_idx, scaling=block.scaling, group_size=group_size)

    def forward(self, hidden_states, position_embeddings=None, attention_mask=None, cache=None, **kwargs):
        from .patch import hf_attention

        B, S = hidden_states.shape[:2]
        D = self.shape.head_dim
        x = copy_to_ranks(hidden_states, self.tp)
        q, k, v = (t.view(B, S, -1, D).transpose(1, 2) for t in self.qkv(x))
        if position_embeddings is not None:
            cos, sin = position_embeddings
            q, k = _rope(q, cos, sin), _rope(k, cos, sin)
        cache = kwargs.pop("past_key_values", None) if cache is None else cache
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx, kwargs=kwargs)
        o, _ = hf_attention(self, q.contiguous(), k.contiguous(), v.contiguous(), attention_mask,
                            scaling=self.scaling)
        return self.o_proj(o.reshape(B, S, -1)), None

    def extra_repr(self) -> str:
        return (f"rank={self.tp.rank}/{self.tp.world_size}, heads={self.local_heads} of {self.shape.heads}, "
                f"kv_heads={self.local_kv_heads} of {self.shape.kv_heads}, weights={self.weights}")


def _shift(s: slice, by: int) -> slice:
    return slice(s.start + by, s.stop + by)


class _Split(nn.Module):
    """One fused column-parallel matmul whose output columns are several projections."""

    def __init__(self, linear: nn.Module, sizes: tuple):
        super().__init__()
        self.linear, self.sizes = linear, tuple(sizes)

    def forward(self, x):
        return torch.split(self.linear(x), self.sizes, dim=-1)


class TPMLP(nn.Module):
    """Llama's MLP ``down(act(gate(x)) * up(x))`` over this rank's slice of the intermediate dimension."""

    def __init__(self, w_gate, w_up, w_down, act_fn=None, tp=None, *, weights: str = "float", biases=None,
                 group_size: int = 128):
        super().__init__()
        tp = tensor_parallel(tp)
        inter, hidden = w_gate.shape
        s = tp.slice(inter, "intermediate_size")
        bg, bu, bd = biases or (None, None, None)
        self.tp, self.weights, self.hidden, self.intermediate = tp, weights, hidden, inter
        self.local = s.stop - s.start
        self.act_fn = act_fn if act_fn is not None else nn.SiLU()
        w = torch.cat([w_gate.detach(), w_up.detach()])
        b = None if bg is None else torch.cat([bg[s], bu[s]]).detach()
        rows = _rows(s, _shift(s, inter), device=w.device)
        self.gate_up = _Split(local_linear(w, rows, slice(0, hidden), weights, b, group_size, "gate_up"),
                              (self.local, self.local))
        self.down = _RowParallel(local_linear(w_down, slice(0, hidden), s, weights, None, group_size, "down_proj"),
                                 bd, tp)

    @classmethod
    def from_hf(cls, mlp, tp=None, weights: str = "float", group_size: int = 128) -> "TPMLP":
        """Shard a transformers ``LlamaMLP`` (gate_proj, up_proj, down_proj, act_fn)."""
        projs = (mlp.gate_proj, mlp.up_proj, mlp.down_proj)
        biases = tuple(p.bias for p in projs) if any(p.bias is not None for p in projs) else None
        return cls(*(p.weight for p in projs), mlp.act_fn, tp, weights=weights, biases=biases,
                   group_size=group_size)

    @classmethod
    def from_block(cls, block: "TPMLP", tp=None, weights: str = "float", group_size: int = 128) -> "TPMLP":
        """Shard a single-GPU (world_size 1) float kaiodsl block."""
        if block.tp.world_size != 1 or block.weights != "float" or block.gate_up.linear.bias is not None:
            raise ArgumentError(f"TPMLP.from_block(): the block must be a world_size 1 float block without "
                                f"bias, got world_size={block.tp.world_size}, weights={block.weights!r}")
        w = block.gate_up.linear.weight
        return cls(w[:block.intermediate], w[block.intermediate:], block.down.local.weight, block.act_fn, tp,
                   weights=weights, biases=None if block.down.bias is None else (None, None, block.down.bias),
                   group_size=group_size)

    def forward(self, x):
        gate, up = self.gate_up(copy_to_ranks(x, self.tp))
        return self.down(self.act_fn(gate) * up)

    def extra_repr(self) -> str:
        return (f"rank={self.tp.rank}/{self.tp.world_size}, intermediate={self.local} of {self.intermediate}, "
                f"weights={self.weights}")


def _is_attention(m) -> bool:
    return all(hasattr(m, p) for p in ("q_proj", "k_proj", "v_proj", "o_proj", "config"))


def _is_mlp(m) -> bool:
    return all(hasattr(m, p) for p in ("gate_proj", "up_proj", "down_proj", "act_fn"))


def shard_llama(model: nn.Module, tp, weights: str = "float", group_size: int = 128) -> str:
    """Replace every Llama attention and MLP module of ``model`` (in place) by this rank's TP blocks;
    returns a one-line summary. Embeddings, norms and ``lm_head`` stay replicated. Every rank must
    build the same model (same seed or checkpoint) and feed it the same tokens."""
    tp = tensor_parallel(tp)
    if weights not in WEIGHTS:
        raise ArgumentError(f"shard_llama(): weights must be one of {', '.join(map(repr, WEIGHTS))}, got {weights!r}")
    found = [(name, m) for name, m in model.named_modules() if _is_attention(m) or _is_mlp(m)]
    if not found:
        raise ArgumentError(f"shard_llama(): {type(model).__name__} has no Llama attention (q/k/v/o_proj) or MLP "
                            f"(gate/up/down_proj) modules to shard")
    counts = {"attention": 0, "mlp": 0}
    for name, m in found:
        kind = "attention" if _is_attention(m) else "mlp"
        make = TPAttention.from_hf if kind == "attention" else TPMLP.from_hf
        new = make(m, tp, weights=weights, group_size=group_size)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, new)
        counts[kind] += 1
    return (f"rank {tp.rank} of {tp.world_size}: {counts['attention']} attention and {counts['mlp']} MLP "
            f"block(s) sharded ({weights})")


# -- launching ranks ----------------------------------------------------------------------------------------
def spawn(fn, world_size: int, *args, backend: str = "gloo", port: Optional[int] = None) -> list:
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` fresh processes (torch.multiprocessing,
    spawn) inside an initialized process group; returns each rank's return value (picklable; tensors
    come back as CPU tensors). For tests and the CPU dry run; on GPUs torchrun is the usual launcher."""
    import socket

    import torch.multiprocessing as mp

    if port is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    queue = mp.get_context("spawn").SimpleQueue()
    procs = mp.start_processes(_rank_main, args=(fn, world_size, backend, port, queue, args), nprocs=world_size,
                               join=False, start_method="spawn")
    results, done = {}, False
    while not done:                 # drain while waiting: a result bigger than the pipe would block its rank
        done = procs.join(timeout=0.05)  # raises, with the rank's traceback, if a rank failed
        while not queue.empty():
            rank, blob = queue.get()
            results[rank] = torch.load(io.BytesIO(blob), weights_only=False)
    return [results[r] for r in range(world_size)]


def _rank_main(rank, fn, world_size, backend, port, queue, args):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank))
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, rank=rank, world_size=world_size)
    try:
        buf = io.BytesIO()
        torch.save(_to_cpu(fn(rank, world_size, *args)), buf)    # by value: this process exits right after
        queue.put((rank, buf.getvalue()))
    finally:
        dist.destroy_process_group()


def _to_cpu(x):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().clone()
    if isinstance(x, dict):
        return {k: _to_cpu(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_to_cpu(v) for v in x)
    return x
