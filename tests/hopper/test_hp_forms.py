"""The instruction-form table: grid expansion, arch predicates, effects, the validator, async tokens."""

import pytest

import kaiodsl
from kaiodsl import Ptr, f16, f32, u32
from kaiodsl.arch import Arch, arch_pred
from kaiodsl.codegen import features
from kaiodsl.errors import KaioError
from kaiodsl.ir.node import Node
from kaiodsl.types import TupleType


def test_grid_expands_every_combination():
    text = """family demo
op.<a>.<b> | >=sm_80 | 7.0 | pure | r,r -> r | op.<a>.<b> {out}, {0}, {1};
    for a=x,y; b=1..5:2
bare | sm_90a | 8.0 | sync | | bare;
"""
    table = features.parse_table(text)
    assert sorted(table) == ["bare", "op.x.1", "op.x.3", "op.x.5", "op.y.1", "op.y.3", "op.y.5"]
    f = table["op.y.3"]
    assert (f.family, f.params, f.inputs, f.output, f.op) == ("demo", {"a": "y", "b": "3"}, ("r", "r"), "r",
                                                              "inst_pure")
    assert f.template == "op.y.3 {out}, {0}, {1};"
    assert table["bare"].op == "inst" and table["bare"].output is None


@pytest.mark.parametrize("bad,msg", [
    ("x.<a> | >=sm_80 | 7.0 | pure | r | x;", "grid parameter"),
    ("x | >=sm_80 | 7.0 | pure | q -> r | x;", "unknown operand kind"),
    ("x | 7.0 | pure | r | x;", "6 fields"),
    ("x | sm_9x | 7.0 | pure | r | x;", "bad arch predicate"),
])
def test_table_errors(bad, msg):
    with pytest.raises((ValueError, KaioError), match=msg):
        features.parse_table("family t\n" + bad + "\n")


@pytest.mark.parametrize("pred,target,ok", [
    (">=sm_80", "sm_80", True), (">=sm_80", "sm_90a", True), (">=sm_80", "sm_75", False),
    ("sm_90a", "sm_90a", True), ("sm_90a", "sm_90", False), ("sm_90a", "sm_100a", False),
    (">=sm_90", "sm_100", True), (">=sm_90", "sm_89", False),
])
def test_arch_predicates(pred, target, ok):
    assert arch_pred(pred).allows(target) is ok


def test_arch_parse():
    assert Arch.parse("sm_90a") == Arch(90, "a") and Arch.parse("sm_90a").name == "sm_90a"
    with pytest.raises(KaioError, match="unknown target 'sm_91'"):
        Arch.parse("sm_91")


def test_table_has_the_ptx_isa_wgmma_grid():
    fs = features.forms()
    f16_n = sorted(int(f.params["n"]) for f in fs.values() if f.name.endswith(".f32.f16.ss"))
    assert f16_n == list(range(8, 257, 8))
    int_n = sorted(int(f.params["n"]) for f in fs.values() if f.name.startswith("wgmma") and f.name.endswith(".s32.s8.s8.ss"))
    assert int_n == [8, 16, 24, 32] + list(range(48, 257, 16))
    for name in ("wgmma.m64n8k8.f32.tf32.rs", "wgmma.m64n256k32.f16.e5m2.e4m3.ss",
                 "wgmma.m64n256k32.s32.u8.s8.satfinite.rs", "wgmma.m64n136k16.f16.bf16.rs"):
        assert fs[name].arch.text == "sm_90a" and fs[name].async_group == "wgmma" and fs[name].tie == 3
    assert fs["cp.async.ca"].async_group == "cp.async" and fs["cp.async.wait_group"].waits == "cp.async"
    assert fs["cp.async.bulk.store"].writes_global
    assert features.ptx_version_for("sm_90a", {"wgmma.fence"}) == "8.0"
    assert features.ptx_version_for("sm_90", {"mapa.shared::cluster"}) == "7.8"


def test_mma_sync_comes_from_the_table():
    from kaiodsl.lang.tensor import mma_form
    assert mma_form(16, "s8", "u8", "s32", ".satfinite").name == "mma.m16n8k16.s32.s8.u8.satfinite"
    assert mma_form(16, "bf16", "bf16", "f16") is None


def test_validator_checks_nodes_against_forms():
    u = Node("param", u32)
    ok = Node("inst_pure", u32, (u, u, u), {"form": "prmt.b32", "mode": ""})
    assert features.check_node(ok) is None
    assert "must be inst_pure" in features.check_node(Node("inst", u32, (u, u, u), {"form": "prmt.b32"}))
    assert "takes 3 operands" in features.check_node(Node("inst_pure", u32, (u,), {"form": "prmt.b32"}))
    t = Node("param", TupleType((u32, u32)))
    assert "operand 0 must be of kind s" in features.check_node(Node("inst_read", u32, (t,), {"form": "ldmatrix.x1"}))


@kaiodsl.kernel(block_size=128)
def wgmma_misuse(out: Ptr[f32], WHAT: kaiodsl.Const):
    s = kaiodsl.shared_array(f16, (64 * 64,), align=1024)
    d = kaiodsl.wgmma_desc(s, 128)
    acc = kaiodsl.wgmma_zeros(16)
    kaiodsl.wgmma_fence()
    acc = kaiodsl.wgmma(d, d, acc, dtype=f16)
    kaiodsl.wgmma_commit()
    if WHAT == "read_before_wait":
        out[0] = acc[0]
    elif WHAT == "wait1_then_read":
        acc = kaiodsl.wgmma_wait(1, acc)
        out[0] = acc[0]
    elif WHAT == "loop_then_read":
        for i in range(out.shape[0] if False else 3):  # noqa: SIM108 - a run-time-shaped loop
            acc = kaiodsl.wgmma(d, d, acc, dtype=f16)
        out[0] = acc[1]
    acc = kaiodsl.wgmma_wait(0, acc)
    out[1] = acc[2]


@pytest.mark.parametrize("what,ok", [("read_before_wait", False), ("wait1_then_read", False),
                                     ("loop_then_read", False), ("correct", True)])
def test_wgmma_accumulator_is_a_token(what, ok):
    if ok:
        assert wgmma_misuse.compile(arch="sm_90a", WHAT=what).registers > 0
        return
    with pytest.raises(kaiodsl.CompileError, match="reads a wgmma result before the wgmma wait") as e:
        wgmma_misuse.compile(arch="sm_90a", WHAT=what)
    assert "out[0] = acc" in str(e.value)
