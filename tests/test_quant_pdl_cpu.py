"""The order of the programmatic-dependent-launch (PDL) instructions in the Triton kernels' PTX, compiled
for sm_90 on the CPU (no GPU needed: Triton lowers to PTX and runs its bundled ptxas).

What a few-row ``quant_linear`` chain relies on: the quantizer waits for the kernel before it
(``griddepcontrol.wait``) before it reads x and before it lets the GEMV launch (``launch_dependents``), so
whatever the GEMV reads before its own wait (its first weights, weight scales and bias) was written
before; the GEMV waits for the quantizer before it lets the next kernel launch; if it released first,
every call in a row would launch at once.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from functools import lru_cache

import pytest

pytest.importorskip("triton")
pytest.importorskip("triton.backends.nvidia.compiler")

QUANT_SIG = {"x_ptr": "*fp16", "q_ptr": "*u8", "s_ptr": "*fp16", "sum_ptr": "*i32", "t_ptr": "*i64", "N": "i32",
             "NB": "i32", "stride_x": "i32", "stride_q": "i32", "plane": "i32", "clip": "fp32"}
DP4A_SIG = {"a_ptr": "*i32", "sa_ptr": "*fp16", "b_ptr": "*i32", "sb_ptr": "*fp16", "bias_ptr": "*fp16",
            "c_ptr": "*fp16", "t_ptr": "*i64", "N": "i32", "KW": "i32", "stride_a": "i32", "stride_b": "i32",
            "stride_c": "i32"}

# The CPU tests run Triton's interpreter (conftest), where @triton.jit builds interpreted functions that
# cannot be compiled; so a child process without it compiles each kernel and prints its PTX lines.
_CHILD = textwrap.dedent("""
    import json, sys
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from graphsafe.quant import triton_gemv, triton_kernels
    out = []
    for module, name, sig, consts in json.load(sys.stdin):
        fn = getattr({"gemv": triton_gemv, "quant": triton_kernels}[module], name)
        try:
            src = ASTSource(fn, {**sig, **{k: "constexpr" for k in consts}}, constexprs=consts)
        except TypeError as exc:  # Triton before 3.3 spelled the constants differently
            print(json.dumps({"skip": str(exc)}))
            sys.exit(0)
        ptx = triton.compile(src, target=GPUTarget("cuda", 90, 32)).asm["ptx"]
        out.append([line.strip() for line in ptx.splitlines()])
    print(json.dumps(out))
""")

# (trigger, wait, layout, timeline, warm_x); layout 2: MMA planes
QUANT_CASES = [(t, w, 0, False, False) for t in (False, True) for w in (False, True)] + [
    (True, True, 2, False, False), (True, True, 2, True, False), (True, True, 3, False, True),
    (True, True, 0, False, True)]
DP4A_CASES = [dict(M=4, HAS_BIAS=False, BN=4, BW=128, PDL=True, PREFETCH=0, USE_ASM=True, TIMELINE=False),
              dict(M=4, HAS_BIAS=True, BN=4, BW=256, PDL=True, PREFETCH=16, USE_ASM=True, TIMELINE=False),
              dict(M=2, HAS_BIAS=True, BN=4, BW=256, PDL=False, PREFETCH=0, USE_ASM=True, TIMELINE=False),
              dict(M=4, HAS_BIAS=False, BN=4, BW=128, PDL=True, PREFETCH=0, USE_ASM=True, TIMELINE=True)]


@lru_cache(maxsize=None)
def _compiled() -> tuple[list, list]:
    """PTX lines of the quantizer for each QUANT_CASES entry and of the dp4a GEMV for each DP4A_CASES one."""
    jobs = [("quant", "_sym_quant_kernel", QUANT_SIG,
             dict(BLOCK=4096, BLOCK_B=0, LOOP=False, PART=0, LAYOUT=layout, TRIGGER=t, WAIT=w, USE_ASM=True,
                  TIMELINE=timeline, WARM_X=warm))
            for t, w, layout, timeline, warm in QUANT_CASES]
    jobs += [("gemv", "_dp4a_kernel", DP4A_SIG, c) for c in DP4A_CASES]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-c", _CHILD], input=json.dumps(jobs), capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if isinstance(out, dict):
        pytest.skip(f"this Triton's ASTSource takes no constexprs= ({out['skip']})")
    return out[:len(QUANT_CASES)], out[len(QUANT_CASES):]


def _op(line: str) -> str:
    """The instruction of a PTX line without its guard predicate (``@%p1 ld.global...`` -> ``ld.global...``)."""
    return line.split(None, 1)[1] if line.startswith("@") and " " in line else line


def _first(lines: list[str], what: str) -> int:
    hits = [i for i, line in enumerate(lines) if _op(line).startswith(what)]
    assert hits, f"no {what} in the PTX"
    return hits[0]


def _count(lines: list[str], what: str) -> int:
    return sum(_op(line).startswith(what) for line in lines)


def _quant(trigger: bool, wait: bool, layout: int = 0, timeline: bool = False, warm: bool = False) -> list[str]:
    return _compiled()[0][QUANT_CASES.index((trigger, wait, layout, timeline, warm))]


@pytest.mark.parametrize("layout", [0, 2])
def test_quantizer_waits_before_reading_x_and_before_releasing_the_gemm(layout):
    lines = _quant(True, True, layout)
    wait = _first(lines, "griddepcontrol.wait")
    assert wait < _first(lines, "griddepcontrol.launch_dependents")
    assert wait < _first(lines, "ld.global"), "x was read before waiting for the kernel that writes it"


@pytest.mark.parametrize("trigger,wait,layout,timeline,warm", QUANT_CASES)
def test_quantizer_emits_only_what_was_asked(trigger, wait, layout, timeline, warm):
    lines = _quant(trigger, wait, layout, timeline, warm)
    assert _count(lines, "griddepcontrol.launch_dependents") == int(trigger)
    assert _count(lines, "griddepcontrol.wait") == int(wait)
    assert sum("%globaltimer" in line for line in lines) == 3 * int(timeline)
    assert (_count(lines, "prefetch.global.L2") > 0) == warm


@pytest.mark.parametrize("layout", [0, 3])
def test_warm_x_prefetches_the_row_before_the_wait_and_reads_it_only_after(layout):
    """WARM_X: the row's L2 prefetches come before ``griddepcontrol.wait``, every load of x after it
    (a load before the wait could see x before the kernel before has written it), and the GEMM is
    still released only after the wait."""
    lines = _quant(True, True, layout, False, True)
    wait = _first(lines, "griddepcontrol.wait")
    prefetches = [i for i, line in enumerate(lines) if _op(line).startswith("prefetch.global.L2")]
    assert prefetches and max(prefetches) < wait
    assert wait < _first(lines, "griddepcontrol.launch_dependents")
    assert wait < _first(lines, "ld.global")


def _timer_reads(lines: list[str]) -> list[int]:
    return [i for i, line in enumerate(lines) if "%globaltimer" in line]


@pytest.mark.parametrize("kernel", ["quantizer", "dp4a"])
def test_timeline_stamps_start_before_the_wait_and_release_after_it(kernel):
    """TIMELINE (benchmarks/chain_timeline.py) reads %globaltimer at the program's start, right after its
    PDL wait, and at its end, once each."""
    lines = _quant(True, True, 2, True) if kernel == "quantizer" else _compiled()[1][3]
    start, released, end = _timer_reads(lines)
    wait = _first(lines, "griddepcontrol.wait")
    assert start < wait < released < end


@pytest.mark.parametrize("case", [0, 1])
def test_dp4a_gemv_waits_before_releasing_and_prefetches_before_waiting(case):
    lines, prefetch = _compiled()[1][case], DP4A_CASES[case]["PREFETCH"]
    wait, release = _first(lines, "griddepcontrol.wait"), _first(lines, "griddepcontrol.launch_dependents")
    assert wait < release, "the GEMV let the next kernel launch before its own input was ready"
    assert _first(lines, "ld.global") < wait, "the first weight tile is not requested before the wait"
    if prefetch:
        assert _first(lines, "prefetch.global.L2") < wait


def test_dp4a_gemv_without_pdl_has_no_grid_dependency_control():
    lines = _compiled()[1][2]
    assert _count(lines, "griddepcontrol") == 0



@pytest.mark.parametrize("m", [1, 2, 4])
def test_gemv_sass_counts_two_dp4a_per_weight_word_and_row(m):
    """benchmarks/gemv_sass.py finds the dp4a GEMV's K loop in its sm_90 SASS: each 32-bit weight word
    (8 codes) takes exactly two IDP (dp4a) per activation row, one for its even and one for its odd
    columns; more would be redundant work, fewer a lost product."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, os.path.join(root, "benchmarks", "gemv_sass.py"), "--m", str(m)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"({2 * m:.2f} IDP/IMMA) per weight word" in proc.stdout, proc.stdout


def test_planes_quantizer_adds_only_the_even_sum_to_the_packing_quantizers_barriers():
    """Writing MMA planes stores each code where it already is (no exchange between threads through
    shared memory, as a permute would need): its PTX has the packing quantizer's barriers plus the two of
    the even-code sum, and no more."""
    def barriers(lines: list[str]) -> int:
        return sum(_op(line).startswith(("bar.sync", "barrier.sync")) for line in lines)
    assert barriers(_quant(True, True, 2)) == barriers(_quant(True, True, 0)) + 2
