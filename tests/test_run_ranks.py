"""``graphsafe run`` under torchrun: the merge of the ranks' run results (cross-rank findings, rank tags, one
exit status) and a real two-process torchrun on CPU (gloo)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from graphsafe.doctor.run_ranks import merge_runs

AR = "ncclDevKernel_AllReduce_Sum_f16_RING_LL"
SITE = {"file": "serve.py", "line": 40, "column": None, "function": "capture", "label": None}


def _capture(index=1, escaped=(), findings=()):
    return {"index": index, "site": SITE, "escaped": [{"name": n} for n in escaped],
            "findings": list(findings), "stream_ids": {}}


def _escape_finding(name=AR):
    return {"code": "GSD002", "severity": "error", "message": f"kernel `{name}` ran during capture",
            "location": {"file": "tp.py", "line": 12}, "evidence": ["it ran on a side stream"], "help": "join it",
            "stack": [], "related": [], "data": {}}


def _result(captures=(), exit_status=0, script_error=None):
    return {"script": "serve.py", "captures": list(captures), "exit_status": exit_status,
            "script_error": script_error, "sentinel_note": None}


def test_clean_ranks_merge_clean():
    m = merge_runs([_result([_capture()]), _result([_capture()])])
    assert m.exit_status == 0 and m.cross == [] and [c.ranks for c in m.captures] == [[0, 1]]


def test_a_collective_escaped_on_some_ranks_only_is_gsd029():
    m = merge_runs([_result([_capture()]), _result([_capture(escaped=[AR], findings=[_escape_finding()])], 1)])
    (f,) = m.cross
    assert f.code == "GSD029" and "`AllReduce` escaped capture #1 on rank 1 of 2 only" in f.message
    assert f.data["captured_on"] == [0] and f.location.file == "serve.py"
    (esc,) = m.captures[0].findings
    assert esc.evidence[0] == "on rank 1 of 2" and esc.data["ranks"] == [1]
    assert m.exit_status == 1
    assert json.loads(m.to_json())["cross_rank"][0]["code"] == "GSD029"


def test_a_collective_escaped_everywhere_is_each_ranks_gsd002_not_gsd029():
    both = [_result([_capture(escaped=[AR], findings=[_escape_finding()])], 1) for _ in range(2)]
    m = merge_runs(both)
    assert m.cross == []
    (f,) = m.captures[0].findings
    assert f.code == "GSD002" and f.evidence[0] == "on all 2 ranks"


def test_different_numbers_of_captures_are_gsd029():
    m = merge_runs([_result([_capture(1), _capture(2)]), _result([_capture(1)])])
    (f,) = m.cross
    assert f.code == "GSD029" and "different numbers of captures" in f.message
    assert m.captures[1].ranks == [0]


def test_no_results_is_an_error():
    with pytest.raises(ValueError):
        merge_runs([])


def test_run_under_torchrun_merges_on_rank_0(tmp_path):
    """Two real ranks on CPU: rank 1's script raises, rank 0 prints the merged result, both exit with its status."""
    script = tmp_path / "serve.py"
    script.write_text(textwrap.dedent("""
        import os
        if os.environ["RANK"] == "1":
            raise RuntimeError("rank one failed")
        print("rank zero ran")
    """))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "graphsafe",
           "run", "--json", str(script)]
    proc = subprocess.run(cmd, env=dict(os.environ), capture_output=True, text=True, timeout=300, cwd=tmp_path)
    out = proc.stdout
    merged = json.loads(out[out.index('{\n  "schema": "graphsafe.run.ranks/1"'):out.rindex("}") + 1])
    assert merged["ranks"] == 2 and [r["rank"] for r in merged["per_rank"]] == [0, 1]
    assert merged["per_rank"][0]["script_error"] is None
    assert "rank one failed" in merged["per_rank"][1]["script_error"]
    assert merged["exit_status"] == 2 and proc.returncode != 0
    assert "rank zero ran" in out


def test_run_under_torchrun_after_the_script_destroyed_its_process_group(tmp_path):
    """The usual script ends with ``destroy_process_group()``: the merge then makes its own group again."""
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""
        import torch
        import torch.distributed as dist
        dist.init_process_group("gloo")
        t = torch.ones(2)
        dist.all_reduce(t)
        if dist.get_rank() == 0:  # one printer: two ranks' lines interleave on the shared stdout
            print("sum", int(t[0]))
        dist.destroy_process_group()
    """))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "graphsafe",
           "run", "--json", str(script)]
    proc = subprocess.run(cmd, env=dict(os.environ), capture_output=True, text=True, timeout=300, cwd=tmp_path)
    out = proc.stdout
    assert "sum 2" in out, out + proc.stderr[-2000:]
    merged = json.loads(out[out.index('{\n  "schema": "graphsafe.run.ranks/1"'):out.rindex("}") + 1])
    assert [r["script_error"] for r in merged["per_rank"]] == [None, None]
    assert [r["captures"] for r in merged["per_rank"]] == [0, 0] and merged["cross_rank"] == []


def test_sentinel_runs_find_escaped_collectives_through_their_findings():
    """`run --sentinel` records hold the sentinel's GSD002 findings only (no traced ops): the kernel named in the
    finding's data counts, mangled or not."""
    mangled = "_Z39ncclDevKernel_AllReduce_Sum_f16_RING_LL24ncclDevKernelArgsStorageILm4096EE"
    f = _escape_finding(mangled)
    f["data"] = {"kernel": mangled}
    m = merge_runs([_result([_capture()]), _result([_capture(findings=[f])], 1)])
    (g,) = m.cross
    assert g.code == "GSD029" and g.data["collective"] == "AllReduce" and g.data["escaped_on"] == [1]


def test_a_rank_whose_script_raised_is_not_a_capture_count_mismatch():
    m = merge_runs([_result([_capture(1), _capture(2)]), _result([_capture(1)], 2, script_error="OOM at x.py:3")])
    assert m.cross == [] and m.exit_status == 2


def test_ranks_localize_all_or_none():
    from graphsafe.cli import rank_options

    base = {"locate": "auto", "html": None, "repro": None}
    assert rank_options(base, 0)["locate"] == "never" and rank_options(base, 1)["locate"] == "never"
    pic = {**base, "html": "/tmp/g.html"}
    assert rank_options(pic, 0) == {"locate": "always", "html": "/tmp/g.html", "repro": None}
    assert rank_options(pic, 1) == {"locate": "always", "html": None, "repro": None}
    assert rank_options({**base, "locate": "always"}, 1)["locate"] == "always"
