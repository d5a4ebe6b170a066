"""Few-row ``quant_linear`` candidates timed as the goal table times W4A4 (``benchmarks/quant.py``): calls in
a row captured into one graph with weights *and activations* rotating through HBM, median µs a call over
10 replays; the best three, the routed planes configuration and the packed route also after a torch op
writing x (that op's own time taken off).

Each candidate is the quantizer chained with PDL to one GEMM, as ``ops._quant_linear_into`` chains them:
``packed`` (codes, then the GEMM ``ops._few_rows_into`` picks: the tensor-core or dp4a GEMV) and ``planes
W,T,R,sums|bare[,pfH]`` (MMA planes, then ``mma_planes.planes_into`` with that ``PlanesConfig``;
``default`` marks ``planes_config``'s choice; ``pf``: the weights prefetched into L2, ``pfH`` only H % of
each row before the wait; ``bal``: the rows shared out evenly over as many blocks as fit the GPU at once,
``PlanesConfig.balance`` 2, with M SMs a block short (``balN``: N SMs; ``balauto``: balance 1, where the
tiles would put a block more on some SMs; where a full wave is no more blocks than the tiles, any of them
runs the tiles without BALANCE, as ``mma_planes.plan`` decides; the ``pfH`` rows of rows up to 4096 carry
the default's balance); ``plain``: the GEMV in plain stream order, not released early by the quantizer;
``q4``, ``q16``, ``q32``: the quantizer with 4, 16 or 32 warps a program, on either route). ``warm`` or
``cold``: the quantizer asks L2 for its row of x before its PDL wait (``sym_quant_into(warm_x=True)``, the
default) or not.

    python benchmarks/few_chain.py [--shapes 3584x4608,...] [--ms 1,2,3,4,8] [--warps 8,10,12,16] [--reverse]
                                   [--only default,packed]
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from quant import SHAPES, _after_torch_op, _copies, _timed_graph, _weights  # noqa: E402


def candidates(m: int, n: int, k: int, warps) -> list[tuple[str, object, bool]]:
    """(kind, PlanesConfig or None, warm_x) for one shape: both routes as ops has them, cold and warm, and
    the planes GEMV with each warp count, with and without sums (and prefetch on rows longer than 4096)."""
    from graphsafe.quant.mma_planes import PlanesConfig, planes_config
    default = planes_config(m, n, k // 8)
    out = [("packed", None, False), ("packed", None, True), ("planes", default, False), ("planes", default, True)]
    for w in warps:
        for sums in (False, True):
            for pf in ((False, True) if k > 4096 else (False,)):
                cfg = PlanesConfig(w, 1, 2, prefetch=pf, xsum=sums)
                if cfg != default:
                    out.append(("planes", cfg, True))
                if not sums:  # the rows shared out over as many blocks as fit at once, m, none or 16 SMs a block short
                    out += [("planes", c, True) for c in (replace(cfg, balance=2, spare=s) for s in (None, 0, 16))
                            if c != default]
    if k <= 4096:  # part of each weight row prefetched before the wait, the rest after the first planes
        out += [("planes", replace(default, prefetch=True, head=h), True) for h in (25, 50, 100)]
    out.append(("plain", default, True))  # the GEMV in plain stream order after a quantizer that never releases it
    out += [(f"q{w}", c, True) for w in (4, 16, 32) for c in (None, default)]  # the quantizer's warps, not 8
    return out


def label(kind: str, cfg, warm: bool, default) -> str:
    if cfg is None:
        return f"packed {kind}" if kind.startswith("q") else f"{kind} {'warm' if warm else 'cold'}"
    tag = f"{cfg.warps},{cfg.tiles},{cfg.ring},{'sums' if cfg.xsum else 'bare'}"
    if cfg.prefetch:
        tag += f",pf{cfg.head if cfg.head < 100 else ''}"
    if cfg.balance:
        tag += f",bal{'' if cfg.balance == 2 else 'auto'}{'' if cfg.spare is None else cfg.spare}"
    if kind != "planes":
        return f"planes {tag} {kind}"
    return f"planes {tag}{' default' if cfg == default else ''} {'warm' if warm else 'cold'}"


def run(shapes, ms, warps, reps: int, reverse: bool = False, only: tuple[str, ...] = ()) -> list[dict]:
    import torch

    from graphsafe.quant import ops, reference
    from graphsafe.quant.mma_planes import chain_into, planes_config
    from graphsafe.quant.triton_gemv import pdl_available
    from graphsafe.quant.triton_kernels import mma_planes_width, quant_config, sym_quant_into

    rows = []
    for k, n in shapes:
        copies = _copies(n * k // 2 + 16 * k * 2)
        packed = _weights(k, n, copies)
        for m in ms:
            xs = [torch.randn(m, k, dtype=torch.float16, device="cuda") for _ in range(copies)]
            y = torch.empty(m, n, dtype=torch.float16, device="cuda")
            q, s = reference.sym_quant_reference(xs[0])
            want = reference.w4a4_linear_reference(q, s, packed[0][0], packed[0][1], None, torch.float16)
            pdl = pdl_available(xs[0].device)
            codes = torch.empty(m, (k + 1) // 2, dtype=torch.uint8, device="cuda")
            planes = torch.empty(m, mma_planes_width(k), dtype=torch.int8, device="cuda")
            xsum = torch.empty(m, dtype=torch.int32, device="cuda")
            scale = torch.empty(m, 1, dtype=torch.float16, device="cuda")
            default = planes_config(m, n, k // 8)
            point = []
            for kind, cfg, warm in candidates(m, n, k, warps)[::-1 if reverse else 1]:
                def fn(i, cfg=cfg, warm=warm, kind=kind):  # kind bound here: the after-op timings call fn later
                    w, ws = packed[i]
                    qcfg = (replace(quant_config(k, m, split=False), num_warps=int(kind[1:])) if kind.startswith("q")
                            else None)
                    if cfg is None:
                        sym_quant_into(xs[i], 1.0, codes, scale, qcfg, trigger=pdl, wait=pdl, warm_x=warm)
                        ops._few_rows_into(codes, scale, w, ws, None, "auto", y, after_quantizer=pdl)
                        return
                    chain_into(xs[i], 1.0, planes, xsum, scale, w, ws, None, y, cfg, pdl, early=kind != "plain",
                               quant=qcfg, warm_x=warm)
                name = label(kind, cfg, warm, default)
                if only and not any(o in name for o in only):
                    continue
                try:
                    y.fill_(float("nan"))
                    fn(0)
                    torch.cuda.synchronize()
                except Exception as e:  # noqa: BLE001 - a configuration that does not compile or launch
                    print(f"  skip {name}: {type(e).__name__}: {str(e)[:120]}", file=sys.stderr)
                    continue
                if not torch.equal(y, want):
                    print(f"  WRONG K={k} N={n} M={m} {name}", file=sys.stderr)
                    continue
                point.append({"K": k, "N": n, "M": m, "candidate": name, "chain_us": _timed_graph(fn, copies, reps),
                              "fn": fn})
            point.sort(key=lambda r: r["chain_us"])
            for r in point[:3] + [r for r in point[3:] if "default" in r["candidate"] or r["candidate"].startswith("packed")
                                  or r["candidate"].endswith(("plain", "q16", "q32"))]:
                r["after_torch_us"] = _after_torch_op(r["fn"], xs, copies, reps)
            for r in point:
                del r["fn"]
            rows += point
            print(f"K={k:6d} N={n:6d} M={m:2d}: " + "; ".join(
                f"{r['candidate']} {r['chain_us']:.2f}" + (f" ({r['after_torch_us']:.2f})" if "after_torch_us" in r
                                                            else "") for r in point), flush=True)
        packed.clear()
        torch.cuda.empty_cache()
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", help="KxN,... (default: the three Qwen2-7B shapes)")
    ap.add_argument("--ms", default="1,2,3,4,8")
    ap.add_argument("--warps", default="8,10,12,16", help="warp counts of the planes GEMV candidates")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--reverse", action="store_true", help="time the candidates in the opposite order")
    ap.add_argument("--only", default="", help="time only candidates whose label holds one of these, comma-separated")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    import torch
    if not torch.cuda.is_available():
        print("needs a CUDA GPU", file=sys.stderr)
        return 2
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")] if args.shapes else SHAPES
    print(torch.cuda.get_device_name(), torch.__version__)
    rows = run(shapes, [int(v) for v in args.ms.split(",")], [int(v) for v in args.warps.split(",") if v], args.reps,
               args.reverse, tuple(o for o in args.only.split(",") if o))
    if args.json:
        Path(args.json).write_text(json.dumps({"device": torch.cuda.get_device_name(), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
