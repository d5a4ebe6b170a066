"""The few-row quantizer with extra programs that prefetch the GEMM's weights into L2
(``ops._quant_linear_into(prefetch_programs=...)``, ``benchmarks/weights_prefetch.py``) on a GPU: the
output is the same bits as without them, on the planes and the packed-code paths, in calls in a row
captured into a graph. The PTX order is checked on the CPU (test_quant_pdl_cpu.py)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.gpu

from graphsafe import quant  # noqa: E402
from graphsafe.quant import ops  # noqa: E402
from graphsafe.quant import reference as ref  # noqa: E402


def _x(m, n, seed=0, scale=3.0):
    g = torch.Generator(device="cuda").manual_seed(seed * 7919 + m * 31 + n)
    return (torch.randn(m, n, device="cuda", generator=g) * scale).half()


@pytest.mark.parametrize("m, k, n", [(1, 3584, 4608), (4, 3584, 4608), (8, 3584, 4608), (16, 3584, 64),
                                     (4, 18944, 3584)])
@pytest.mark.parametrize("programs", [1, 66, 264])
def test_prefetching_programs_leave_the_output_unchanged(m, k, n, programs):
    qw, ws = quant.pack_int4_weights(_x(n, k, seed=1, scale=0.05))
    xs = [_x(m, k, seed=s) for s in range(6)]
    ys = [torch.full((m, n), float("nan"), dtype=torch.float16, device="cuda") for _ in xs]
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        ops._quant_linear_into(xs[0], 1.0, qw, ws, None, "auto", ys[0], prefetch_programs=programs)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, stream=stream):
            for x, y in zip(xs, ys):
                ops._quant_linear_into(x, 1.0, qw, ws, None, "auto", y, prefetch_programs=programs)
    g.replay()
    torch.cuda.synchronize()
    for x, y in zip(xs, ys):
        q, s = ref.sym_quant_reference(x)
        assert torch.equal(y, ref.w4a4_linear_reference(q, s, qw, ws, None, torch.float16))
