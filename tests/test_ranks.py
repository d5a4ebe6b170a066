"""Checks under torchrun: rank detection, the merge of the ranks' reports, cross-rank collective findings,
and a real two-process torchrun on CPU (gloo)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from graphsafe.diagnostics import Finding, Location  # noqa: E402
from graphsafe.doctor.evidence import Census, Evidence  # noqa: E402
from graphsafe.doctor.ranks import collectives, merge, rank_info  # noqa: E402
from graphsafe.doctor.report import Report  # noqa: E402

AR = "void ncclDevKernel_AllReduce_Sum_f16_RING_LL(ncclDevKernelArgsStorage<4096ul>)"
AG = "ncclDevKernel_AllGather_RING_LL"
MM = "sm90_xmma_gemm_f16f16_f16f32"


def _report(verdict="match", graph=(MM, AR, MM), findings=()):
    ev = Evidence(target="tp_mlp", census=Census(1, list(graph), list(graph)) if graph is not None else None)
    return Report("tp_mlp", verdict, list(findings), ev, {"device": "GPU"}, {"total_s": 1.0})


def test_rank_info_reads_torchruns_environment():
    assert rank_info({}) is None
    assert rank_info({"WORLD_SIZE": "1", "RANK": "0"}) is None
    info = rank_info({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"})
    assert (info.rank, info.world_size, info.local_rank) == (1, 2, 1)
    with pytest.raises(ValueError, match="outside WORLD_SIZE"):
        rank_info({"WORLD_SIZE": "2", "RANK": "2"})
    with pytest.raises(ValueError, match="not integers"):
        rank_info({"WORLD_SIZE": "two"})


def test_collectives_are_the_nccl_kernels_by_short_name():
    assert collectives([MM, AR, "at::native::elementwise_kernel", AG]) == ["ncclDevKernel_AllReduce_Sum_f16_RING_LL", AG]


def test_clean_ranks_merge_to_one_clean_report():
    m = merge([_report(), _report()])
    assert m.verdict == "match" and m.findings == [] and m.target == "tp_mlp (2 ranks)"
    assert [r["collectives"] for r in m.ranks] == [["ncclDevKernel_AllReduce_Sum_f16_RING_LL"]] * 2
    back = Report.from_json(m.to_json())
    assert back.ranks == m.ranks


def test_findings_are_tagged_with_their_ranks_and_merged():
    where = Location("tp.py", 12)
    same = Finding("GSD002", "error", "kernel `k` ran during capture", location=where)
    only1 = Finding("GSD010", "error", "frozen", location=Location("tp.py", 30))
    m = merge([_report("mismatch", findings=[same]), _report("mismatch", findings=[same, only1])])
    assert m.verdict == "mismatch"
    by_code = {f.code: f for f in m.findings}
    assert by_code["GSD002"].data["ranks"] == [0, 1] and by_code["GSD002"].evidence[0] == "on all 2 ranks"
    assert by_code["GSD010"].data["ranks"] == [1] and by_code["GSD010"].evidence[0] == "on rank 1 of 2"
    assert same.evidence == [], "the ranks' own findings are not changed"


def test_worst_verdict_wins():
    assert merge([_report("match"), _report("inconclusive"), _report("benign")]).verdict == "inconclusive"
    assert merge([_report("inconclusive"), _report("mismatch")]).verdict == "mismatch"


def test_collective_on_some_ranks_only_is_gsd029():
    m = merge([_report(graph=(MM, AR)), _report(graph=(MM,))])
    (f,) = [f for f in m.findings if f.code == "GSD029"]
    assert "AllReduce" in f.message and "rank 0 of 2" in f.message
    assert f.data["missing_on"] == [1] and m.verdict == "mismatch"


def test_collectives_in_another_order_are_gsd028():
    m = merge([_report(graph=(AR, AG)), _report(graph=(AG, AR))])
    (f,) = m.findings
    assert f.code == "GSD028" and "rank 0: ncclDevKernel_AllReduce" in f.evidence[0]


def test_no_cross_rank_finding_without_a_census():
    assert merge([_report(graph=None), _report(graph=(AR,))]).findings == []


def test_check_under_torchrun_merges_on_rank_0(tmp_path):
    """Two real ranks on CPU: each checks (no GPU here: GSD006), rank 0 prints the merged report, both exit
    with its status."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "graphsafe",
           "check", "helper_targets:plain", "--inputs", "helper_targets:inputs", "--json", "--timeout", "120"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    out = proc.stdout
    start = out.index("{")
    report = json.loads(out[start:out.rindex("}") + 1])
    expected = "inconclusive" if not torch.cuda.is_available() else report["verdict"]
    assert report["verdict"] == expected and report["target"].endswith("(2 ranks)")
    assert [r["rank"] for r in report["ranks"]] == [0, 1]
    if not torch.cuda.is_available():
        (f,) = report["findings"]
        assert f["code"] == "GSD006" and f["data"]["ranks"] == [0, 1] and f["evidence"][0] == "on all 2 ranks"
        assert proc.returncode != 0, "torchrun reports the ranks' status 2"


def _tp_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from graphsafe.cases.tp_mlp import TPMLP, full_weights, reference

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.manual_seed(7)
        x = torch.randn(3, 64)  # the same on every rank
        y = TPMLP(64, 128, rank, world)(x)
        expected = reference(x, *full_weights(64, 128))
        torch.save({"max_err": float((y - expected).abs().max())}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_tensor_parallel_mlp_equals_the_unsharded_one_on_two_gloo_ranks(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = str(tmp_path / "err")
    mp.spawn(_tp_worker, args=(2, port, out), nprocs=2, join=True)
    errs = [torch.load(f"{out}.{r}")["max_err"] for r in range(2)]
    assert max(errs) < 1e-5, errs


def test_tensor_parallel_mlp_refuses_bad_shards():
    from graphsafe.cases.tp_mlp import TPMLP

    with pytest.raises(ValueError, match="divisible by the world size 3"):
        TPMLP(8, 16, 0, 3)
    with pytest.raises(ValueError, match="bug must be"):
        TPMLP(8, 16, 0, 2, bug="nope")


def test_graph_read_at_capture_is_compared_even_when_a_replay_hung():
    """Under torchrun the check reads each graph's kernels right after capture: a rank whose replay hung (no
    replay census) still takes part in the collective comparison, and the ranks table says where each stopped."""
    from graphsafe.doctor.evidence import Failure

    hung = _report("inconclusive", graph=None)
    hung.evidence.graph_kernels = [MM, AR]
    hung.evidence.last_step = "replay on input 1"
    hung.evidence.failure = Failure("replay", "CallTimeout", "the replay on input 2 did not finish", timed_out_after_s=5.0)
    done = _report("mismatch", graph=None)
    done.evidence.graph_kernels = [MM]
    done.evidence.last_step = "replay on input 3"
    m = merge([hung, done])
    (f,) = [f for f in m.findings if f.code == "GSD029"]
    assert f.data["ranks"] == [0] and f.data["missing_on"] == [1]
    assert m.ranks[0]["last_step"] == "replay on input 1" and "hung in the replay" in m.ranks[0]["stopped"]
    assert m.ranks[1]["stopped"] is None
    from rich.console import Console

    from graphsafe.doctor.render import render_report

    console = Console(record=True, width=200)
    render_report(m, console)
    text = console.export_text()
    assert "last step finished" in text and "hung in the replay, stopped after 5 s" in text


def test_a_hang_names_the_last_finished_step_and_collective_help():
    from graphsafe.doctor.classify import classify
    from graphsafe.doctor.evidence import Failure

    ev = Evidence(target="tp", census=Census(1, [MM, AR], [MM, AR]), last_step="replay on input 1",
                  failure=Failure("replay", "CallTimeout", "the replay on input 2 did not finish", timed_out_after_s=5.0))
    _, findings = classify(ev)
    (f,) = [f for f in findings if f.code == "GSD021"]
    assert "the last step that finished: the replay on input 1" in f.evidence
    assert "collective" in f.help and f.data["last_step"] == "replay on input 1"
    ev.census = Census(1, [MM], [MM])
    (f,) = [f for f in classify(ev)[1] if f.code == "GSD021"]
    assert "spin-waits" in f.help


def test_the_two_collective_mlp_orders_its_collectives_per_rank_only_under_capture(tmp_path):
    """Eagerly (all the gloo test can do) the bad order and its fixed twin compute the same thing, and both
    equal the unsharded MLP: the bug is confined to the captured path."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = str(tmp_path / "err")
    mp.spawn(_two_worker, args=(2, port, out), nprocs=2, join=True)
    errs = [torch.load(f"{out}.{r}") for r in range(2)]
    assert all(e["max_err"] < 1e-5 and e["same"] for e in errs), errs


def _two_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from graphsafe.cases.tp_mlp import TPMLP, full_weights, reference

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.manual_seed(7)
        x = torch.randn(3, 64)
        y, s = TPMLP(64, 128, rank, world, bug="two_collectives")(x)
        y2, s2 = TPMLP(64, 128, rank, world, bug="order")(x)
        expected = reference(x, *full_weights(64, 128))
        torch.save({"max_err": float((y - expected).abs().max()),
                    "same": bool(torch.equal(y, y2) and torch.equal(s, s2))}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_mangled_nccl_kernel_names_are_collectives():
    mangled = "_Z39ncclDevKernel_AllReduce_Sum_f16_RING_LL24ncclDevKernelArgsStorageILm4096EE"
    assert collectives([mangled, "_Z3fooPfi"]) == ["ncclDevKernel_AllReduce_Sum_f16_RING_LL"]
