"""Localization on a GPU: the first divergent op, the census, frozen arguments, graph races, the picture
and the repro, on the zoo and on a decoder with a planted bug; bad graphs do not crash the census."""
from __future__ import annotations

import html.parser
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.gpu

from graphsafe.cases import decoder  # noqa: E402
from graphsafe.doctor.check import check  # noqa: E402
from graphsafe.doctor.target import resolve  # noqa: E402

LOCATE = {"GSD023", "GSD024", "GSD025", "GSD026", "GSD027"}


def _one(report, code):
    found = [f for f in report.findings if f.code == code]
    assert found, [(f.code, f.message, f.evidence) for f in report.findings]
    return found[0]


def test_seed_is_located_at_the_extension_call():
    report = check(resolve("graphsafe.cases.seed:buggy"))
    assert report.verdict == "mismatch"
    f = _one(report, "GSD023")
    assert f.data["kind"] == "opaque" and f.data["op"] == "sym_quant_fuse", f
    assert f.location.file.endswith("seed/ops.py") and f.location.line == 9
    assert any("added no node to the graph" in e for e in f.evidence), f.evidence
    census = _one(report, "GSD026")
    assert any(m.startswith("scale_andquant_kernel") for m in census.data["missing"]), census.data
    assert "GSD027" not in report.codes, _one(report, "GSD027").evidence


def test_frozen_triton_argument_is_named():
    report = check(resolve("graphsafe.cases.frozen_scalar:bad"))
    f = _one(report, "GSD023")
    assert f.data["op"] == "softmax_t" and f.location.file.endswith("frozen_scalar.py"), f
    frozen = _one(report, "GSD024")
    assert frozen.data["kernel"] == "softmax_t" and frozen.data["name"] == "inv_t", frozen.data
    assert frozen.data["value_a"].startswith("2.0"), frozen.data  # 1 / 0.5 at capture
    assert "GSD027" not in report.codes, _one(report, "GSD027").evidence


def test_graph_race_is_found_from_nodes_and_edges():
    report = check(resolve("graphsafe.cases.stream_race:bad"), locate="always")
    f = _one(report, "GSD025")
    assert f.severity == "error"
    ops = {f.data["a"], f.data["b"]}
    assert len(ops) == 2
    assert f.location.file.endswith("stream_race.py")
    text = " ".join(f.evidence)
    assert "aten::mm" in text and "aten::add" in text, text


@pytest.mark.parametrize("spec", ["graphsafe.cases.stream_race:good", "graphsafe.cases.frozen_scalar:good",
                                  "graphsafe.cases.seed:fixed"])
def test_clean_targets_localize_clean(spec):
    report = check(resolve(spec), locate="always")
    assert report.verdict == "match", report.findings
    assert not [f for f in report.findings if f.code in LOCATE], [(f.code, f.evidence) for f in report.findings]
    assert report.evidence.locate.nodes > 0


@pytest.mark.parametrize("bug,op", [("frozen", "aten::mul"), ("escaped", "aten::mm")])
def test_decoder_planted_bug_is_named(bug, op):
    target = decoder.make(layers=6, bug=bug, at=4, d=256)
    report = check(target)
    assert report.verdict == "mismatch"
    f = _one(report, "GSD023")
    assert f.data["module"].startswith("model.layers.4.mlp"), f.data
    assert f.data["op"].startswith(op), f.data
    assert f.location.file.endswith("cases/decoder.py")
    assert "GSD027" not in report.codes, _one(report, "GSD027").evidence


def test_html_picture_is_written_and_marks_the_divergent_group(tmp_path):
    out = tmp_path / "report.html"
    report = check(decoder.make(layers=4, bug="frozen", at=2, d=256), html=str(out))
    text = out.read_text()
    html.parser.HTMLParser().feed(text)
    assert "model.layers.2" in text and "class='divergent'" in text
    assert report.evidence.locate.html == str(out)
    assert text.count("<tr id='n") == report.evidence.locate.nodes


@pytest.mark.parametrize("spec", ["graphsafe.cases.seed:buggy", "graphsafe.cases.frozen_scalar:bad"])
def test_repro_script_reproduces_alone(tmp_path, spec):
    out = tmp_path / "repro.py"
    report = check(resolve(spec), repro=str(out))
    assert report.evidence.locate.repro == str(out), report.evidence.locate.errors
    p = subprocess.run([sys.executable, str(out)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "reproduced" in p.stdout


def test_census_survives_unusual_graphs():
    """A hand-built graph with child-graph, memory, event, empty, memset and host nodes, and a captured
    graph of 20k nodes on two streams: every node is listed with its kind, the picture renders."""
    from graphsafe.doctor.locate import analysis, html as gs_html
    from graphsafe.doctor.locate.cugraph import read_graph
    from graphsafe.doctor.locate.model import Localization

    drv = pytest.importorskip("cuda.bindings.driver")
    g, expected, keep = _unusual_graph(drv)
    assert {"graph", "memset", "empty", "event_record", "event_wait", "mem_alloc", "mem_free"} <= set(expected)
    raw = read_graph(int(g))
    cond = [n for n in raw.nodes if n.kind == "conditional"]
    assert len(cond) == 1
    if cond[0].note:  # a driver without cuGraphNodeGetParams: the node is listed, its body is not
        assert "cuGraphNodeGetParams" in cond[0].note, cond[0].note
        expected.remove("empty")
    else:
        assert any(n.parent == cond[0].id for n in raw.nodes)
    assert sorted(n.kind for n in raw.nodes) == sorted(expected), [(n.kind, n.name, n.note) for n in raw.nodes]
    inner = [n for n in raw.nodes if n.kind == "memset"]
    assert inner and all(n.parent is not None for n in inner)  # flattened out of the child graph
    page = gs_html.render("unusual", Localization(), raw.nodes, {})
    assert "mem_alloc" in page and "child graph" in page
    analysis.races(raw.nodes)

    main, side = torch.cuda.Stream(), torch.cuda.Stream()
    x = torch.zeros(1, device="cuda")
    graph = torch.cuda.CUDAGraph(keep_graph=True)
    with torch.cuda.graph(graph, stream=main):
        side.wait_stream(main)
        for i in range(10_000):
            x.add_(1)
            with torch.cuda.stream(side):
                torch.empty(1, device="cuda").fill_(i)
        main.wait_stream(side)
    raw = read_graph(graph.raw_cuda_graph())
    assert len(raw.nodes) >= 20_000
    page = gs_html.render("20k", Localization(), raw.nodes, {})
    assert page.count("<tr id='n") == len(raw.nodes)


def _ok(res):
    assert int(res[0]) == 0, res
    return res[1] if len(res) == 2 else res[1:]


def _unusual_graph(drv):
    """A graph built by hand through the driver: the node kinds PyTorch's captures rarely make."""
    buf = torch.zeros(1024, device="cuda", dtype=torch.int32)  # first: PyTorch makes its context current
    ctx = _ok(drv.cuCtxGetCurrent())
    dev = torch.cuda.current_device()
    g = _ok(drv.cuGraphCreate(0))
    child = _ok(drv.cuGraphCreate(0))
    kinds = ["graph"]
    empty = _ok(drv.cuGraphAddEmptyNode(child, None, 0))
    p = drv.CUDA_MEMSET_NODE_PARAMS()
    p.dst, p.elementSize, p.width, p.height, p.pitch, p.value = buf.data_ptr(), 4, 1024, 1, 0, 7
    _ok(drv.cuGraphAddMemsetNode(child, [empty], 1, p, ctx))
    kinds += ["empty", "memset"]
    node = _ok(drv.cuGraphAddChildGraphNode(g, None, 0, child))
    event = _ok(drv.cuEventCreate(0))
    rec = _ok(drv.cuGraphAddEventRecordNode(g, [node], 1, event))
    wait = _ok(drv.cuGraphAddEventWaitNode(g, [rec], 1, event))
    kinds += ["event_record", "event_wait"]
    ap = drv.CUDA_MEM_ALLOC_NODE_PARAMS()
    ap.poolProps.allocType = drv.CUmemAllocationType.CU_MEM_ALLOCATION_TYPE_PINNED
    ap.poolProps.location.type = drv.CUmemLocationType.CU_MEM_LOCATION_TYPE_DEVICE
    ap.poolProps.location.id = dev
    ap.bytesize = 1 << 20
    alloc = _ok(drv.cuGraphAddMemAllocNode(g, [wait], 1, ap))
    _ok(drv.cuGraphAddMemFreeNode(g, [alloc], 1, ap.dptr))
    kinds += ["mem_alloc", "mem_free"]
    # a conditional IF node (CUDA 12.4+) whose body holds one empty node
    handle = _ok(drv.cuGraphConditionalHandleCreate(g, ctx, 0, 0))
    cp = drv.CUgraphNodeParams()
    cp.type = drv.CUgraphNodeType.CU_GRAPH_NODE_TYPE_CONDITIONAL
    cp.conditional.handle = handle
    cp.conditional.type = drv.CUgraphConditionalNodeType.CU_GRAPH_COND_TYPE_IF
    cp.conditional.size = 1
    cp.conditional.ctx = ctx
    _ok(drv.cuGraphAddNode(g, None, None, 0, cp))
    _ok(drv.cuGraphAddEmptyNode(cp.conditional.phGraph_out[0], None, 0))
    kinds += ["conditional", "empty"]
    return g, kinds, (buf, child, event)
