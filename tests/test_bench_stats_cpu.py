"""The statistics of benchmarks/goal_pairs.py (the paired W4A4-vs-cuBLAS goal check), on hand-computed values."""
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
