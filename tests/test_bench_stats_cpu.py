"""The statistics of benchmarks/goal_pairs.py (the paired W4A4-vs-cuBLAS goal check), on hand-computed values,
and benchmarks/quant.py keeping its rows when killed."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
goal_pairs = pytest.importorskip("goal_pairs")


def test_quantile_interpolates_between_sorted_values():
    assert goal_pairs.quantile([4.0, 1.0, 3.0, 2.0], 0.1) == pytest.approx(1.3)
    assert goal_pairs.quantile([4.0, 1.0, 3.0, 2.0], 0.5) == pytest.approx(2.5)
    assert goal_pairs.quantile([7.0], 0.9) == 7.0
    with pytest.raises(ValueError):
        goal_pairs.quantile([], 0.5)


def test_summary_pairs_each_w4a4_time_with_its_own_cublas_time():
    # ratios 14/5 = 2.8, 13.75/5.5 = 2.5, 13.2/6 = 2.2: the median ratio is the middle pair's, not the
    # ratio of the medians (14 / 5.5 = 2.545...)
    s = goal_pairs.summarize([5.0, 5.5, 6.0], [14.0, 13.75, 13.2], goal=2.5)
    assert s["ratio"] == pytest.approx(2.5)
    assert s["w4a4_us"] == 5.5 and s["fp16_us"] == 13.75
    assert s["at_goal"] == pytest.approx(2 / 3)  # 2.5 counts as reached
    assert s["ratio_p10"] == pytest.approx(2.26) and s["ratio_p90"] == pytest.approx(2.74)
    assert s["pairs"] == 3


def test_summary_refuses_unpaired_times():
    with pytest.raises(ValueError):
        goal_pairs.summarize([5.0], [14.0, 14.1], goal=2.5)
    with pytest.raises(ValueError):
        goal_pairs.summarize([], [], goal=2.5)


def test_quant_benchmark_keeps_each_row_when_killed(tmp_path, monkeypatch, capsys):
    """benchmarks/quant.py saves its JSON after every row, so a run killed part way (the twenty-second
    session lost two runs' rows that way, with only 0.1 µs printed) keeps what it measured, marked
    incomplete; the rows it prints carry two decimals and the speed-up."""
    torch = pytest.importorskip("torch")
    quant = pytest.importorskip("quant")
    import json
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "stand-in GPU")
    monkeypatch.setattr(quant, "copy_bandwidth", lambda: 3.0e12)
    monkeypatch.setattr(quant, "bench_shape", lambda k, n, m, bw, reps: {
        "K": k, "N": n, "M": m, "fp16_us": 13.74, "w4a4_us": 5.46, "speedup": 13.74 / 5.46})
    calls = []

    def bench_quant(n, m, backend, reps):
        calls.append(backend)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while the CUDA backend builds
        return {"N": n, "M": m, "backend": backend, "us": 1.7, "TB_s": 0.1}
    monkeypatch.setattr(quant, "bench_quant", bench_quant)
    out = tmp_path / "goal.json"
    with pytest.raises(KeyboardInterrupt):
        quant.main(["--ms", "2,4", "--shapes", "3584x4608", "--json", str(out)])
    data = json.loads(out.read_text())
    assert [(r["M"], r["w4a4_us"]) for r in data["rows"]] == [(2, 5.46), (4, 5.46)]
    assert [r["backend"] for r in data["quant"]] == ["triton"] and data["complete"] is False
    assert not (tmp_path / "goal.json.tmp").exists()
    assert "3584->4608 M=4: fp16 13.74 us, w4a4 5.46 us, 2.52x" in capsys.readouterr().err
