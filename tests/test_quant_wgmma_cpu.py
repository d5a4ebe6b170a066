"""The CUDA wgmma GEMM's host side on the CPU (graphsafe.quant.wgmma_gemm): its TMA descriptors are
encoded once per (address, shape, row stride, box) and copied after that, and its launch configuration
and parameter slots are built once per (grid, block, shared memory, PDL) and thread, each launch copying
in its own descriptors, values and stream. The driver calls are replaced by fakes that record what they
get; the kernel itself runs in test_gpu_wgmma.py."""
from __future__ import annotations

import ctypes
import struct
import threading

import pytest

torch = pytest.importorskip("torch")
driver = pytest.importorskip("cuda.bindings.driver", reason="cuda-bindings is not installed")


class _FakeLibcuda:
    """cuTensorMapEncodeTiled that writes (address, rows, cols, row stride, box rows) and a filler into
    the 128-byte descriptor, after checking the driver's 64-byte alignment."""

    def __init__(self):
        self.calls = []

    def cuTensorMapEncodeTiled(self, out, dtype, rank, address, dims, strides, box, elem_strides, *modes):
        assert out.value % 64 == 0 and rank == 2 and tuple(elem_strides) == (1, 1)
        key = (address.value, dims[1], dims[0], strides[0], box[1])
        self.calls.append(key)
        ctypes.memmove(out.value, _pattern(*key), 128)
        return 0


def _pattern(*key) -> bytes:
    return struct.pack("<5Q", *key).ljust(128, b"\x5a")


@pytest.fixture
def wgmma_gemm(monkeypatch):
    from graphsafe.quant import launcher, wgmma_gemm
    lib = _FakeLibcuda()
    monkeypatch.setattr(wgmma_gemm, "_libcuda", lambda: lib)
    monkeypatch.setattr(launcher, "_THREAD", threading.local())
    wgmma_gemm._encode.cache_clear()
    wgmma_gemm.fake_lib = lib
    yield wgmma_gemm
    wgmma_gemm._encode.cache_clear()  # no fake descriptor outlives the test
    del wgmma_gemm.fake_lib


def test_tma_descriptors_are_encoded_once_per_address_shape_stride_and_box(wgmma_gemm):
    qw = torch.zeros(512, 64, dtype=torch.uint8)
    planes = torch.zeros(2, 300, 96, dtype=torch.int8)
    assert wgmma_gemm.descriptor(qw, 256) == _pattern(qw.data_ptr(), 512, 64, 64, 256)
    assert wgmma_gemm.descriptor(qw, 256) == _pattern(qw.data_ptr(), 512, 64, 64, 256)
    assert len(wgmma_gemm.fake_lib.calls) == 1  # the second was a copy
    assert wgmma_gemm.descriptor(qw, 128) == _pattern(qw.data_ptr(), 512, 64, 64, 128)  # another box
    odd = planes[1]
    assert wgmma_gemm.descriptor(odd, 128) == _pattern(odd.data_ptr(), 300, 96, 96, 128)  # the odd plane
    assert wgmma_gemm.descriptor(qw[:, :32], 256) == _pattern(qw.data_ptr(), 512, 32, 64, 256)  # a K slice
    assert len(wgmma_gemm.fake_lib.calls) == 4


def test_launch_slots_are_reused_per_configuration_and_thread_and_filled_anew(wgmma_gemm, monkeypatch):
    launched = []

    def fake_launch(config, fn, params, extra):
        slots = ctypes.cast(params, ctypes.POINTER(ctypes.c_void_p))
        maps = [ctypes.string_at(slots[i], 128) for i in range(6)]
        assert all(slots[i] % 64 == 0 for i in range(6))  # the driver reads aligned descriptors
        values = [ctypes.cast(slots[6 + i], ctypes.POINTER(t)).contents.value
                  for i, t in enumerate(wgmma_gemm.PARAMS)]
        launched.append((int(config.hStream), config.gridDimX, config.blockDimX, config.sharedMemBytes,
                         config.numAttrs, fn, maps, values))
        return (driver.CUresult.CUDA_SUCCESS,)

    monkeypatch.setattr(driver, "cuLaunchKernelEx", fake_launch)
    first = wgmma_gemm._launch(132, 384, 169216, True)
    assert wgmma_gemm._launch(132, 384, 169216, True) is first
    assert wgmma_gemm._launch(132, 384, 169216, False) is not first
    assert wgmma_gemm._launch(132, 384, 169216, False).config.numAttrs == 0 and first.config.numAttrs == 1
    maps = tuple(_pattern(i, 1, 2, 3, 4) for i in range(6))
    values = (1 << 40, 2 << 40, 3 << 40, 4 << 40, 2048, 4608, 1792, 4608, 24, 2, 2, 1)
    first("fn", 77, values, maps)
    other_maps = tuple(_pattern(i, 5, 6, 7, 8) for i in range(6))
    other_values = (5 << 40, 6 << 40, 7 << 40, 8 << 40, 300, 1000, 128, 1003, 4, 2, 1, 0)
    first("fn", 78, other_values, other_maps)
    assert launched == [(77, 132, 384, 169216, 1, "fn", list(maps), list(values)),
                        (78, 132, 384, 169216, 1, "fn", list(other_maps), list(other_values))]
    with pytest.raises(ValueError):  # a parameter missing is an error, not a stale slot
        first("fn", 77, values[:-1], maps)
    with pytest.raises(ValueError):
        first("fn", 77, values, maps[:-1])
    other = []
    thread = threading.Thread(target=lambda: other.append(wgmma_gemm._launch(132, 384, 169216, True)))
    thread.start()
    thread.join()
    assert other[0] is not first
