"""Instructions per weight word of the few-row GEMVs' main loops, from their sm_90 SASS; runs on a CPU.

``--kind dp4a``: compiles ``triton_gemv._dp4a_kernel`` for sm_90 with the launch configuration
``dp4a_config`` picks (or the one given), with the integer arguments marked divisible by 16 as
Triton's launcher marks them on the benchmark shapes. ``--kind mma``: the tensor-core GEMV
(``csrc/w4a4_mma.cu`` through NVRTC, needs cuda-bindings) with ``mma_config``'s choice; ``--kind planes``:
the one on MMA planes (``csrc/w4a4_planes.cu``) with ``planes_config``'s (``planes-bare``: its variant on
planes without sums, ``PlanesConfig.xsum`` False). Either cubin is
disassembled with the ``nvdisasm`` bundled with Triton, and the instructions of the K loop (the block
that ends in the backward branch) are counted by opcode (the tensor-core GEMV's loop holds STAGES steps). From those counts it
estimates the issue time of the whole GEMV on an H100 (132 SMs, 4 warp-instructions per clock per SM,
1.755 GHz), to set against the time a bare read of the weights takes (``read_floor.py``).

    python benchmarks/gemv_sass.py [--kind dp4a|mma|planes|planes-bare] [--m 4] [--k 3584] [--n 4608] [--config BN,BW,WARPS]
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
       "c_ptr": "*fp16", "t_ptr": "*i64", "N": "i32", "KW": "i32", "stride_a": "i32", "stride_b": "i32",
       "stride_c": "i32"}
_INS = re.compile(r"\s*/\*[0-9a-f]{4}\*/\s*(.*)")


def _opcode(text: str) -> str:
    text = re.sub(r"^@!?U?P\w+\s+", "", text)  # the guard predicate
    return text.split()[0].rstrip(";").split(".")[0]


def _dp4a_cubin(m: int, bn: int, bw: int, warps: int) -> bytes:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from graphsafe.quant.triton_gemv import _dp4a_kernel
    consts = dict(M=m, HAS_BIAS=False, BN=bn, BW=bw, PDL=True, PREFETCH=0, USE_ASM=True, TIMELINE=False)
    attrs = {(i,): [["tt.divisibility", 16]] for i in range(len(SIG))}
    src = ASTSource(_dp4a_kernel, {**SIG, **{c: "constexpr" for c in consts}}, constexprs=consts, attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps}).asm["cubin"]


def loop_counts(cubin: bytes) -> tuple[collections.Counter, int]:
    """Opcode counts of the K loop's body (of the blocks that end in a backward branch and hold dp4a or MMA
    instructions, the one with the most of them, the shortest of those) and the number of SASS instructions
    in the kernel."""
    import triton
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
    loops = []
    for i, text in enumerate(ins):  # a branch back to a label before it
        target = re.search(r"BRA\s+`\((\.L_x_\d+)\)", text)
        if target and labels.get(target.group(1), i + 1) <= i:
            loops.append(ins[labels[target.group(1)]:i + 1])
    counts = [collections.Counter(_opcode(t) for t in loop) for loop in loops]
    counts = [c for c in counts if c["IDP"] + c["IMMA"]]
    if not counts:
        raise RuntimeError("no loop with dp4a or MMA instructions in the GEMV's SASS: the K loop was not found")
    # the main loop: the most dot instructions, and of loops with as many (a steady state and the last trips
    # with their tests), the shortest
    return max(counts, key=lambda c: (c["IDP"] + c["IMMA"], -sum(c.values()))), len(ins)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=("dp4a", "mma", "planes", "planes-bare"), default="dp4a")
    ap.add_argument("--m", type=int, default=4)
    ap.add_argument("--k", type=int, default=3584)
    ap.add_argument("--n", type=int, default=4608)
    ap.add_argument("--config", help="dp4a only: BN,BW,WARPS (default: dp4a_config's choice)")
    args = ap.parse_args(argv)
    os.environ.pop("TRITON_INTERPRET", None)
    kb = args.k // 2
    if args.kind == "dp4a":
        from graphsafe.quant.triton_gemv import dp4a_config
        if args.config:
            bn, bw, warps = (int(v) for v in args.config.split(","))
        else:
            cfg = dp4a_config(args.m, args.n, kb)
            bn, bw, warps = cfg.bn, cfg.bw, cfg.num_warps
        cubin = _dp4a_cubin(args.m, bn, bw, warps)
        words_per_thread = bn * bw // (32 * warps)  # weight words each thread multiplies per loop trip
        what = f"{bn} rows x {bw} words per step, {warps} warp(s)"
    elif args.kind.startswith("planes"):
        import dataclasses

        import torch

        from graphsafe.quant import mma_gemv, mma_planes
        cfg = mma_planes.planes_config(args.m, args.n, kb // 4)
        cfg = dataclasses.replace(cfg, xsum=args.kind == "planes")
        h = torch.float16
        cubin = mma_gemv.compile_cubin(90, mma_planes.macros(args.m, cfg, (h, h, None, h), True), mma_planes.SOURCE)
        words_per_thread = cfg.ring * cfg.tiles * 2 * 4  # RING chunks of two 16-byte words per weight tile
        what = str(cfg)
    else:
        import torch

        from graphsafe.quant import mma_gemv
        cfg = mma_gemv.mma_config(args.m, args.n, kb // 4)
        h = torch.float16
        cubin = mma_gemv.compile_cubin(90, mma_gemv.macros(args.m, cfg, (h, h, None, h), True))
        words_per_thread = cfg.stages * cfg.tiles * 2 * cfg.unroll * 4  # STAGES steps of 16-byte words
        what = str(cfg)
    counts, total = loop_counts(cubin)
    per_trip = sum(counts.values())
    words = args.n * kb // 4
    warp_instructions = words / (32 * words_per_thread) * per_trip
    issue_us = warp_instructions / (SMS * ISSUE_PER_CLOCK * CLOCK_HZ) * 1e6
    print(f"{args.kind} GEMV, M = {args.m}, {args.k}->{args.n}, {what}: {total} SASS instructions, the K loop "
          f"{per_trip} per trip over {words_per_thread} weight words a thread")
    print("  loop: " + ", ".join(f"{op} {n}" for op, n in counts.most_common()))
    dot = counts["IDP"] + counts["IMMA"]
    print(f"  {per_trip / words_per_thread:.1f} instructions ({dot / words_per_thread:.2f} IDP/IMMA) per weight "
          f"word; {warp_instructions / 1e6:.2f} M warp-instructions in the loops, {issue_us:.2f} us of issue "
          f"on an H100 if every scheduler issued every clock")
    return 0


if __name__ == "__main__":
    sys.exit(main())
