"""Tensor parallelism (kaiodsl/torch/parallel.py): the TP=2 blocks and model against the single-process ones.

Two ranks run in spawned processes: gloo with CPU tensors (the simulator) everywhere, and NCCL on two
GPUs where a host has them (marked ``gpu`` and ``multigpu``; skipped otherwise). One spawn computes
every block variant and one the model, so the CPU cost is two process starts; the tests then compare.
Shapes are tiny (hidden 128 so that head_dim is 32, the smallest attention head; hidden 256 for
w4a16, whose row-parallel slices must hold whole 128-groups)."""

import copy
import zlib

import pytest
import torch

import kaiodsl.torch as kt
from kaiodsl.errors import ArgumentError
from kaiodsl.torch import parallel as tp

from tkit import rel

transformers = pytest.importorskip("transformers")
if not torch.distributed.is_available():
    pytest.skip("torch.distributed is not available in this torch build", allow_module_level=True)

CONFIGS = {"small": dict(hidden_size=128, intermediate_size=256, num_attention_heads=4, num_key_value_heads=2),
           "w4": dict(hidden_size=256, intermediate_size=256, num_attention_heads=4, num_key_value_heads=2)}
# (name, config, dtype, weights): every block variant the spawned ranks compute
VARIANTS = [("f16", "small", torch.float16, "float"), ("bf16", "small", torch.bfloat16, "float"),
            ("w8a16", "small", torch.float16, "w8a16"), ("w4a16", "w4", torch.float16, "w4a16")]
TOL = {"f16": 5e-3, "bf16": 3e-2, "w8a16": 5e-3, "w4a16": 5e-3}   # TP=2 vs TP=1: rounding of the partial sums
B, S = 2, 8


def _gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


MULTI_GPU = pytest.mark.skipif(_gpus() < 2, reason=f"needs 2 CUDA GPUs for NCCL; this host has {_gpus()}")
COMMS = ["gloo", pytest.param("nccl", marks=[pytest.mark.gpu, pytest.mark.multigpu, MULTI_GPU])]


def _device(comm: str, rank: int = 0) -> str:
    return f"cuda:{rank}" if comm == "nccl" else "cpu"


def make_model(size: str, dtype, device, layers: int = 1, vocab: int = 128):
    cfg = transformers.LlamaConfig(**CONFIGS[size], num_hidden_layers=layers, vocab_size=vocab,
                                   max_position_embeddings=64, attn_implementation="sdpa")
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(cfg).to(device=device, dtype=dtype).eval()


def _inputs(model, name: str, device):
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    x = torch.randn((B, S, model.config.hidden_size), generator=g).to(device=device, dtype=model.dtype)
    cos, sin = model.model.rotary_emb(x, torch.arange(S, device=device)[None].expand(B, S))
    return x, (cos, sin)


def run_blocks(model, name, weights, tp_spec, device, grad=False):
    """Layer 0's attention and MLP as kaiodsl blocks at ``tp_spec``: outputs, and the MLP's input gradient."""
    layer = model.model.layers[0]
    x, pe = _inputs(model, name, device)
    attn = tp.TPAttention.from_hf(layer.self_attn, tp_spec, weights=weights)
    mlp = tp.TPMLP.from_hf(layer.mlp, tp_spec, weights=weights)
    with torch.no_grad():
        out = {"attn": attn(x, pe)[0], "mlp": mlp(x)}
    if grad:
        xg = x.detach().clone().requires_grad_(True)
        dy = torch.randn(x.shape, generator=torch.Generator().manual_seed(7)).to(x)
        (mlp(xg).float() * dy.float()).sum().backward()
        out["mlp_dx"] = xg.grad
    return out


def _use_backend(comm: str) -> None:
    from kaiodsl.runtime import backend

    backend.set_backend("cuda" if comm == "nccl" else "sim")


def blocks_rank(rank, world, comm):
    """A spawned rank: every variant's TP blocks over the default group."""
    _use_backend(comm)
    device = _device(comm, rank)
    out = {}
    for name, size, dtype, weights in VARIANTS:
        out[name] = run_blocks(make_model(size, dtype, device), name, weights, "default", device,
                               grad=name == "f16")
        out[name]["device"] = str(out[name]["attn"].device)
    return out


def model_rank(rank, world, comm, layers):
    """A spawned rank: the patched tiny Llama's logits and 4 greedy tokens through the KV cache."""
    _use_backend(comm)
    device = _device(comm, rank)
    model = make_model("small", torch.float16, device, layers)
    report = kt.patch(model, linear="float", tp="default")
    ids = _ids(device)
    with torch.no_grad():
        logits = model(ids).logits
        seq = model.generate(ids, max_new_tokens=4, min_new_tokens=4, do_sample=False, use_cache=True,
                             pad_token_id=0)
    return {"logits": logits, "tokens": seq, "report": str(report)}


def _ids(device):
    return torch.randint(1, 128, (1, S), generator=torch.Generator().manual_seed(3)).to(device)   # no pad (0)


@pytest.fixture(scope="module", params=COMMS)
def comm(request):
    """gloo + the simulator, or NCCL + the GPUs; this process's backend is put back afterwards."""
    from kaiodsl.runtime import backend

    yield request.param
    backend.reset()


@pytest.fixture(scope="module")
def ranks(comm):
    return tp.spawn(blocks_rank, 2, comm, backend=comm)


@pytest.fixture(scope="module")
def single(comm):
    """The single-process (world_size 1) kaiodsl blocks, and transformers' own, on this process."""
    _use_backend(comm)
    device = _device(comm)
    out = {}
    for name, size, dtype, weights in VARIANTS:
        model = make_model(size, dtype, device)
        out[name] = run_blocks(model, name, weights, None, device, grad=name == "f16")
        if weights == "float":
            layer = model.model.layers[0]
            x, pe = _inputs(model, name, device)
            with torch.no_grad():
                out[name]["hf_attn"], out[name]["hf_mlp"] = layer.self_attn(x, pe, None)[0], layer.mlp(x)
    return out


@pytest.mark.parametrize("variant", [v[0] for v in VARIANTS])
def test_tp_blocks_match_single_process(ranks, single, comm, variant):
    want = single[variant]
    for rank, got in enumerate(ranks):
        assert got[variant]["device"] == _device(comm, rank), "each rank's kernels run on its own device"
        for key in ("attn", "mlp"):
            err = rel(got[variant][key], want[key])
            assert err < TOL[variant], f"{variant} {key} rank {rank}: rel {err:.2e} from the TP=1 block"
    for key in ("attn", "mlp"):                  # all ranks hold the same reduced output
        assert torch.equal(ranks[0][variant][key], ranks[1][variant][key])
    if "hf_attn" in want:                        # and TP=1 is transformers' block
        assert rel(want["attn"], want["hf_attn"]) < TOL[variant]
        assert rel(want["mlp"], want["hf_mlp"]) < TOL[variant]


def test_tp_mlp_input_gradient(ranks, single):
    """Megatron's f/g: the replicated input's gradient is the sum of the ranks' partial gradients."""
    want = single["f16"]["mlp_dx"]
    for got in ranks:
        assert rel(got["f16"]["mlp_dx"], want) < TOL["f16"]


def test_tp_llama_logits_and_greedy_tokens(comm):
    """The patched tiny Llama (2 layers) at TP=2 gives TP=1's logits and greedy tokens."""
    _use_backend(comm)
    device = _device(comm)
    ref = make_model("small", torch.float16, device, layers=2)
    one = copy.deepcopy(ref)
    report = kt.patch(one, linear="float", tp=(0, 1))
    assert "2 attention and 2 MLP" in report.parallel and report.attention == "kaiodsl"
    ids = _ids(device)
    with torch.no_grad():
        want = one(ids).logits
        theirs = ref(ids).logits
        want_seq = one.generate(ids, max_new_tokens=4, min_new_tokens=4, do_sample=False, use_cache=True,
                                pad_token_id=0)
    assert rel(want, theirs) < 1e-2                      # TP=1 is the model
    got = tp.spawn(model_rank, 2, comm, 2, backend=comm)
    for rank, r in enumerate(got):
        assert "rank %d of 2: 2 attention and 2 MLP" % rank in r["report"]
        err = rel(r["logits"], want)
        assert err < 1e-2, f"rank {rank}: logits rel {err:.2e} from TP=1"
        assert torch.equal(r["tokens"].cpu(), want_seq.cpu()), f"rank {rank}: greedy tokens differ from TP=1"


# -- single-process checks: errors and structure --------------------------------------------------------
def _attn_mlp():
    layer = make_model("small", torch.float16, "cpu").model.layers[0]
    return layer.self_attn, layer.mlp


def test_divisibility_errors():
    attn, mlp = _attn_mlp()
    with pytest.raises(ArgumentError, match=r"num_key_value_heads=2 must be divisible by world_size=4"):
        tp.TPAttention.from_hf(attn, (0, 4))
    with pytest.raises(ArgumentError, match=r"num_attention_heads=4 must be divisible by world_size=3"):
        tp.TPAttention.from_hf(attn, (1, 3))
    with pytest.raises(ArgumentError, match=r"intermediate_size=256 must be divisible by world_size=3"):
        tp.TPMLP.from_hf(mlp, (0, 3))
    with pytest.raises(ArgumentError, match=r"w4a16 o_proj: .*whole groups of group_size=128"):
        tp.TPAttention.from_hf(attn, (0, 2), weights="w4a16")     # hidden 128: 64 input columns per rank
    with pytest.raises(ArgumentError, match=r"rank=2 must lie in \[0, world_size=2\)"):
        tp.TensorParallel(2, 2)
    with pytest.raises(ArgumentError, match="weights must be one of"):
        tp.TPMLP.from_hf(mlp, (0, 2), weights="w8a8")


def test_patch_tp_errors():
    if torch.distributed.is_initialized():
        pytest.skip("a process group is initialized in this process")
    model = make_model("small", torch.float16, "cpu")
    with pytest.raises(ArgumentError, match="torch.distributed is not initialized"):
        kt.patch(model, tp="default")
    with pytest.raises(ArgumentError, match=r"tensor parallelism needs linear in"):
        kt.patch(model, linear="w8a8", tp=(0, 2))
    with pytest.raises(ArgumentError, match=r"tensor parallelism needs linear in"):
        kt.patch(model, attention=False, tp=(0, 2))


def test_shards_hold_their_slices():
    """Rank r's fused QKV holds query heads [2r, 2r+2) and kv head r; from_block reshards a TP=1 block."""
    attn, mlp = _attn_mlp()
    D = attn.head_dim
    for r in range(2):
        blk = tp.TPAttention.from_hf(attn, (r, 2))
        assert (blk.local_heads, blk.local_kv_heads) == (2, 1)
        assert torch.equal(blk.qkv.wq, attn.q_proj.weight[2 * r * D:(2 * r + 2) * D])
        assert torch.equal(blk.qkv.wk, attn.k_proj.weight[r * D:(r + 1) * D])
        assert torch.equal(blk.o_proj.local.weight, attn.o_proj.weight[:, 2 * r * D:(2 * r + 2) * D])
        again = tp.TPAttention.from_block(tp.TPAttention.from_hf(attn), (r, 2))
        assert torch.equal(again.qkv.wv, blk.qkv.wv) and torch.equal(again.o_proj.local.weight,
                                                                      blk.o_proj.local.weight)
        m = tp.TPMLP.from_hf(mlp, (r, 2))
        half = slice(128 * r, 128 * (r + 1))
        w = m.gate_up.linear.weight
        assert torch.equal(w[:128], mlp.gate_proj.weight[half]) and torch.equal(w[128:], mlp.up_proj.weight[half])
        assert torch.equal(tp.TPMLP.from_block(tp.TPMLP.from_hf(mlp), (r, 2)).down.local.weight,
                           m.down.local.weight)
    with pytest.raises(ArgumentError, match="world_size 1 float block"):
        tp.TPMLP.from_block(m, (0, 2))


def test_w8a16_row_slice_keeps_whole_row_scales():
    """A row-parallel int8 slice is the whole matrix quantized, then sliced (so TP=2 sums to TP=1)."""
    from kaiodsl import nn as knn

    attn, _ = _attn_mlp()
    w_q, scale = knn.quantize_per_channel_int8(attn.o_proj.weight)
    blk = tp.TPAttention.from_hf(attn, (1, 2), weights="w8a16")
    assert torch.equal(blk.o_proj.local.w_q, w_q[:, 64:]) and torch.equal(blk.o_proj.local.scales, scale)



# -- per-device: each kernel runs on its inputs' device; two devices in one op are refused ----------------
def _needs_gpus(backend, n: int):
    if backend.name != "cuda" or _gpus() < n:
        pytest.skip(f"needs {n} CUDA GPUs; this host has {_gpus()}")


def _check_on(device, gen):
    """A matmul, an attention and a TP=1 MLP block on ``device``: outputs there, values as torch's."""
    from tkit import randn

    a, w = randn(gen, (16, 64), torch.float16, device), randn(gen, (32, 64), torch.float16, device)
    device = a.device                  # "cuda" means the current device: compare with where the inputs are
    y = kt.linear(a, w)
    assert y.device == device and rel(y, a.double() @ w.double().T) < 1e-2
    q, k = randn(gen, (1, 2, 8, 32), torch.float16, device), randn(gen, (1, 1, 8, 32), torch.float16, device)
    o = kt.attention(q, k, k, causal=True)
    want = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), k.float(), is_causal=True,
                                                            enable_gqa=True)
    assert o.device == device and rel(o, want) < 1e-2


def test_kernels_run_on_their_inputs_device(backend, device, gen):
    _check_on(device, gen)


@pytest.mark.multigpu
def test_kernels_follow_the_tensors_not_the_current_device(backend, gen):
    """Tensors on cuda:1 while torch's current device is 0, and the reverse: the kernel runs where the
    tensors are, and torch's current device is the one it was."""
    _needs_gpus(backend, 2)
    for current, where in ((0, "cuda:1"), (1, "cuda:0"), (1, "cuda:1")):
        with torch.cuda.device(current):
            _check_on(where, gen)
            assert torch.cuda.current_device() == current


def test_mixed_devices_are_refused(backend, device, gen):
    """On the CPU: a meta tensor with a CPU one; on a GPU: a CPU tensor with a CUDA one; on two GPUs:
    cuda:0 with cuda:1. Refused before anything launches, naming the devices."""
    from tkit import randn

    a = randn(gen, (16, 64), torch.float16, device)
    other = torch.empty((32, 64), dtype=torch.float16, device="meta" if device == "cpu" else "cpu")
    with pytest.raises(ArgumentError, match="tensors are on different devices"):
        kt.matmul(a, other, b_layout="nk")
    if backend.name == "cuda" and _gpus() >= 2:
        b = randn(gen, (32, 64), torch.float16, "cuda:1")
        with pytest.raises(ArgumentError, match=r"different devices: cuda:0, cuda:1"):
            kt.matmul(a.to("cuda:0"), b, b_layout="nk")


def test_bench_tp_arguments_and_gpu_check():
    """benchmarks/bench_tp.py imports, parses its options (the dry run's tiny defaults) and, with fewer
    than 2 GPUs, stops with a message that says so (its --dry-run path is run by hand: ~25 s)."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "bench_tp.py"
    spec = importlib.util.spec_from_file_location("bench_tp", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = bench.parse(["--dry-run", "--linear", "w8a16"])
    assert (args.batch_list, args.new_tokens, args.linear) == ([1, 2], 2, "w8a16")
    assert bench.parse([]).batch_list == [1, 16]
    if _gpus() < 2:
        with pytest.raises(SystemExit, match=r"needs 2 CUDA GPUs .*this host has \d+\. Run with --dry-run"):
            bench.require_gpus(2)
