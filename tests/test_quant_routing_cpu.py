"""graphsafe.quant's few-row GEMM routing and the tensor-core GEMV's host side on the CPU: which GEMM
``backend="auto"`` picks per row count and layer shape, what the GEMV accepts, its availability checks
and warn-once fallback, and NVRTC compiling ``csrc/w4a4_mma.cu`` without spills (needs cuda-bindings
and the NVRTC library, not a GPU). The kernels themselves run in test_gpu_quant.py and
test_gpu_mma_gemv.py."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from graphsafe import quant  # noqa: E402


@pytest.mark.parametrize("k, n", [(3584, 4608), (3584, 18944), (18944, 3584), (64, 16), (8192, 1024)])
def test_few_row_gemms_route_by_rows_and_layer_width(k, n):
    """dp4a for up to 3 rows, and 4 unless the layer is wide (N > 2K); each dp4a configuration keeps its
    per-row accumulators within 128 registers per thread; the swapped GEMM takes the rest up to 16."""
    tg = pytest.importorskip("graphsafe.quant.triton_gemv", reason="triton is not installed")
    qw = torch.zeros(n, k // 2, dtype=torch.uint8)
    for m in range(1, 17):
        q = torch.zeros(m, k // 2, dtype=torch.uint8)
        expected = m <= 3 or (m == 4 and n <= 2 * k)
        assert quant.ops._dp4a(q, qw) == expected, m
        if expected:
            cfg = tg.dp4a_config(m, n, k // 2)
            assert m * cfg.bn * cfg.bw // (32 * cfg.num_warps) <= 128, cfg
    assert not quant.ops._dp4a(torch.zeros(1, 3, dtype=torch.uint8), torch.zeros(n, 3, dtype=torch.uint8))  # K % 8


@pytest.mark.parametrize("k, n", [(3584, 4608), (3584, 18944), (18944, 3584)])
def test_auto_sends_3_to_16_rows_to_the_tensor_core_gemv_where_it_wins(k, n):
    """From 3 rows on long rows (K > 4096); at 5-8 rows, and at 4 in wide layers (N > 2K), on short
    rows; never at 1-2 rows or beyond 16. Its configurations fit the shared memory of every GPU it runs
    on (sm_80: 163 KB)."""
    from graphsafe.quant import mma_gemv
    for m in range(1, 20):
        expected = 3 <= m <= 16 and (k > 4096 or 5 <= m <= 8 or (m == 4 and n > 2 * k))
        assert quant.ops.mma_wanted(m, n, k // 2) == expected, m
        if expected:
            cfg = mma_gemv.mma_config(m, n, k // 8)
            assert cfg.ring_bytes(m) + 4 * cfg.warps * 32 * 4 * cfg.tiles * 2 <= 163 * 1024, cfg


def test_tensor_core_gemv_takes_aligned_whole_words_only():
    from graphsafe.quant import mma_gemv
    qw = torch.zeros(8, 64, dtype=torch.uint8)
    assert mma_gemv.supports(torch.zeros(4, 64, dtype=torch.uint8), qw)
    assert not mma_gemv.supports(torch.zeros(17, 64, dtype=torch.uint8), qw)  # rows
    assert not mma_gemv.supports(torch.zeros(0, 64, dtype=torch.uint8), qw)
    assert not mma_gemv.supports(torch.zeros(4, 72, dtype=torch.uint8)[:, :56], qw[:, :56])  # K % 32
    assert not mma_gemv.supports(torch.zeros(4, 80, dtype=torch.uint8)[:, 8:72], qw)  # 16-byte alignment
    assert not mma_gemv.supports(torch.zeros(4, 72, dtype=torch.uint8)[:, :64], qw)  # row stride
    with pytest.raises(mma_gemv.MmaUnavailable, match="CUDA device"):
        mma_gemv.check(torch.device("cpu"))


@pytest.fixture
def nvrtc_major() -> int:
    """NVRTC's major version; the test skips where cuda-bindings or the NVRTC library is missing."""
    from graphsafe.quant import mma_gemv
    try:
        return mma_gemv.nvrtc_version()[0]
    except Exception as exc:  # noqa: BLE001 - no cuda-bindings or no libnvrtc on this machine
        pytest.skip(f"NVRTC is not available: {exc}")


def test_auto_falls_back_to_triton_with_one_warning_where_the_tensor_core_gemv_cannot_run(monkeypatch):
    import warnings

    from graphsafe.quant import mma_gemv

    def refuse(device):
        raise mma_gemv.MmaUnavailable("no NVRTC here", warn=True)
    monkeypatch.setattr(mma_gemv, "check", refuse)
    monkeypatch.setattr(quant.ops, "_MMA_WARNED", set())
    q, qw = torch.zeros(4, 2560, dtype=torch.uint8), torch.zeros(8, 2560, dtype=torch.uint8)
    assert quant.ops.mma_wanted(4, 8, 2560) and mma_gemv.supports(q, qw)
    with pytest.warns(RuntimeWarning, match="no NVRTC here; the few-row GEMM runs on the slower Triton kernels"):
        assert not quant.ops._mma(q, qw, "auto")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not quant.ops._mma(q, qw, "auto")  # said once per device
    monkeypatch.setattr(mma_gemv, "check", lambda device: 90)
    assert quant.ops._mma(q, qw, "auto") and not quant.ops._mma(q, qw, "triton")


def test_tensor_core_gemv_refuses_what_nvrtc_or_the_driver_cannot_run(monkeypatch, nvrtc_major):
    """An architecture NVRTC does not know, or a driver of an older CUDA major version than NVRTC's, is a
    refusal with a warning (the auto backend then runs the Triton GEMMs), decided once per device."""
    from graphsafe.quant import mma_gemv
    major = nvrtc_major
    capability, driver, calls = (9, 0), 1000 * major, []
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: calls.append(device) or capability)
    monkeypatch.setattr(mma_gemv, "_driver_version", lambda: driver)
    monkeypatch.setattr(mma_gemv, "_CHECKED", {})
    dev = torch.device("cuda", 0)
    assert mma_gemv.check(dev) == 90
    capability = (7, 5)
    with pytest.raises(mma_gemv.MmaUnavailable, match="sm_80 or newer") as info:
        mma_gemv.check(torch.device("cuda", 1))
    assert not info.value.warn
    capability = (99, 0)
    with pytest.raises(mma_gemv.MmaUnavailable, match="cannot compile for sm_990") as info:
        mma_gemv.check(torch.device("cuda", 2))
    assert info.value.warn
    capability, driver = (9, 0), 1000 * (major - 1) + 80
    for _ in range(2):  # the second time from what the first found
        with pytest.raises(mma_gemv.MmaUnavailable, match=f"this driver is CUDA {major - 1}.8") as info:
            mma_gemv.check(torch.device("cuda", 3))
        assert info.value.warn
    assert mma_gemv.check(dev) == 90
    assert calls == [dev, torch.device("cuda", 1), torch.device("cuda", 2), torch.device("cuda", 3)]


@pytest.mark.parametrize("cfg", [(8, 1, 2, 3, 1, True), (8, 1, 2, 2, 1, False), (1, 2, 4, 1, 1, False),
                                 (4, 1, 1, 4, 2, True), (2, 2, 2, 2, 4, False)])
@pytest.mark.parametrize("m", [1, 16])
def test_tensor_core_gemv_compiles_without_spilling(cfg, m, nvrtc_major):
    """NVRTC compiles csrc/w4a4_mma.cu for sm_90 (and sm_80 without clusters or PDL) with every dtype
    and bias option, no spills; needs cuda-bindings and the NVRTC library, not a GPU."""
    from graphsafe.quant import mma_gemv
    c = mma_gemv.MmaConfig(*cfg)
    for arch, pdl in ((90, True), (80, False)):
        if arch < 90 and c.cluster > 1:
            continue
        for types in ((torch.float16, torch.float16, None, torch.float16),
                      (torch.bfloat16, torch.float32, torch.bfloat16, torch.float32)):
            log = mma_gemv.compile_log(arch, mma_gemv.macros(m, c, types, pdl))
            assert "0 bytes spill stores" in log, log


def test_tensor_core_gemv_reuses_its_launch_configuration_per_thread(monkeypatch):
    """mma_into's launch configuration and parameter slots are built once per (grid, block, shared
    memory, PDL, cluster) and thread; each launch sets the stream and every parameter anew."""
    import ctypes
    import threading

    driver = pytest.importorskip("cuda.bindings.driver", reason="cuda-bindings is not installed")
    from graphsafe.quant import launcher, mma_gemv
    launched = []

    def fake_launch(config, fn, params, extra):
        slots = ctypes.cast(params, ctypes.POINTER(ctypes.c_void_p))
        values = [ctypes.cast(slots[i], ctypes.POINTER(t)).contents.value for i, t in enumerate(mma_gemv.PARAMS)]
        launched.append((int(config.hStream), config.gridDimX, config.blockDimX, config.numAttrs, fn, values))
        return (driver.CUresult.CUDA_SUCCESS,)

    monkeypatch.setattr(driver, "cuLaunchKernelEx", fake_launch)
    monkeypatch.setattr(launcher, "_THREAD", threading.local())
    first = mma_gemv._launch(288, 256, 0, True, 1)
    assert mma_gemv._launch(288, 256, 0, True, 1) is first
    assert mma_gemv._launch(288, 256, 0, False, 1) is not first
    values = (1 << 40, 2 << 40, 3 << 40, 4 << 40, 5 << 40, 6 << 40, 4, 4608, 896, 448, 448, 4608)
    first("fn", 77, values)
    first("fn", 78, values[:6] + (2, 18944, 896, 448, 448, 18944))
    assert launched == [(77, 288, 256, 1, "fn", list(values)),
                        (78, 288, 256, 1, "fn", list(values[:6]) + [2, 18944, 896, 448, 448, 18944])]
    assert mma_gemv._launch(72, 128, 4096, True, 2).config.numAttrs == 2  # PDL and the cluster
    with pytest.raises(ValueError):  # a parameter missing is an error, not a stale slot
        first("fn", 77, values[:-1])
    other = []
    thread = threading.Thread(target=lambda: other.append(mma_gemv._launch(288, 256, 0, True, 1)))
    thread.start()
    thread.join()
    assert other[0] is not first


@pytest.mark.parametrize("stages", [2, 3, 4])
def test_cuda_wgmma_gemm_compiles_pipelined_without_spilling(stages, nvrtc_major):
    """NVRTC compiles csrc/w4a4_wgmma.cu for sm_90a with every dtype and bias option, one or two consumer
    warpgroups, with and without PDL, weights read by plain loads or ldmatrix: no spills, and ptxas
    neither serializes the wgmmas nor injects a wait of its own (it says so in the log when it must,
    e.g. when registers a wgmma reads are redefined before the wait that ends it); at four stages also
    what quant_linear runs (``MANY_ROWS`` with PDL)."""
    from graphsafe.quant import mma_gemv, wgmma_gemm
    h, b, f = torch.float16, torch.bfloat16, torch.float32
    routed = wgmma_gemm.MANY_ROWS
    configs = [(1, False, stages == 4), (2, stages == 3, stages != 3)]  # PDL changes the loader only
    if stages == routed["stages"]:
        configs.append((routed["consumers"], True, routed["ldsm"]))
    for types in ((h, h, None, h), (h, h, h, h), (b, f, b, f), (f, b, None, b), (h, h, h, f), (f, f, f, f),
                  (h, h, None, f)):
        for consumers, pdl, ldsm in configs:
            log = mma_gemv.compile_log("90a", wgmma_gemm.macros(stages, 8, types, pdl=pdl, consumers=consumers,
                                                                ldsm=ldsm), wgmma_gemm.SOURCE)
            assert "0 bytes spill stores" in log, log
            assert "serialized" not in log and "C75" not in log, log


def test_cuda_wgmma_gemm_refuses_what_it_cannot_run():
    """wgmma_into's checks come before any CUDA call, so they run on CPU tensors: out of the wrong shape
    or strides, a strided bias, one stage (which would deadlock), pieces finer than halves."""
    from graphsafe.quant import wgmma_gemm
    planes = torch.zeros(2, 20, 64, dtype=torch.int8)
    qw = torch.zeros(8, 64, dtype=torch.uint8)
    scale, w_scale, out = torch.ones(20, 1), torch.ones(8, 1), torch.empty(20, 8)
    with pytest.raises(ValueError, match="unit-stride out"):
        wgmma_gemm.wgmma_into(planes, scale, qw, w_scale, None, torch.empty(8, 20).t())
    with pytest.raises(ValueError, match="contiguous scales and bias"):
        wgmma_gemm.wgmma_into(planes, scale, qw, w_scale, torch.ones(8, 2)[:, 0], out)
    with pytest.raises(ValueError, match="at least 2 stages"):
        wgmma_gemm.wgmma_into(planes, scale, qw, w_scale, None, out, stages=1)
    with pytest.raises(ValueError, match="at most in halves"):
        wgmma_gemm.wgmma_into(planes, scale, qw, w_scale, None, out, split_n=4)
    with pytest.raises(ValueError, match="one or two consumer"):
        wgmma_gemm.wgmma_into(planes, scale, qw, w_scale, None, out, consumers=3)
    with pytest.raises(ValueError, match="at most 1 CTA"):  # two consumers' registers fill an SM
        wgmma_gemm.wgmma_into(planes, scale, qw, w_scale, None, out, consumers=2, per_sm=2)
    with pytest.raises(ValueError, match="at most 2 CTA"):
        wgmma_gemm.wgmma_into(planes, scale, qw, w_scale, None, out, per_sm=3)


def test_cuda_wgmma_gemm_available_on_sm_90_only_and_warns_once_without_its_packages(monkeypatch):
    """``wgmma_gemm.available`` (what ``triton_persist.route`` asks before the Triton GEMMs): sm_90 only;
    where cuda-bindings or NVRTC is missing, False with one RuntimeWarning per device; where the reason is
    not a package (no GPU), False with none. CPU tensors always take the per-tile kernel."""
    import warnings

    from graphsafe.quant import mma_gemv, triton_persist, wgmma_gemm
    dev = torch.device("cuda", 5)
    monkeypatch.setattr(wgmma_gemm, "_WARNED", set())
    for arch, expected in ((90, True), (89, False), (100, False)):
        monkeypatch.setattr(mma_gemv, "check", lambda device, arch=arch: arch)
        assert wgmma_gemm.available(dev) is expected, arch

    def missing(device):
        raise mma_gemv.MmaUnavailable("the tensor-core GEMV needs cuda-bindings and NVRTC", warn=True)
    monkeypatch.setattr(mma_gemv, "check", missing)
    with pytest.warns(RuntimeWarning, match="many-row GEMM runs on the slower Triton kernels"):
        assert not wgmma_gemm.available(dev)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not wgmma_gemm.available(dev)  # once per device

    def no_gpu(device):
        raise mma_gemv.MmaUnavailable("the tensor-core GEMV needs a CUDA device, got cpu")
    monkeypatch.setattr(mma_gemv, "check", no_gpu)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not wgmma_gemm.available(torch.device("cuda", 6))
    planes, qw = torch.zeros(2, 4096, 1792, dtype=torch.int8), torch.zeros(4608, 1792, dtype=torch.uint8)
    assert triton_persist.route(planes, qw) == "per-tile"


def _ptx_ops(defines) -> list[str]:
    """The tensor-core GEMV's PTX instructions for sm_90, each without its guard predicate."""
    from graphsafe.quant import mma_gemv
    lines = [ln.strip() for ln in mma_gemv.compile_ptx(90, defines).splitlines()]
    return [ln.split(None, 1)[1] if ln.startswith("@") else ln for ln in lines]


@pytest.mark.parametrize("cfg", [(8, 1, 2, 3, 1, True), (8, 1, 2, 2, 1, False), (4, 1, 1, 4, 2, True)])
def test_tensor_core_gemv_requests_weights_then_waits_then_releases(cfg, nvrtc_major):
    """With PDL the tensor-core GEMV requests its first weights (register loads or cp.async) before it
    waits for the quantizer, and lets the next kernel launch only after that wait; without PDL it has
    no grid-dependency control at all."""
    from graphsafe.quant import mma_gemv
    h = torch.float16
    c = mma_gemv.MmaConfig(*cfg)
    op = _ptx_ops(mma_gemv.macros(4, c, (h, h, h, h), True))
    first = {p: next(i for i, ln in enumerate(op) if ln.startswith(p))
             for p in ("griddepcontrol.wait", "griddepcontrol.launch_dependents", "ld.global.nc.L1::no_allocate"
                       if not c.smem else "cp.async")}
    wait, release, load = first.values()
    assert load < wait < release
    assert not any(ln.startswith("griddepcontrol") for ln in _ptx_ops(mma_gemv.macros(4, c, (h, h, h, h), False)))
