"""Issue 8's single-GPU parts on a GPU: bounded waits for work on other streams, the captured graph read before any
replay, and the tensor-parallel targets under torchrun with one rank (NCCL)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.gpu

from graphsafe.doctor import probes  # noqa: E402
from graphsafe.doctor.check import check  # noqa: E402
from graphsafe.doctor.ranks import collectives, merge  # noqa: E402
from graphsafe.doctor.target import resolve  # noqa: E402

NCCL_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1"}


def test_wait_bounds_work_left_on_another_stream():
    """A kernel spinning on a side stream (an un-joined collective waiting for partners, say) no longer blocks the
    check's device-wide synchronize forever: the wait says so after its bound, and the kernel is then released."""
    from graphsafe.cases.hang import _kernel

    dev = torch.device("cuda")
    flag = torch.zeros(1, dtype=torch.int32, device=dev)
    x = torch.ones(1024, device=dev)
    out = torch.empty_like(x)
    side, release = torch.cuda.Stream(), torch.cuda.Stream()
    torch.cuda.synchronize()
    with torch.cuda.stream(side):
        _kernel()[(1,)](flag, x, out, x.numel(), BLOCK=1024)
    with pytest.raises(probes.CallTimeout, match=r"replay on input 1 \(work on another stream\) did not finish"):
        probes.wait(dev, 1.0, "replay on input 1")
    with torch.cuda.stream(release):
        flag.fill_(1)
    torch.cuda.synchronize()
    assert torch.equal(out, 2 * x) and int(flag) == 0


def test_graph_is_read_before_any_replay():
    report = check(resolve("graphsafe.cases.decoder:good"), read_graph=True, locate="never")
    ev = report.evidence
    assert report.verdict == "match", [(f.code, f.message) for f in report.findings]
    assert ev.graph_kernels and ev.census is not None
    assert len(ev.graph_kernels) == len(ev.census.graph), (ev.graph_kernels, ev.census.graph)
    # the comparison ends with eager calls (padding, host values), so the last finished step is one of the check's
    assert ev.last_step in {f"{what} on input {s}" for what in ("eager call", "replay") for s in ev.seeds}
    merged = merge([report, report])
    assert merged.verdict == "match" and merged.findings == [] and merged.ranks[0]["collectives"] == []


def _torchrun(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1", "-m", "graphsafe",
           *args]
    return subprocess.run(cmd, env={**os.environ, **NCCL_ENV}, capture_output=True, text=True, timeout=timeout)


def _json_after(out: str, head: str) -> dict:
    return json.loads(out[out.index(head):out.rindex("}") + 1])


@pytest.mark.parametrize("name", ["good", "good_two_collectives"])
def test_tensor_parallel_mlp_is_clean_under_torchrun_with_one_rank(name):
    proc = _torchrun("check", f"graphsafe.cases.tp_mlp:{name}", "--json")
    report = _json_after(proc.stdout, '{\n  "schema"')
    assert report["verdict"] == "match" and report["findings"] == [], proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == 0


def test_the_nccl_world_of_one_checks_in_process_and_reads_its_collectives():
    """With one rank the all-reduce is NCCL's too: the check reads the captured graph and its collectives."""
    import torch.distributed as dist

    from graphsafe.cases import tp_mlp

    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "RANK": "0", "WORLD_SIZE": "1",
                       **NCCL_ENV})
    try:
        report = check(tp_mlp.good(), read_graph=True, locate="never")
        assert report.verdict == "match", [(f.code, f.message) for f in report.findings]
        kernels = report.evidence.graph_kernels
        assert kernels is not None and len(kernels) >= 3
        print("graph kernels:", kernels, "collectives:", collectives(kernels))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
        for k in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE"):
            os.environ.pop(k, None)


def test_run_under_torchrun_reports_a_clean_capture(tmp_path):
    script = tmp_path / "serve.py"
    script.write_text(textwrap.dedent("""
        import torch
        from graphsafe.cases import tp_mlp

        t = tp_mlp.good()
        (x,) = t.make_inputs(0)
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            t.fn(x)
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            y = t.fn(x)
        g.replay()
        torch.cuda.synchronize()
        print("replayed", tuple(y.shape))
    """))
    proc = _torchrun("run", "--json", str(script))
    assert "replayed (4, 512)" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = _json_after(proc.stdout, '{\n  "schema"')
    (cap,) = result["captures"]
    assert cap["findings"] == [] and result["exit_status"] == 0 and proc.returncode == 0


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
