"""The floor under any few-row W4A4 GEMM: kernels that only read the packed weights, timed like them.

A few-row GEMM streams its weights once; no kernel that reads the same bytes can take less time than one
that does nothing else. This times, with the harness of ``benchmarks/quant.py`` (50 calls in a row in
one CUDA graph, buffers rotating past the L2 cache):

* ``read``: a plain streaming read (Triton: each program loads a contiguous block of int32 words and
  writes one sum) of the packed weight bytes of each shape, over a few block sizes and warp counts;
* an empty kernel (what one launch in a graph costs);
* with ``--chain M`` (Hopper, programmatic dependent launch), the floors of the few-row chain at M rows:
  ``read_pdl``, the read launched with PDL after itself, each program requesting its whole block and
  then waiting for the previous kernel before adding M rows of activation codes: a one-kernel
  quantize-and-multiply could not beat it; ``quant + read``, the real quantizer (as ``quant_linear``
  launches it) then that read: the floor of the two-kernel design ``quant_linear`` uses; the quantizer
  alone, chained the same way; the GEMM ``quant_linear`` runs, launched with PDL after itself on
  codes quantized beforehand (what the chain would take if quantizing cost nothing); and
  ``quant_linear`` itself on the same shapes.

    python benchmarks/read_floor.py [--chain 4] [--json FILE]
"""
from __future__ import annotations

import argparse
import sys

import quant as bench  # benchmarks/quant.py: the timing harness and the shapes

BLOCKS = (1024, 2048, 4096, 8192)
WARPS = (4, 8, 16)


def _kernels():
    import triton
    import triton.language as tl

    @triton.jit
    def read(p, out, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        v = tl.load(p + offs, mask=offs < n, other=0, cache_modifier=".cg")
        tl.store(out + tl.program_id(0), tl.sum(v ^ (v >> 3), axis=0))

    @triton.jit
    def read_pdl(p, q, out, n, nq, BLOCK: tl.constexpr, QBLOCK: tl.constexpr, PDL: tl.constexpr):
        """The whole block requested first; then (PDL) wait for the previous kernel, let the next one
        launch, and add the activation codes the previous kernel wrote (as a GEMV must)."""
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        v = tl.load(p + offs, mask=offs < n, other=0, cache_modifier=".cg")
        if PDL:
            tl.extra.cuda.gdc_wait()
            tl.extra.cuda.gdc_launch_dependents()
        qo = tl.arange(0, QBLOCK)
        a = tl.load(q + qo, mask=qo < nq, other=0)
        tl.store(out + tl.program_id(0), tl.sum(v ^ (v >> 3), axis=0) + tl.sum(a, axis=0))

    return triton, read, read_pdl


def floors(args, triton, read) -> tuple[list[dict], float]:
    import torch
    out = torch.empty(1 << 20, dtype=torch.int32, device="cuda")
    rows = []
    for nbytes in sorted({k * n // 2 for k, n in bench.SHAPES}):
        n = nbytes // 4
        copies = bench._copies(nbytes)
        bufs = [torch.randint(0, 1 << 30, (n,), dtype=torch.int32, device="cuda") for _ in range(copies)]
        for block in BLOCKS:
            for warps in WARPS:
                us = bench._timed_graph(lambda i: read[(triton.cdiv(n, block),)](bufs[i], out, n, BLOCK=block,
                                                                                 num_warps=warps), copies, args.reps)
                rows.append({"bytes": nbytes, "block": block, "warps": warps, "us": us})
        best = min((r for r in rows if r["bytes"] == nbytes), key=lambda r: r["us"])
        print(f"read {nbytes / 1e6:6.2f} MB: {best['us']:.2f} us ({nbytes / best['us'] / 1e6:.2f} TB/s), "
              f"{best['block']} words x {best['warps']} warps per program", flush=True)
        bufs.clear()
    empty = bench._timed_graph(lambda i: read[(1,)](out, out, 0, BLOCK=1024, num_warps=4), 2, args.reps)
    print(f"empty kernel: {empty:.2f} us per launch")
    return rows, empty


def chain(args, triton, read_pdl) -> list[dict]:
    """The chained floors at ``args.chain`` rows (module docstring), best block and warps of each."""
    import torch

    from graphsafe.quant import pack_int4_weights, quant_linear, sym_quant
    from graphsafe.quant.ops import _few_rows_into
    from graphsafe.quant.triton_kernels import sym_quant_into
    m = args.chain
    out = torch.empty(1 << 20, dtype=torch.int32, device="cuda")
    rows = []
    for k, n_out in bench.SHAPES:
        nbytes = k * n_out // 2
        n = nbytes // 4
        copies = bench._copies(nbytes + m * k * 2)
        bufs = [torch.randint(0, 1 << 30, (n,), dtype=torch.int32, device="cuda") for _ in range(copies)]
        xs = [torch.randn(m, k, dtype=torch.float16, device="cuda") for _ in range(copies)]
        q = torch.empty(m, k // 2, dtype=torch.uint8, device="cuda")
        s = torch.empty(m, 1, dtype=torch.float16, device="cuda")
        nq = q.numel() // 4
        qb = triton.next_power_of_2(nq)

        def quantizer(i):
            sym_quant_into(xs[i], 1.0, q, s, trigger=True, wait=True)

        def run_read(i, block, warps, pdl=True):
            read_pdl[(triton.cdiv(n, block),)](bufs[i], q.view(torch.int32), out, n, nq, BLOCK=block, QBLOCK=qb,
                                               PDL=pdl, num_warps=warps, **({"launch_pdl": True} if pdl else {}))

        row = {"K": k, "N": n_out, "M": m, "bytes": nbytes,
               "quantizer_us": bench._timed_graph(quantizer, copies, args.reps)}
        best_self, best_chain = None, None
        for block in BLOCKS:
            for warps in WARPS:
                us_self = bench._timed_graph(lambda i: run_read(i, block, warps), copies, args.reps)
                us_chain = bench._timed_graph(lambda i: (quantizer(i), run_read(i, block, warps)), copies, args.reps)
                if best_self is None or us_self < best_self[0]:
                    best_self = (us_self, block, warps)
                if best_chain is None or us_chain < best_chain[0]:
                    best_chain = (us_chain, block, warps)
        row["read_pdl_us"], row["read_pdl_block"], row["read_pdl_warps"] = best_self
        row["quant_read_us"], row["quant_read_block"], row["quant_read_warps"] = best_chain
        bufs.clear()
        packed = [pack_int4_weights(torch.randn(n_out, k, dtype=torch.float16, device="cuda") * 0.05)
                  for _ in range(copies)]
        y = torch.empty(m, n_out, dtype=torch.float16, device="cuda")
        row["quant_linear_us"] = bench._timed_graph(lambda i: quant_linear(xs[i], *packed[i], out=y), copies,
                                                    args.reps)
        codes = [sym_quant(x) for x in xs]  # the GEMM quant_linear runs, launched with PDL after itself
        row["gemm_pdl_us"] = bench._timed_graph(
            lambda i: _few_rows_into(*codes[i], *packed[i], None, "auto", y, after_quantizer=True), copies, args.reps)
        packed.clear()
        print(f"{k}->{n_out} M={m}: quantizer {row['quantizer_us']:.2f}, read_pdl {best_self[0]:.2f}, "
              f"quant + read {best_chain[0]:.2f}, GEMM after itself {row['gemm_pdl_us']:.2f}, "
              f"quant_linear {row['quant_linear_us']:.2f} us", flush=True)
        rows.append(row)
        torch.cuda.empty_cache()
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the numbers to this file")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--chain", type=int, default=0, metavar="M",
                    help="also time the chained floors at M rows (Hopper: PDL)")
    ap.add_argument("--no-floor", action="store_true", help="skip the plain read sweep")
    args = ap.parse_args(argv)
    import torch
    if not torch.cuda.is_available():
        print("benchmarks/read_floor.py needs a CUDA GPU", file=sys.stderr)
        return 2
    triton, read, read_pdl = _kernels()
    data = {"device": torch.cuda.get_device_name()}
    if not args.no_floor:
        data["floor"], data["empty_us"] = floors(args, triton, read)
    if args.chain:
        from graphsafe.quant.triton_gemv import pdl_available
        if not pdl_available(torch.device("cuda")):
            print("--chain needs programmatic dependent launch (sm_90 or newer, a Triton with launch_pdl)",
                  file=sys.stderr)
            return 2
        data["chain"] = chain(args, triton, read_pdl)
    bench._save(data, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
