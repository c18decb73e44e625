"""A Llama-architecture model from transformers (small LlamaConfig, GQA, random weights, no download),
patched with kaiodsl.torch.patch and compared with the unpatched model: logits, greedy decoding with
the KV cache, one training step's gradients, and the quantized variants' logit deviation.

On the CPU this runs through the simulator (small model); on the GPU also at hidden 2048, 16 layers."""

import copy

import pytest
import torch

import kaiodsl.torch as kt
from kaiodsl.errors import ArgumentError

from tkit import rel

transformers = pytest.importorskip("transformers")

SIZES = {"small": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, vocab_size=256),
         "tiny": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=1, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=128),     # the simulator's 32 decode steps
         "large": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=16, num_attention_heads=16,
                       num_key_value_heads=4, vocab_size=32000)}
SIZE = ["small", pytest.param("large", marks=pytest.mark.gpu)]
# quantized variants: the deviation from the float model is reported; the bound only catches a broken
# kernel (garbage is ~1.4). Weight-only variants are also checked tightly against the float model with
# the dequantized weights, which is what their kernels compute.
VARIANT_BOUND = {"w8a8": 0.15, "w8a16": 0.15, "w4a16": {"small": 0.5, "large": 0.9}}


def f32_copy(model):
    """The same weights in float32 (an exact upcast): the reference both low-precision runs are held to."""
    return copy.deepcopy(model).float()


def low_precision_bound(floor: float, torch_err: float) -> float:
    """Ours may deviate from the f32 reference by at most twice what PyTorch's own run of the same
    low-precision model does (rounding in a 16-layer random model grows with depth), and ``floor``."""
    return max(floor, 2.0 * torch_err)


def make_model(size, dtype, device):
    cfg = transformers.LlamaConfig(**SIZES[size], max_position_embeddings=256, attn_implementation="sdpa")
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(cfg).to(device=device, dtype=dtype).eval()


def _size_on(backend, size):
    if size == "large" and backend.name != "cuda":
        pytest.skip("the large model is a GPU test")


def _ids(backend, size, B, S):
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, SIZES[size]["vocab_size"], (B, S), generator=g).to(
        "cpu" if backend.name == "sim" else "cuda")


def test_patch_report():
    model = make_model("small", torch.float16, "cpu")
    report = kt.patch(model, linear="float", attention="auto")
    layers = SIZES["small"]["num_hidden_layers"]
    assert len(report.linear) == 7 * layers + 1 and report.linear["lm_head"] == "Linear"
    assert not [m for m in model.modules() if type(m) is torch.nn.Linear]
    if not kt.has_op("attention"):
        assert "not in this install" in report.attention
        with pytest.raises(Exception, match="kaiodsl.ops.attention is not part of this kaiodsl install"):
            kt.patch(model, linear=None, attention=True)
    q = kt.patch(make_model("small", torch.float16, "cpu"), linear="w8a8", attention=False)
    assert "lm_head" in q.skipped and len(q.linear) == 7 * layers
    assert "skipped lm_head" in str(q)
    with pytest.raises(ArgumentError, match="linear must be one of"):
        kt.patch(model, linear="int3")


@pytest.mark.parametrize("size", SIZE)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_logits_match(backend, size, dtype):
    _size_on(backend, size)
    device = "cpu" if backend.name == "sim" else "cuda"
    ref = make_model(size, dtype, device)
    model = copy.deepcopy(ref)
    report = kt.patch(model, linear="float")
    assert len(report.linear) == 7 * ref.config.num_hidden_layers + 1
    ids = _ids(backend, size, 2, 8)
    with torch.no_grad():
        want = f32_copy(ref)(ids).logits
        ours, theirs = rel(model(ids).logits, want), rel(ref(ids).logits, want)
    assert ours <= low_precision_bound(1e-2, theirs), f"ours {ours:.4f} vs torch {theirs:.4f} from f32"


@pytest.mark.parametrize("size", SIZE)
@pytest.mark.parametrize("variant", ["w8a8", "w8a16", "w4a16"])
def test_quantized_variants(backend, size, variant, record_property):
    _size_on(backend, size)
    if variant == "w8a16" and not kt.has_op("matmul_w8a16"):
        pytest.skip("kaiodsl.ops.matmul_w8a16 is not in this install")
    device = "cpu" if backend.name == "sim" else "cuda"
    ref = make_model(size, torch.float16, device)
    model = copy.deepcopy(ref)
    report = kt.patch(model, linear=variant)
    assert len(report.linear) == 7 * ref.config.num_hidden_layers, report
    ids = _ids(backend, size, 2, 8)
    with torch.no_grad():
        got = model(ids).logits
        dev = rel(got, ref(ids).logits)
        if variant != "w8a8":            # weight-only: the float model with the dequantized weights
            deq = f32_copy(ref)
            for name, m in model.named_modules():
                if name in report.linear:
                    eye = torch.eye(m.in_features, dtype=ref.dtype, device=device)
                    deq.get_submodule(name).weight.copy_(m(eye).T.float())   # row i of m(I) = W_deq[:, i]
            want = deq(ids).logits
            ours, theirs = rel(got, want), rel(ref(ids).logits, f32_copy(ref)(ids).logits)
            assert ours <= low_precision_bound(1e-2, theirs), f"{variant}: {ours:.4f} from the dequantized model"
    record_property("logit_rel_deviation", dev)
    print(f"\n{size} {variant}: logits rel deviation {dev:.4f}")
    bound = VARIANT_BOUND[variant]
    assert dev < (bound[size] if isinstance(bound, dict) else bound)


def _first_divergence(a, b):
    diff = (a != b).nonzero()
    return None if len(diff) == 0 else int(diff[0, 1])


@pytest.mark.parametrize("size", SIZE)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_greedy_generation_with_kv_cache(backend, size, dtype):
    """32 greedy tokens with the KV cache equal the unpatched model's. A token may differ only where
    the reference's top-2 logits are a near tie (then the rest of the sequences legitimately differ)."""
    _size_on(backend, size)
    if backend.name == "sim" and dtype is torch.bfloat16:
        pytest.skip("one dtype in the simulator (32 decode steps); both on the GPU")
    device = "cpu" if backend.name == "sim" else "cuda"
    size = "tiny" if backend.name == "sim" else size
    ref = make_model(size, dtype, device)
    model = copy.deepcopy(ref)
    kt.patch(model, linear="float")
    ids = _ids(backend, size, 1, 6)
    kw = dict(max_new_tokens=32, min_new_tokens=32, do_sample=False, use_cache=True, return_dict_in_generate=True,
              output_scores=True, pad_token_id=0)
    with torch.no_grad():
        want = ref.generate(ids, **kw)
        got = model.generate(ids, **kw)
    assert got.sequences.shape == want.sequences.shape == (1, 6 + 32)
    at = _first_divergence(got.sequences, want.sequences)
    if at is not None:
        top2 = want.scores[at - 6][0].float().topk(2).values
        assert float(top2[0] - top2[1]) < 2e-2 * float(top2.abs().max()), f"tokens diverge at {at}"


@pytest.mark.parametrize("size", SIZE)
def test_training_step_gradients(backend, size):
    _size_on(backend, size)
    device = "cpu" if backend.name == "sim" else "cuda"
    dtype = torch.bfloat16
    ref = make_model(size, dtype, device).train()
    model = copy.deepcopy(ref)
    kt.patch(model, linear="float")
    ids = _ids(backend, size, 2, 8)
    ref32 = f32_copy(ref)
    for m in (ref, model, ref32):
        m(ids, labels=ids).loss.backward()
    got, want = dict(model.named_parameters()), dict(ref32.named_parameters())
    compared = 0
    for name, p in ref.named_parameters():
        g = got[name].grad
        assert g is not None, name
        if p.grad.float().norm() > 0:
            ours, theirs = rel(g, want[name].grad), rel(p.grad, want[name].grad)
            assert ours < low_precision_bound(3e-2, theirs), f"{name}: ours {ours:.4f} vs torch {theirs:.4f}"
            compared += 1
    assert compared >= 7 * ref.config.num_hidden_layers
