"""The zoo's machinery without a GPU: the registry agrees with the explain examples, the host-state
snapshots name what changed and where, and each mechanism classifies from evidence alone."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from graphsafe import cases  # noqa: E402
from graphsafe.doctor import probes, state  # noqa: E402
from graphsafe.doctor.classify import classify  # noqa: E402
from graphsafe.doctor.codes import CODES  # noqa: E402
from graphsafe.doctor.compare import noise_floor, padded_like, padding, unpad  # noqa: E402
from graphsafe.doctor.evidence import (AttrChange, Census, Comparison, Evidence, HostValue,  # noqa: E402
                                       OutputEvidence, Overwrite, Race, Rebinding, TensorState)

DATA = Path(__file__).parent / "data" / "zoo"


def test_zoo_has_fifteen_classes_each_with_code_and_twin():
    assert [c.number for c in cases.ZOO] == list(range(1, 16))
    for c in cases.ZOO:
        assert c.code in CODES and c.good, c
        if c.code != "GSD002":  # escaped work's example is the seed
            assert CODES[c.code].bad == c.bad and CODES[c.code].good == c.good, c.code


def _cmp(seed=1, close=False, **kw):
    base = dict(seed=seed, max_abs=0.5, max_rel=0.5, mismatched=10, numel=100, close=close,
                bitwise_equal=close, replay_equals_capture_time=False, eager_moved=True)
    base.update(kw)
    return Comparison(**base)


def _ev(*comparisons, **kw):
    ev = Evidence(target="t", seeds=[c.seed for c in comparisons])
    ev.outputs = [OutputEvidence(0, [4, 4], "float32", list(comparisons))]
    for k, v in kw.items():
        setattr(ev, k, v)
    return ev


def _codes(ev):
    verdict, findings = classify(ev)
    return verdict, [f.code for f in findings]


def test_host_value_with_same_kernels_is_frozen_value():
    ev = _ev(_cmp(close_to_eager_capture_host=True),
             host_values=[HostValue("temperature", "argument", "0.5", {"1": "0.75"})],
             census=Census(1, ["k"], ["k"]))
    verdict, codes = _codes(ev)
    assert (verdict, codes) == ("mismatch", ["GSD010"])
    f = classify(ev)[1][0]
    assert "`temperature`" in f.message and any("capture-time host values" in e for e in f.evidence)


def test_host_value_with_other_kernels_is_control_flow():
    ev = _ev(_cmp(), host_values=[HostValue("step", "argument", "0", {"1": "1"})],
             census=Census(1, ["gemm", "add"], ["gemm"], ["add"], []))
    assert _codes(ev) == ("mismatch", ["GSD018"])


def test_padded_batch_within_rounding_is_benign_beyond_is_shape_bug():
    noisy = _cmp(close=True, bitwise_equal=False, padded_from=3, close_to_eager_padded=True,
                 bitwise_equal_to_eager_padded=True, noise_floor=0.01, max_abs=0.004)
    assert _codes(_ev(noisy)) == ("benign", ["GSD020"])
    beyond = _cmp(padded_from=3, close_to_eager_padded=True, bitwise_equal_to_eager_padded=True,
                  noise_floor=0.01, max_abs=0.3)
    assert _codes(_ev(beyond)) == ("mismatch", ["GSD018"])
    same = _cmp(close=True, padded_from=3, close_to_eager_padded=True, noise_floor=0.01, max_abs=0.0)
    assert _codes(_ev(same)) == ("match", [])


def test_mechanisms_are_named_even_when_outputs_agree():
    ok = _cmp(close=True)
    assert _codes(_ev(ok, side_effects=[AttrChange("model.calls", "3", "4")]))[1] == ["GSD011"]
    assert _codes(_ev(ok, rebound=[Rebinding("model.weight", "0x1", "0x2")]))[1] == ["GSD012"]
    assert _codes(_ev(ok, overwrites=[Overwrite(0, 0, 2, False, 1.0)]))[1] == ["GSD013"]
    assert _codes(_ev(ok, races=[Race("0x1", "reading from `aten.add`", 0, "writing to `aten.mm`", 7)]))[1] == ["GSD017"]
    ev = _ev(ok)
    ev.probes.uninitialized = {"outputs": [0], "nonfinite": 12}
    assert _codes(ev) == ("mismatch", ["GSD014"])


def test_stateful_targets_are_reported_as_such():
    acc = TensorState("model.acc", "buffer", "mutated", "accumulates", "grew by 3 on each call")
    ev = _ev(_cmp(), tensor_state=[acc], eager_unstable=True)
    ev.probes.eager_calls_differ = True
    assert _codes(ev) == ("mismatch", ["GSD015"])
    w = TensorState("model.weight", "parameter", "mutated", "compounds", "multiplied by 1.5 on each call")
    ev = _ev(_cmp(), tensor_state=[w], eager_unstable=True)
    ev.probes.eager_calls_differ = True
    assert _codes(ev) == ("mismatch", ["GSD016"])
    # state that changes but that no output depends on (a device counter) is not a finding
    ev = _ev(_cmp(close=True), tensor_state=[acc])
    ev.probes.eager_calls_differ = False
    assert _codes(ev) == ("match", [])
    # unexplained instability stays GSD008 and inconclusive
    ev = _ev(_cmp(), eager_unstable=True)
    assert _codes(ev) == ("inconclusive", ["GSD005", "GSD008"])


def test_rng_frozen_needs_eager_to_follow_the_seed():
    ev = _ev(_cmp())
    ev.probes.rng_eager_sensitive, ev.probes.rng_replay_sensitive = True, False
    assert "GSD019" in _codes(ev)[1]
    ev.probes.rng_replay_sensitive = True
    assert "GSD019" not in _codes(ev)[1]


def test_timeout_and_fault_are_their_own_codes():
    from graphsafe.doctor.evidence import Failure

    ev = Evidence(target="t", failure=Failure("replay", "CallTimeout", "the replay on input 2 did not finish",
                                              timed_out_after_s=5.0))
    assert _codes(ev) == ("inconclusive", ["GSD021"])
    ev = Evidence(target="t", failure=Failure("eager", "AcceleratorError", "CUDA error: device-side assert triggered",
                                              cuda_error=710, cuda_usable_after=False))
    verdict, findings = classify(ev)
    assert [f.code for f in findings] == ["GSD022"] and "unusable" in " ".join(findings[0].evidence)


def test_evidence_round_trips_through_json():
    ev = _ev(_cmp(), host_values=[HostValue("t", "argument", "1", {"2": "3"})], census=Census(1, ["a"], ["b"], ["a"], ["b"]),
             races=[Race("0x1", "r", 0, "w", 7)], tensor_state=[TensorState("m.a", "buffer", "mutated")])
    ev.probes.uninitialized = {"outputs": [0], "nonfinite": 1}
    back = Evidence.from_dict(json.loads(json.dumps(ev.to_dict())))
    assert back == ev and classify(back) == classify(ev)


@pytest.mark.skipif(not DATA.is_dir(), reason="no recorded zoo reports")
@pytest.mark.parametrize("path", sorted(DATA.glob("*.json")) if DATA.is_dir() else [], ids=lambda p: p.stem)
def test_recorded_zoo_evidence_classifies_the_same(path):
    """Reports recorded on an H100 (benchmarks/zoo.py --reports): re-classified here, without a GPU."""
    from graphsafe.doctor.report import Report

    report = Report.from_json(path.read_text())
    verdict, findings = classify(report.evidence)
    assert verdict == report.verdict and [f.code for f in findings] == report.codes
    spec = "graphsafe.cases." + path.stem.replace("__", ":")
    case = next(c for c in cases.ZOO + cases.VARIANTS + cases.BAD_INPUT if c.bad == spec)
    assert case.code in report.codes and verdict == case.verdict


# -- host state, on CPU tensors -----------------------------------------------------------------------

def test_side_effects_are_named_with_their_lines():
    from graphsafe.cases.host_side_effect import CountingProjection

    m = CountingProjection(8)
    objs = state.roots(m)
    snaps = []
    for _ in range(3):
        m(torch.randn(2, 8))
        snaps.append(state.snapshot(objs))
    changes = {c.path: c for c in state.side_effects(snaps[1], snaps[2], objs)}
    assert set(changes) == {"model.calls", "model.tokens_seen"}
    assert changes["model.calls"].before == "2" and changes["model.calls"].after == "3"
    w = changes["model.calls"].writes[0]
    assert w.file.endswith("host_side_effect.py") and w.function == "forward" and w.label == "+="


def test_accumulating_buffer_and_compounding_parameter():
    from graphsafe.cases.accumulation import BinSums
    from graphsafe.cases.inplace_param import FoldedScaleLinear

    m = BinSums(4, 3)
    x, idx = torch.ones(6, 3), torch.tensor([0, 1, 2, 3, 0, 1])
    objs = state.roots(m)
    snaps = []
    for _ in range(3):
        m(x, idx)
        snaps.append(state.snapshot(objs))
    [t] = state.tensor_changes(*snaps, objs)
    assert (t.path, t.role, t.pattern) == ("model.acc", "buffer", "accumulates")
    assert any(w.label == "index_add_" for w in t.writes)
    f = FoldedScaleLinear(8)
    objs = state.roots(f)
    snaps = []
    with torch.no_grad():
        for _ in range(3):
            f(torch.randn(2, 8))
            snaps.append(state.snapshot(objs))
    [t] = state.tensor_changes(*snaps, objs)
    assert (t.path, t.role, t.pattern) == ("model.weight", "parameter", "compounds")


def test_rebinding_found_through_a_closure_and_prepare():
    model = torch.nn.Linear(4, 4)

    def step(x):
        return model(x)

    def reload(seed):
        model.weight = torch.nn.Parameter(torch.randn(4, 4))

    objs = state.roots(step)
    assert "model" in objs
    before = state.snapshot(objs, sums=False)
    reload(1)
    [r] = state.rebindings(before, state.snapshot(objs, sums=False), objs, [reload])
    assert r.path == "model.weight" and r.writes and r.writes[0].function == "reload"


def test_host_values_and_capture_time_substitution():
    def f(x, temperature, mode="a"):
        return x / temperature

    cap = (torch.ones(2), 0.5)
    hv = probes.host_values(f, cap, {1: (torch.ones(2), 0.75), 2: (torch.ones(2), 0.5)})
    assert [(h.path, h.capture_value, h.values) for h in hv] == [("temperature", "0.5", {"1": "0.75"})]
    # a CPU tensor is a host value too: a graph only sees device memory
    [h] = probes.host_values(f, cap, {1: (torch.zeros(2), 0.5)})
    assert (h.path, h.kind) == ("x", "cpu_tensor")
    mixed = probes.with_host_values((torch.zeros(2), 0.75), cap)
    assert mixed[1] == 0.5 and torch.equal(mixed[0], torch.ones(2))


def test_padding_like_a_bucketed_runner():
    static = (torch.zeros(8, 3),)
    assert padding(static, (torch.ones(3, 3),)) == (3, 8)
    assert padding(static, (torch.ones(8, 3),)) is None
    with pytest.raises(ValueError):
        padding(static, (torch.ones(9, 3),))
    with pytest.raises(ValueError):
        padding(static, (torch.ones(3, 4),))
    padded = padded_like((torch.ones(3, 3),), static)
    assert padded[0][:3].eq(1).all() and padded[0][3:].eq(0).all()
    assert unpad(torch.arange(8), (3, 8)).tolist() == [0, 1, 2]
    assert noise_floor(torch.tensor([2.0, -4.0], dtype=torch.bfloat16)) == 4 * 2 ** -7 * 4.0


def test_collective_cases_are_registered_with_their_codes_and_twins():
    import importlib

    assert {c.code for c in cases.COLLECTIVES} == {"GSD002", "GSD021", "GSD028", "GSD029"}
    for c in cases.COLLECTIVES:
        assert c.ranks == 2 and c.code in CODES and c.good, c
        for spec in (c.bad, c.good):
            module, name = spec.split(":")
            assert callable(getattr(importlib.import_module(module), name)), spec
