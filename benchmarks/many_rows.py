"""The many-row W4A4 GEMMs side by side on a Hopper GPU (inside CUDA graphs, CUDA events, medians, as
benchmarks/quant.py): the Gluon GEMM (graphsafe.quant.gluon_ws, default and the variants kept as
options), the persistent Triton GEMM and the per-tile kernel, alone on INT8 planes and after the
quantizer as quant_linear chains them, against quant_linear itself and fp16 cuBLAS; and the CUDA C++
GEMM (graphsafe.quant.wgmma_gemm; one or two consumer warpgroups, with ldmatrix or plain loads; chained
with and without PDL; two consumers with ldmatrix and PDL is what quant_linear runs on sm_90).
Each variant's output is checked bit for bit against the per-tile kernel's before it is timed; a wrong
one is reported (WRONG on stderr, nan in the table) and not timed. Each number is also printed to
stderr as it is measured; --skip leaves columns out.

    PYTHONPATH=src python benchmarks/many_rows.py [--json OUT] [--shapes 3584x4608x2048,...] [--ablate]
        [--skip per_tile,gluon_g16,...]
"""
from __future__ import annotations

import argparse
import sys

import torch
import triton

sys.path.insert(0, "benchmarks")
from quant import _copies, _save, _timed_graph

from graphsafe.quant import pack_int4_weights, quant_linear
from graphsafe.quant.triton_kernels import sym_quant_into
from graphsafe.quant.triton_persist import persist_into
from graphsafe.quant.triton_swap import big_into
from graphsafe.quant.wgmma_gemm import wgmma_into

GLUON = {"gluon": {}, "gluon_g16": {"group_n": 16}, "gluon_whole": {"split_n": 1, "split_m": 1},
         "gluon_halves": {"split_m": 1}, "gluon_2st": {"stages": 2}, "gluon_l40": {"load_regs": 40}}
ABLATE = False
SKIP: set = set()
SHAPES = [(3584, 4608, 1024), (3584, 4608, 2048), (3584, 4608, 8192), (3584, 18944, 512), (3584, 18944, 2048),
          (18944, 3584, 2048)]


def _operands(k, n, m, copies):
    packed = [pack_int4_weights(torch.randn(n, k, dtype=torch.float16, device="cuda") * 0.05) for _ in range(copies)]
    xs = [torch.randn(m, k, dtype=torch.float16, device="cuda") for _ in range(copies)]
    planes = [torch.empty(2, m, k // 2, dtype=torch.int8, device="cuda") for _ in range(copies)]
    scales = [torch.empty(m, 1, dtype=torch.float16, device="cuda") for _ in range(copies)]
    for x, p, s in zip(xs, planes, scales):
        sym_quant_into(x, 1.0, p, s)
    return packed, xs, planes, scales


def bench(k: int, n: int, m: int) -> dict:
    from graphsafe.quant import gluon_ws

    copies = _copies(n * k // 2 + m * k * 2)
    packed, xs, planes, scales = _operands(k, n, m, copies)
    y = torch.empty(m, n, dtype=torch.float16, device="cuda")
    expected = torch.empty_like(y)
    big_into(planes[0], scales[0], packed[0][0], packed[0][1], None, expected)
    gemms = {"per_tile": big_into, "persist": persist_into}
    gemms.update({name: (lambda *a, o=o: gluon_ws.ws_into(*a, **o)) for name, o in GLUON.items()})
    gemms["cuda_wgmma"] = wgmma_into
    gemms["cuda_ldsm"] = lambda *a, **kw: wgmma_into(*a, ldsm=True, **kw)
    gemms["cuda_c2"] = lambda *a, **kw: wgmma_into(*a, consumers=2, stages=4, **kw)
    gemms["cuda_c2_ldsm"] = lambda *a, **kw: wgmma_into(*a, consumers=2, stages=4, ldsm=True, **kw)
    row = {"K": k, "N": n, "M": m}
    for name, gemm in gemms.items():
        if SKIP and name in SKIP:
            continue
        y.fill_(float("nan"))
        gemm(planes[0], scales[0], packed[0][0], packed[0][1], None, y)
        torch.cuda.synchronize()
        if not torch.equal(y, expected):  # not timed; the others still are
            print(f"WRONG: {name} differs from the per-tile kernel at {k}->{n} M={m}", file=sys.stderr)
            row[name] = float("nan")
            continue
        row[name] = _timed_graph(lambda i, g=gemm: g(planes[i], scales[i], packed[i][0], packed[i][1], None, y),
                                 copies, 50)
        print(f"{k}->{n} M={m} {name}: {row[name]:.2f} us", file=sys.stderr, flush=True)
    for name in ("persist", "gluon", "cuda_wgmma", "cuda_ldsm", "cuda_c2", "cuda_c2_ldsm"):
        if name not in row or row[name] != row[name]:  # skipped or wrong above
            continue
        for pdl in (False, True) if name.startswith("cuda") else (False,):
            def chain(i, g=gemms[name], pdl=pdl):
                sym_quant_into(xs[i], 1.0, planes[i], scales[i], trigger=pdl)
                extra = {"after_quantizer": True} if pdl else {}
                g(planes[i], scales[i], packed[i][0], packed[i][1], None, y, **extra)
            y.fill_(float("nan"))
            chain(0)
            torch.cuda.synchronize()
            key = "w4a4_" + name + ("_pdl" if pdl else "")
            if not torch.equal(y, expected):
                print(f"WRONG: quantizer + {name} (PDL {pdl}) differs from the per-tile kernel at {k}->{n} M={m}",
                      file=sys.stderr)
                row[key] = float("nan")
                continue
            row[key] = _timed_graph(chain, copies, 50)
            print(f"{k}->{n} M={m} {key}: {row[key]:.2f} us", file=sys.stderr, flush=True)
    if ABLATE:  # timing only: outputs are wrong, so nothing is checked
        for name, kw in (("cuda_wgmma", {}), ("cuda_c2", {"consumers": 2, "stages": 4})):
            if name in SKIP:
                continue
            for ab in (1, 2):
                row[f"{name}_no_{('mma', 'loads')[ab - 1]}"] = _timed_graph(
                    lambda i, kw=kw, ab=ab: wgmma_into(planes[i], scales[i], packed[i][0], packed[i][1], None, y,
                                                      _ablate=ab, **kw), copies, 50)
    row["quant_linear"] = _timed_graph(lambda i: quant_linear(xs[i], packed[i][0], packed[i][1], out=y), copies, 50)
    ws = [torch.randn(n, k, dtype=torch.float16, device="cuda") * 0.05 for _ in range(min(copies, 4))]
    row["fp16"] = _timed_graph(lambda i: torch.matmul(xs[i], ws[i].t(), out=y), len(ws), 50)
    return row


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", help="write the numbers to this file")
    ap.add_argument("--shapes", help="comma-separated KxNxM (default: the Qwen2-7B shapes above)")
    ap.add_argument("--ablate", action="store_true", help="also time the CUDA GEMMs with no wgmma, or no loads")
    ap.add_argument("--skip", default="", help="comma-separated GEMM columns not to time")
    args = ap.parse_args()
    global ABLATE
    ABLATE = args.ablate
    SKIP.update(s for s in args.skip.split(",") if s)
    from graphsafe.quant import wgmma_gemm
    if not wgmma_gemm.available(torch.device("cuda", torch.cuda.current_device())):
        print("the CUDA wgmma GEMM cannot run here (it needs sm_90, cuda-bindings and NVRTC): its columns "
              "are left out", file=sys.stderr)
        SKIP.update(("cuda_wgmma", "cuda_ldsm", "cuda_c2", "cuda_c2_ldsm"))
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")] if args.shapes else SHAPES
    rows = []
    for k, n, m in shapes:
        rows.append(bench(k, n, m))
        torch.cuda.empty_cache()
    cols = [c for c in rows[0] if c not in ("K", "N", "M")]
    print(f"{torch.cuda.get_device_name()}, µs per call (medians of graph replays)\n")
    print("| K→N | M | " + " | ".join(cols) + " | W4A4 speed-up |")
    print("|---|---|" + "---|" * (len(cols) + 1))
    for r in rows:
        print(f"| {r['K']}→{r['N']} | {r['M']} | " + " | ".join(f"{r.get(c, float('nan')):.1f}" for c in cols)
              + f" | {r['fp16'] / r['quant_linear']:.2f}× |")
    _save({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
           "rows": rows}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
