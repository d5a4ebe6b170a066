"""Decode-step latency of a small decoder: eager vs ``graphsafe.GraphRunner`` vs ``torch.compile(mode=
"reduce-overhead")``, batch 1-8; and the capture sentinel's cost (capture time, replay time).

The decoder is ``graphsafe.cases.decoder.Decoder`` (random fp16 weights, no bug): each layer RMSNorm, fused QKV,
attention, output projection, RMSNorm, gated SiLU MLP. A step takes (batch, 1, hidden). Latency is per step as
the caller sees it (GraphRunner: copy in, replay, slice and copy out), measured with CUDA events around
``--steps`` back-to-back steps, median over ``--reps`` repetitions. Goal: the graph paths beat eager by >= 3x at
batch 1; the sentinel adds <= 5 % capture time and no replay time.

    python benchmarks/decode.py [--layers 12] [--hidden 1024] [--batches 1,2,4,8] [--no-compile] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from rich.console import Console
from rich.table import Table


def per_step_ms(step, x, steps: int, reps: int) -> float:
    import torch

    for _ in range(3):
        step(x)
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            step(x)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / steps)
    return statistics.median(times)


def latency(model, batches, hidden, steps, reps, use_compile) -> list[dict]:
    """Eager and GraphRunner first, for every batch; torch.compile's cudagraph trees after the runner is gone (the
    two keep separate graph pools, and the runner's are freed before compiled graphs are recorded)."""
    import torch

    from graphsafe import GraphRunner

    rows = []
    runner = GraphRunner(model, batch_sizes=batches)
    inputs = {b: torch.randn(b, 1, hidden, device="cuda", dtype=torch.float16) for b in batches}
    for b, x in inputs.items():
        rows.append({"batch": b, "eager_ms": per_step_ms(model, x, steps, reps),
                     "runner_ms": per_step_ms(runner, x, steps, reps)})
        torch.testing.assert_close(runner(x), model(x), rtol=2e-2, atol=2e-2)
    del runner
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    if use_compile:
        compiled = torch.compile(model, mode="reduce-overhead", dynamic=False)
        for row in rows:
            x = inputs[row["batch"]]
            tick = time.perf_counter()
            compiled(x)
            row["compile_s"] = round(time.perf_counter() - tick, 1)
            row["compiled_ms"] = per_step_ms(lambda inp: compiled(inp).clone(), x, steps, reps)
    return rows


def sentinel_cost(model, batches, hidden, reps) -> list[dict]:
    """Capture (warm-up excluded) and replay time of one bucket's graph, without and with a sentinel installed."""
    import torch

    from graphsafe.runner.sentinel import Sentinel

    def capture_ms(x) -> tuple[float, object]:
        torch.cuda.synchronize()
        tick = time.perf_counter()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            model(x)
        torch.cuda.synchronize()
        return (time.perf_counter() - tick) * 1e3, g

    def replay_ms(g) -> float:
        times = []
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(20):
                g.replay()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 20)
        return statistics.median(times)

    rows = []
    s = Sentinel()
    for b in batches:
        x = torch.randn(b, 1, hidden, device="cuda", dtype=torch.float16)
        for _ in range(2):
            model(x)
        times = {False: [], True: []}
        for i in range(2 * reps):  # interleaved, so drift hits both alike
            watched = bool(i % 2)
            if watched:
                s.install()
            times[watched].append(capture_ms(x))
            s.uninstall()
        p_cap, w_cap = (statistics.median(t for t, _ in times[k]) for k in (False, True))
        g_plain, g_watched = times[False][-1][1], times[True][-1][1]
        p_rep = replay_ms(g_plain)
        s.install()  # installed but idle between captures: replays must not pay for it
        w_rep = replay_ms(g_watched)
        s.uninstall()
        rows.append({"batch": b, "capture_ms": round(p_cap, 2), "capture_sentinel_ms": round(w_cap, 2),
                     "capture_overhead_pct": round(100 * (w_cap / p_cap - 1), 1),
                     "replay_ms": round(p_rep, 4), "replay_sentinel_ms": round(w_rep, 4),
                     "replay_overhead_pct": round(100 * (w_rep / p_rep - 1), 1)})
    assert s.unavailable is None, s.unavailable
    assert not s.findings, [f.message for f in s.findings]
    fixed = []
    s.install()
    for _ in range(20):  # what every capture pays however long it is: subscribe, enable, unsubscribe
        tick = time.perf_counter()
        s._acquire()
        s._release()
        fixed.append((time.perf_counter() - tick) * 1e3)
    s.uninstall()
    for r in rows:
        r["sentinel_fixed_ms"] = round(statistics.median(fixed), 3)
    return rows


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--batches", default="1,2,4,8")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--reps", type=int, default=9)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--sentinel-only", action="store_true", help="only the sentinel's cost table")
    p.add_argument("--json")
    a = p.parse_args()
    import torch

    console = Console(highlight=False)
    if not torch.cuda.is_available():
        console.print("benchmarks/decode.py needs a CUDA GPU")
        return 2
    from graphsafe.cases.decoder import Decoder

    torch.manual_seed(0)
    d = a.hidden
    model = Decoder(a.layers, d, max(1, d // 64), (d * 11 // 4) // 64 * 64, "none").cuda().half().eval()
    batches = [int(b) for b in a.batches.split(",")]
    with torch.inference_mode():
        lat = [] if a.sentinel_only else latency(model, batches, d, a.steps, a.reps, not a.no_compile)
        cost = sentinel_cost(model, batches, d, a.reps)
    dev = f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    t = Table(title=f"decode step, {a.layers} layers, hidden {d}, fp16 ({dev})", title_justify="left")
    for col in ("batch", "eager ms", "GraphRunner ms", "speed-up", "reduce-overhead ms", "speed-up", "compile s"):
        t.add_column(col, justify="right")
    for r in lat:
        c = r.get("compiled_ms")
        t.add_row(str(r["batch"]), f"{r['eager_ms']:.3f}", f"{r['runner_ms']:.3f}", f"{r['eager_ms'] / r['runner_ms']:.1f}x",
                  f"{c:.3f}" if c else "-", f"{r['eager_ms'] / c:.1f}x" if c else "-", str(r.get("compile_s", "-")))
    console.print(t)
    t = Table(title="capture sentinel: one bucket's capture (median) and replay (median), without / with",
              title_justify="left")
    for col in ("batch", "capture ms", "sentinel", "overhead", "of it fixed ms", "replay ms", "sentinel", "overhead"):
        t.add_column(col, justify="right")
    for r in cost:
        t.add_row(str(r["batch"]), f"{r['capture_ms']:.2f}", f"{r['capture_sentinel_ms']:.2f}",
                  f"{r['capture_overhead_pct']:+.1f}%", f"{r['sentinel_fixed_ms']:.3f}", f"{r['replay_ms']:.4f}",
                  f"{r['replay_sentinel_ms']:.4f}", f"{r['replay_overhead_pct']:+.1f}%")
    console.print(t)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"device": dev, "layers": a.layers, "hidden": d, "latency": lat, "sentinel": cost}, fh, indent=2)
    if not lat:
        return 0
    b1 = lat[0]
    goal = b1["eager_ms"] / b1["runner_ms"] >= 3 and ("compiled_ms" not in b1 or b1["eager_ms"] / b1["compiled_ms"] >= 3)
    console.print(f"batch {b1['batch']}: graph paths >= 3x eager: {'met' if goal else 'NOT met'}")
    return 0 if goal else 1


if __name__ == "__main__":
    sys.exit(main())
