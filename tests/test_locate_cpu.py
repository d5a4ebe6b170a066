"""Localization without a GPU: the recorder on CPU tensors, and the census, frozen-argument, race,
picture, repro and finding logic on recorded (synthetic) graphs."""
from __future__ import annotations

import html.parser
import math
import py_compile
import struct

import pytest

torch = pytest.importorskip("torch")

from graphsafe.doctor.classify import classify  # noqa: E402
from graphsafe.doctor.evidence import Comparison, Evidence, OutputEvidence  # noqa: E402
from graphsafe.doctor.locate import analysis, html as gs_html  # noqa: E402
from graphsafe.doctor.locate.cugraph import KernelParams, demangle  # noqa: E402
from graphsafe.doctor.locate.findings import located  # noqa: E402
from graphsafe.doctor.locate.localize import should_locate as _should_locate  # noqa: E402
from graphsafe.doctor.locate.model import (Divergence, FrozenArg, GraphNodeInfo, GraphRace,  # noqa: E402
                                           Localization, StepInfo)
from graphsafe.doctor.locate.record import Access, Recorder, Step  # noqa: E402
from graphsafe.doctor.locate.repro import write_repro  # noqa: E402
from graphsafe.doctor.report import Report  # noqa: E402
from graphsafe.diagnostics import Location  # noqa: E402


# -- the recorder ----------------------------------------------------------------------------------------
class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)

    def forward(self, x):
        return native_wrapper(self.proj(x).relu())


def native_wrapper(y):
    n = math.fsum([1.0, 2.0])  # stands in for a call into an extension (see _Opaque)
    return y * n


class _Opaque(Recorder):
    def _opaque(self, fn):
        return fn is math.fsum


def _record(model, x, **kw):
    names = {id(m): p for p, m in model.named_modules(prefix="model")}
    with torch.no_grad(), _Opaque(names, **kw) as rec:
        out = model(x)
    return rec, out


def test_recorder_names_ops_modules_and_lines():
    model = torch.nn.Sequential(Block(), Block())
    x = torch.randn(2, 4)
    rec, _ = _record(model, x)
    ops = [(s.kind, s.op.split(".")[0], s.module) for s in rec.steps]
    assert ("aten", "aten::addmm", "model.0.proj") in ops and ("aten", "aten::addmm", "model.1.proj") in ops
    opaque = [s for s in rec.steps if s.kind == "opaque"]
    assert [s.module for s in opaque] == ["model.0", "model.1"]
    assert opaque[0].op == "fsum" and opaque[0].entry[1] == "native_wrapper"
    assert opaque[0].location.function == "native_wrapper"
    assert "math.fsum" in open(__file__).read().splitlines()[opaque[0].location.line - 1]
    relu = next(s for s in rec.steps if s.op.startswith("aten::relu"))
    assert relu.location.file == __file__ and relu.location.function == "forward"
    # snapshots are copies: changing them does not touch the target's tensors
    assert all(t is None or t.data_ptr() != x.data_ptr() for s in rec.steps for t in s.snaps)


def test_recorder_saves_the_arguments_of_one_step():
    model = Block()
    rec, _ = _record(model, torch.randn(2, 4))
    k = next(s.index for s in rec.steps if s.kind == "opaque")
    rec2, _ = _record(model, torch.randn(2, 4), keep_args_for=k)
    args, kwargs = rec2.steps[k].args
    assert kwargs == {} and args[0]["__graphsafe_tensor__"].shape == (2, 4) and args[0]["device"] == "cpu"


def test_recorder_restores_the_profiler_and_survives_exceptions():
    import sys

    before = sys.getprofile()

    def boom(x):
        raise RuntimeError("target failed")

    with pytest.raises(RuntimeError), Recorder({}) as _:
        boom(torch.ones(1))
    assert sys.getprofile() is before


# -- census ------------------------------------------------------------------------------------------------
def _k(i, name, **kw):
    return GraphNodeInfo(id=i, kind="kernel", name=name, grid=kw.pop("grid", [1, 1, 1]),
                         block=kw.pop("block", [128, 1, 1]), **kw)


def test_census_missing_extra_reordered_and_config():
    eager = [{"name": n, "grid": [1, 1, 1], "block": [128, 1, 1]} for n in ["void a(float*)", "b", "c", "d", "e"]]
    eager[4]["grid"] = [2, 1, 1]
    nodes = [_k(0, "void a(float*)"), _k(1, "snap", instrumentation=True), _k(2, "d"), _k(3, "c"), _k(4, "e"),
             _k(5, "x"), GraphNodeInfo(id=6, kind="memset", name="memset 4 B")]
    c = analysis.census(eager, nodes)
    assert c.missing == ["b"] and c.missing_at == [1]
    assert c.extra == ["x"] and c.reordered in (["c"], ["d"])
    assert len(c.config) == 1 and c.config[0].startswith("e: eager grid 2×1×1")
    assert c.node_kinds == {"kernel": 5, "memset": 1} and c.graph_kernels == 5


# -- frozen arguments --------------------------------------------------------------------------------------
def _params(*values):
    return KernelParams(func=1, values=list(values), offsets=[8 * i for i in range(len(values))])


def test_frozen_argument_found_and_noise_skipped():
    ptr_a, ptr_b = (0x7F0000001000).to_bytes(8, "little"), (0x7F0000009000).to_bytes(8, "little")
    is_ptr = lambda v: v >= 0x7F0000000000  # noqa: E731
    name = "softmax_t"
    a = [_k(0, name, step=3)]
    b = [_k(0, name)]
    scale = lambda f: struct.pack("<f", f)  # noqa: E731
    noise_a, noise_a2, noise_b = b"\x01\x02\x03\x04", b"\x09\x09\x09\x09", b"\x05\x06\x07\x08"
    pa = {0: _params(ptr_a, noise_a, scale(2.0))}
    pa2 = {0: _params(ptr_b, noise_a2, scale(2.0))}
    pb = {0: _params(ptr_b, noise_b, scale(4 / 3))}
    steps = {3: StepInfo(3, "opaque", "softmax_t")}
    found = analysis.frozen_args(a, pa, b, pb, is_ptr, steps, {0: ["x_ptr", "noise", "inv_t"]}, a, pa2)
    assert [(f.param, f.name) for f in found] == [(2, "inv_t")]
    assert found[0].value_a.startswith("2.0") and found[0].step.op == "softmax_t"
    # without the repeat capture, the uninitialized bytes look like a value too
    assert [f.param for f in analysis.frozen_args(a, pa, b, pb, is_ptr)] == [1, 2]


def test_frozen_value_inside_a_functor_struct_is_decoded():
    name = "void at::native::vectorized_elementwise_kernel<4, Mul>(int, Mul, Array)"
    a, b = [_k(0, name)], [_k(0, name)]
    pa = {0: _params(b"\xe8\x03\x00\x00", b"\x01\x00\x01\x01" + struct.pack("<f", 2.5))}
    pb = {0: _params(b"\xe8\x03\x00\x00", b"\x01\x00\x01\x01" + struct.pack("<f", 3.5))}
    [f] = analysis.frozen_args(a, pa, b, pb, lambda v: False, nodes_a2=a, params_a2=pa)
    assert f.param == 1 and f.offset == 12 and f.value_a.startswith("2.5") and f.value_b.startswith("3.5")


def test_signature_types_and_typed_decoding():
    name = "void k<Foo<int, 2>, float>(float const*, Foo<int, 2>, unsigned int, float)"
    assert analysis.signature_types(name) == ["float const*", "Foo<int, 2>", "unsigned int", "float"]
    assert analysis.signature_types("softmax_t") is None
    assert analysis.decode(struct.pack("<I", 7), "unsigned int") == "7"
    assert analysis.decode(struct.pack("<f", 0.5), "float") == "0.5"


def test_demangle():
    assert demangle("_Z21scale_andquant_kernelPK6__halfPS_fjjPh") == \
        "scale_andquant_kernel(__half const*, __half*, float, unsigned int, unsigned int, unsigned char*)"
    assert demangle("softmax_t") == "softmax_t"


# -- races -------------------------------------------------------------------------------------------------
def _n(i, deps=(), **kw):
    return GraphNodeInfo(id=i, kind=kw.pop("kind", "kernel"), name=kw.pop("name", f"k{i}"), deps=list(deps), **kw)


def test_unordered_writer_and_reader_race():
    # 0 forks into 1 (side: writes buf) and 2 (main); 3 reads buf after 2 only; 4 joins
    nodes = [_n(0), _n(1, [0], writes=[[100, 200]]), _n(2, [0], reads=[[500, 600]]),
             _n(3, [2], reads=[[150, 160]], writes=[[700, 800]]), _n(4, [1, 3], reads=[[100, 200]])]
    [r] = analysis.races(nodes)
    assert (r.a, r.b, r.access) == (1, 3, "write/read") and (r.start, r.end) == (150, 160)


def test_ordered_and_read_only_pairs_do_not_race():
    nodes = [_n(0, writes=[[0, 10]]), _n(1, [0], reads=[[0, 10]]), _n(2, [0], reads=[[0, 10]]),
             _n(3, [1, 2], writes=[[0, 10]])]
    assert analysis.races(nodes) == []


def test_child_graph_bodies_fold_into_their_container():
    nodes = [_n(0, kind="graph", name="child graph"), _n(1, parent=0, writes=[[0, 8]]),
             _n(2, reads=[[0, 8]]), _n(3, [0], reads=[[0, 8]])]
    [r] = analysis.races(nodes)
    assert {r.a, r.b} == {0, 2}  # the body's write is the container's; node 3 runs after it


def test_kernel_accesses_from_pointer_words_and_constness():
    acc = [Access(0x1000, 0x2000, False, "self"), Access(0x3000, 0x4000, True, "out"),
           Access(0x5000, 0x6000, None, "argument")]
    n = _k(0, "k(float const*, float*)")
    analysis.kernel_accesses(n, [(0x1000).to_bytes(8, "little"), (0x3010).to_bytes(8, "little")], acc, False)
    assert n.reads == [[0x1000, 0x2000]] and n.writes == [[0x3000, 0x4000]] and not n.may_write
    m = _k(1, "triton_kernel")
    analysis.kernel_accesses(m, [(0x5008).to_bytes(8, "little")], acc, True)
    assert m.may_write == [[0x5000, 0x6000]]
    z = _k(2, "opaque_struct_kernel")
    analysis.kernel_accesses(z, [b"\x00" * 8], acc, False)  # no pointer found: the op's own tensors
    assert z.reads and z.writes and "operation's arguments" in z.note


def test_snapshot_nodes_are_contracted_out_of_dependencies():
    nodes = [_n(0), _n(1, [0], instrumentation=True), _n(2, [1]), _n(3, [2, 1])]
    assert analysis.real_deps(nodes) == {0: [], 2: [0], 3: [2, 0]}


# -- findings, report, verdict -------------------------------------------------------------------------------
def _loc():
    s = StepInfo(5, "aten", "aten::mul.Tensor", "model.layers.3.mlp", Location("m.py", 12, function="forward"),
                 kernels=["void at::native::elementwise_kernel<...>(int, F)"])
    d = Divergence(s, 0, [1, 8], "float16", 0.3, 0.2, 8, 8, seed=1, steps_compared=6, replay_equals_capture=True)
    race = GraphRace(1, 3, "mm", "add", StepInfo(1, "aten", "aten::mm.out", "m", Location("m.py", 3)),
                     StepInfo(3, "aten", "aten::add.Tensor", "m", Location("m.py", 5)), 0, 64, "write/read",
                     "out of aten::mm.out")
    return Localization(divergence=d, frozen=[FrozenArg("elementwise_kernel", 7, 1, None, 12, 8, "2.5", "3.5",
                                                        step=s)], races=[race], nodes=10, steps=7,
                        errors=["frozen: RuntimeError: x"])


def test_localization_findings():
    fs = located(_loc())
    codes = [f.code for f in fs]
    assert codes == ["GSD023", "GSD024", "GSD025", "GSD027"]
    first = fs[0]
    assert first.severity == "note" and "model.layers.3.mlp" in first.message and first.location.line == 12
    assert any("capture input" in e for e in first.evidence) and any("GSD024" in e for e in first.evidence)
    assert fs[2].severity == "error" and fs[2].related[0].line == 5


def test_localization_never_changes_the_verdict_and_survives_json():
    ev = Evidence(target="t", seeds=[1], outputs=[OutputEvidence(0, [4], "float32", [
        Comparison(1, 0.0, 0.0, 0, 4, True, True, False, True)])])
    verdict, _ = classify(ev)
    ev.locate = _loc()
    verdict2, findings = classify(ev)
    assert verdict == verdict2 == "match" and "GSD025" in [f.code for f in findings]
    rep = Report("t", verdict2, findings, ev)
    back = Report.from_json(rep.to_json())
    assert back.evidence.locate.divergence.step.module == "model.layers.3.mlp"
    assert back.evidence.locate.races[0].b_step.location.line == 5
    assert [f.code for f in back.findings] == [f.code for f in findings]


def test_locate_option_is_checked():
    assert _should_locate("auto", "mismatch", None, None) and not _should_locate("auto", "match", None, None)
    assert _should_locate("auto", "match", "x.html", None) and _should_locate("always", "match", None, None)
    with pytest.raises(ValueError):
        _should_locate("never", "match", "x.html", None)
    with pytest.raises(ValueError):
        _should_locate("sometimes", "match", None, None)


# -- the picture -------------------------------------------------------------------------------------------
def test_picture_of_a_large_graph_collapses_by_module_and_escapes():
    nodes, steps = [], {}
    for i in range(1600):
        layer = i // 50
        steps[i] = StepInfo(i, "aten", "aten::mm", f"model.layers.{layer}.mlp", Location("m.py", i + 1))
        nodes.append(GraphNodeInfo(id=i, kind="kernel", name=f"void k<{i}>(float*) <script>alert(1)</script>",
                                   deps=[i - 1] if i else [], step=i, grid=[1, 1, 1], block=[32, 1, 1]))
    nodes.append(GraphNodeInfo(id=1600, kind="unknown(99)", name="unknown(99)", deps=[1599]))
    loc = Localization(divergence=Divergence(steps[700], 0, [4], "float32", 1.0, 1.0, 4, 4, 1, 700),
                       races=[GraphRace(3, 5, "k", "k", steps[3], steps[5], 0, 8, "write/read")], nodes=1601)
    page = gs_html.render("big <model>", loc, nodes, steps)
    html.parser.HTMLParser().feed(page)
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    assert page.count("<details class='group") == 33  # 32 layer groups and the unattributed node
    assert page.count("<tr id='n") == 1601 and "unknown(99)" in page
    i = page.index("model.layers.14 —")  # the divergent op's group is open and marked
    assert page.rfind("<details", 0, i) == page.rfind("<details class='group' open", 0, i)
    assert "b-race" in page and "b-divergent" in page


def test_picture_marks_the_group_of_an_op_that_added_no_node():
    s = StepInfo(2, "opaque", "sym_quant_fuse", "model.quant", Location("ops.py", 9))
    loc = Localization(divergence=Divergence(s, 0, [1], "int8", 1, 1, 1, 1, 1, 2))
    page = gs_html.render("t", loc, [GraphNodeInfo(0, "kernel", "k", step=None)], {})
    assert "added no node to the graph" in page and "model.quant" in page


# -- the repro ---------------------------------------------------------------------------------------------
def _t(x):
    return {"__graphsafe_tensor__": x, "device": "cuda:0"}


def test_repro_script_is_written_for_an_aten_op(tmp_path):
    step = Step(4, "aten", "aten::mul.Tensor", "model.mlp", Location("m.py", 3), [])
    d = Divergence(StepInfo(4, "aten", "aten::mul.Tensor"), 0, [2], "float32", 1.0, 1.0, 2, 2, 1, 5)
    out = tmp_path / "repro.py"
    write_repro(str(out), step, ((_t(torch.ones(2)), 2.0), {}), ((_t(torch.zeros(2)), 3.0), {}), d, None, None)
    py_compile.compile(str(out), doraise=True)
    text = out.read_text()
    assert "OP = 'aten::mul.Tensor'" in text and "model.mlp" in text
    saved = torch.load(tmp_path / "repro.pt", weights_only=False)
    assert saved["capture"][0][1] == 2.0 and saved["replay"][0][1] == 3.0


def test_repro_refuses_what_a_script_cannot_load(tmp_path):
    d = Divergence(StepInfo(1, "opaque", "f"), 0, [2], "float32", 1.0, 1.0, 2, 2, 1, 5)
    step = Step(1, "opaque", "f", "", None, [], entry=("mod", "Outer.<locals>.f"))
    with pytest.raises(RuntimeError, match="cannot import"):
        write_repro(str(tmp_path / "r.py"), step, (([1.0]), {}), (([1.0]), {}), d, None, None)
    step = Step(1, "opaque", "f", "", None, [], entry=("mod", "f"))
    with pytest.raises(RuntimeError, match="`object`"):
        write_repro(str(tmp_path / "r.py"), step, (([object()]), {}), (([1.0]), {}), d, None, None)
    assert not (tmp_path / "r.py").exists()
