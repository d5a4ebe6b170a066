"""Instructions per weight word of the dp4a GEMV's main loop, from its sm_90 SASS; runs on a CPU.

Compiles ``triton_gemv._dp4a_kernel`` for sm_90 with the launch configuration ``dp4a_config`` picks (or
the one given), with the integer arguments marked divisible by 16 as Triton's launcher marks them on
the benchmark shapes, disassembles the cubin with the ``nvdisasm`` bundled with Triton, and counts the
instructions of the K loop (the block that ends in the backward branch) by opcode. From those counts it
estimates the issue time of the whole GEMV on an H100 (132 SMs, 4 warp-instructions per clock per SM,
1.755 GHz), to set against the time a bare read of the weights takes (``read_floor.py``).

    python benchmarks/gemv_sass.py [--m 4] [--k 3584] [--n 4608] [--config BN,BW,WARPS]
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile

SMS, ISSUE_PER_CLOCK, CLOCK_HZ = 132, 4, 1.755e9  # H100 SXM
SIG = {"a_ptr": "*i32", "sa_ptr": "*fp16", "b_ptr": "*i32", "sb_ptr": "*fp16", "bias_ptr": "*fp16",
       "c_ptr": "*fp16", "N": "i32", "KW": "i32", "stride_a": "i32", "stride_b": "i32", "stride_c": "i32"}
_INS = re.compile(r"\s*/\*[0-9a-f]{4}\*/\s*(.*)")


def _opcode(text: str) -> str:
    text = re.sub(r"^@!?U?P\w+\s+", "", text)  # the guard predicate
    return text.split()[0].rstrip(";").split(".")[0]


def loop_counts(m: int, bn: int, bw: int, warps: int) -> tuple[collections.Counter, int]:
    """Opcode counts of the K loop's body and the number of SASS instructions in the kernel."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from graphsafe.quant.triton_gemv import _dp4a_kernel
    consts = dict(M=m, HAS_BIAS=False, BN=bn, BW=bw, PDL=True, PREFETCH=0, USE_ASM=True)
    attrs = {(i,): [["tt.divisibility", 16]] for i in range(len(SIG))}
    src = ASTSource(_dp4a_kernel, {**SIG, **{c: "constexpr" for c in consts}}, constexprs=consts, attrs=attrs)
    cubin = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps}).asm["cubin"]
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "nvdisasm")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        sass = subprocess.run([tool, "-c", f.name], capture_output=True, text=True, check=True).stdout
    ins, labels = [], {}
    for line in sass.splitlines():
        label = re.match(r"\s*(\.L_x_\d+):", line)
        if label:
            labels[label.group(1)] = len(ins)
        found = _INS.match(line)
        if found:
            ins.append(found.group(1))
    for i, text in enumerate(ins):  # the loop: a branch back to a label before it
        target = re.search(r"BRA\s+`\((\.L_x_\d+)\)", text)
        if target and labels.get(target.group(1), i + 1) <= i:
            return collections.Counter(_opcode(t) for t in ins[labels[target.group(1)]:i + 1]), len(ins)
    raise RuntimeError("no backward branch in the dp4a GEMV's SASS: the loop was not found")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--m", type=int, default=4)
    ap.add_argument("--k", type=int, default=3584)
    ap.add_argument("--n", type=int, default=4608)
    ap.add_argument("--config", help="BN,BW,WARPS (default: dp4a_config's choice)")
    args = ap.parse_args(argv)
    os.environ.pop("TRITON_INTERPRET", None)
    from graphsafe.quant.triton_gemv import dp4a_config
    kb = args.k // 2
    if args.config:
        bn, bw, warps = (int(v) for v in args.config.split(","))
    else:
        cfg = dp4a_config(args.m, args.n, kb)
        bn, bw, warps = cfg.bn, cfg.bw, cfg.num_warps
    counts, total = loop_counts(args.m, bn, bw, warps)
    per_step = sum(counts.values())
    words_per_thread = bn * bw // (32 * warps)  # weight words each thread multiplies per step
    words = args.n * kb // 4
    warp_instructions = words / (32 * words_per_thread) * per_step
    issue_us = warp_instructions / (SMS * ISSUE_PER_CLOCK * CLOCK_HZ) * 1e6
    print(f"dp4a GEMV, M = {args.m}, {args.k}->{args.n}, {bn} rows x {bw} words per step, {warps} warp(s): "
          f"{total} SASS instructions, the K loop {per_step} per step")
    print("  loop: " + ", ".join(f"{op} {n}" for op, n in counts.most_common()))
    print(f"  {per_step / words_per_thread:.1f} instructions ({counts['IDP'] / words_per_thread:.1f} IDP) per weight "
          f"word; {warp_instructions / 1e6:.2f} M warp-instructions in the loops, {issue_us:.2f} us of issue "
          f"on an H100 if every scheduler issued every clock")
    return 0


if __name__ == "__main__":
    sys.exit(main())
