"""The few calls of CUPTI's callback API that the capture sentinel needs, through ctypes.

CUPTI calls a C function at the entry and exit of every runtime/driver API call that is enabled for a
subscriber, with the call's parameters. The sentinel enables only the launch, copy, set, synchronize and
allocation calls, and only while a capture is open. Callback ids are looked up by name
(``cuptiGetCallbackName``), never hard-coded, so they follow the installed CUPTI.

The parameter structs below mirror CUPTI's generated headers (``generated_cuda_runtime_api_meta.h``,
``generated_cuda_meta.h``); a GPU test compiles ``offsetof`` against those headers and compares.
"""
from __future__ import annotations

import ctypes
import functools
import glob
import os
import re
import sys

DOMAIN_DRIVER, DOMAIN_RUNTIME = 1, 2
SITE_ENTER, SITE_EXIT = 0, 1
ERROR_MULTIPLE_SUBSCRIBERS = 39
ERROR_MAX_LIMIT = 31

_void_p, _u32, _size = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_size_t


class CuptiUnavailable(RuntimeError):
    """CUPTI cannot be used in this process (not found, or another tool holds it)."""


class Dim3(ctypes.Structure):
    _fields_ = [("x", _u32), ("y", _u32), ("z", _u32)]


class CallbackData(ctypes.Structure):
    """``CUpti_CallbackData``."""

    _fields_ = [("callbackSite", ctypes.c_int), ("functionName", ctypes.c_char_p), ("functionParams", _void_p),
                ("functionReturnValue", _void_p), ("symbolName", ctypes.c_char_p), ("context", _void_p),
                ("contextUid", _u32), ("correlationData", _void_p), ("correlationId", _u32)]


# -- runtime API parameter structs (cudaXxx_vNNNN_params) -------------------------------------------------

class RtLaunchKernel(ctypes.Structure):  # cudaLaunchKernel, cudaLaunchCooperativeKernel (and _ptsz)
    _fields_ = [("func", _void_p), ("gridDim", Dim3), ("blockDim", Dim3), ("args", _void_p),
                ("sharedMem", _size), ("stream", _void_p)]


class RtLaunchConfig(ctypes.Structure):  # cudaLaunchConfig_t
    _fields_ = [("gridDim", Dim3), ("blockDim", Dim3), ("dynamicSmemBytes", _size), ("stream", _void_p)]


class RtLaunchKernelExC(ctypes.Structure):
    _fields_ = [("config", ctypes.POINTER(RtLaunchConfig)), ("func", _void_p), ("args", _void_p)]


class RtMemcpyAsync(ctypes.Structure):
    _fields_ = [("dst", _void_p), ("src", _void_p), ("count", _size), ("kind", ctypes.c_int), ("stream", _void_p)]


class RtMemsetAsync(ctypes.Structure):
    _fields_ = [("devPtr", _void_p), ("value", ctypes.c_int), ("count", _size), ("stream", _void_p)]


# -- driver API parameter structs (cuXxx_params) ----------------------------------------------------------

class DrvLaunchKernel(ctypes.Structure):  # cuLaunchKernel, cuLaunchCooperativeKernel (and _ptsz)
    _fields_ = [("f", _void_p), ("gridDimX", _u32), ("gridDimY", _u32), ("gridDimZ", _u32),
                ("blockDimX", _u32), ("blockDimY", _u32), ("blockDimZ", _u32), ("sharedMemBytes", _u32),
                ("hStream", _void_p)]


class DrvLaunchConfig(ctypes.Structure):  # CUlaunchConfig
    _fields_ = [("gridDimX", _u32), ("gridDimY", _u32), ("gridDimZ", _u32), ("blockDimX", _u32),
                ("blockDimY", _u32), ("blockDimZ", _u32), ("sharedMemBytes", _u32), ("hStream", _void_p)]


class DrvLaunchKernelEx(ctypes.Structure):
    _fields_ = [("config", ctypes.POINTER(DrvLaunchConfig)), ("f", _void_p)]


class DrvMemAsync(ctypes.Structure):  # cuMemcpy{,HtoD,DtoH,DtoD}Async, cuMemsetD{8,16,32}Async: stream 4th
    _fields_ = [("dst", ctypes.c_uint64), ("src", ctypes.c_uint64), ("count", _size), ("hStream", _void_p)]


# What the sentinel watches, by API name without its version suffix ("_v7000"). "kernel"/"memcpy"/"memset":
# work that must be captured (its struct says where the stream is); "sync": calls that break a capture
# (watched for their return code only).
WORK: dict[str, tuple[str, type, str]] = {
    "cudaLaunchKernel": ("kernel", RtLaunchKernel, "stream"),
    "cudaLaunchCooperativeKernel": ("kernel", RtLaunchKernel, "stream"),
    "cudaLaunchKernelExC": ("kernel", RtLaunchKernelExC, "config.stream"),
    "cudaMemcpyAsync": ("memcpy", RtMemcpyAsync, "stream"),
    "cudaMemsetAsync": ("memset", RtMemsetAsync, "stream"),
    "cuLaunchKernel": ("kernel", DrvLaunchKernel, "hStream"),
    "cuLaunchCooperativeKernel": ("kernel", DrvLaunchKernel, "hStream"),
    "cuLaunchKernelEx": ("kernel", DrvLaunchKernelEx, "config.hStream"),
    "cuMemcpyAsync": ("memcpy", DrvMemAsync, "hStream"),
    "cuMemcpyHtoDAsync": ("memcpy", DrvMemAsync, "hStream"),
    "cuMemcpyDtoHAsync": ("memcpy", DrvMemAsync, "hStream"),
    "cuMemcpyDtoDAsync": ("memcpy", DrvMemAsync, "hStream"),
    "cuMemsetD8Async": ("memset", DrvMemAsync, "hStream"),
    "cuMemsetD16Async": ("memset", DrvMemAsync, "hStream"),
    "cuMemsetD32Async": ("memset", DrvMemAsync, "hStream"),
}
SYNC = (
    "cudaDeviceSynchronize", "cudaStreamSynchronize", "cudaEventSynchronize", "cudaStreamQuery", "cudaEventQuery",
    "cudaMemcpy", "cudaMemset", "cudaMalloc", "cudaFree", "cudaMallocHost", "cudaFreeHost", "cudaHostAlloc",
    "cudaStreamWaitEvent", "cudaEventRecord", "cudaEventRecordWithFlags",
    "cuCtxSynchronize", "cuStreamSynchronize", "cuEventSynchronize", "cuStreamQuery", "cuEventQuery",
    "cuMemAlloc", "cuMemFree", "cuMemcpyHtoD", "cuMemcpyDtoH", "cuMemcpyDtoD", "cuMemcpy",
    "cuMemsetD8", "cuMemsetD32", "cuStreamWaitEvent", "cuEventRecord", "cuEventRecordWithFlags",
)
_SUFFIX = re.compile(r"_v\d+$")


def api_name(full: str) -> tuple[str, bool]:
    """``cudaLaunchKernel_ptsz_v7000`` -> (``cudaLaunchKernel``, True): the name and whether it is the
    per-thread-default-stream variant (where stream 0 means the per-thread stream)."""
    base = _SUFFIX.sub("", full)
    ptsz = base.endswith(("_ptsz", "_ptds"))
    if ptsz:
        base = base[:-5]
    base = _SUFFIX.sub("", base)
    return base, ptsz


def read_stream(params: int, struct: type, path: str) -> int:
    """The stream handle in an API call's parameter struct at address ``params`` (as the C callback reads it)."""
    indirect, offset = offsets(struct, path)
    if indirect >= 0:
        params = ctypes.c_void_p.from_address(params + indirect).value
        if not params:
            return 0
    return ctypes.c_uint64.from_address(params + offset).value


def offsets(struct: type, path: str) -> tuple[int, int]:
    """(offset of the pointer to follow or -1, offset of the stream handle) for the C callback."""
    head, _, tail = path.partition(".")
    field = getattr(struct, head)
    if not tail:
        return -1, field.offset
    pointee = dict(struct._fields_)[head]._type_
    return field.offset, getattr(pointee, tail).offset


def _candidates() -> list[str]:
    out = []
    try:  # already loaded (kineto links it into libtorch_cuda): the same copy torch uses
        with open("/proc/self/maps") as fh:
            out += sorted({ln.split()[-1] for ln in fh if "libcupti.so" in ln})
    except OSError:
        pass
    for base in sys.path:
        out += sorted(glob.glob(os.path.join(base or ".", "nvidia", "*", "lib", "libcupti.so*")))
        out += sorted(glob.glob(os.path.join(base or ".", "nvidia", "cuda_cupti", "lib", "libcupti.so*")))
    for home in filter(None, (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda")):
        out += sorted(glob.glob(os.path.join(home, "extras", "CUPTI", "lib64", "libcupti.so*")))
    return out + ["libcupti.so"]


class Cupti:
    """A loaded libcupti with the callback-API calls bound."""

    CALLBACK = ctypes.CFUNCTYPE(None, _void_p, ctypes.c_int, _u32, _void_p)

    def __init__(self) -> None:
        errors = []
        for cand in _candidates():
            try:
                self.lib = ctypes.CDLL(cand)
                self.path = cand
                break
            except OSError as exc:
                errors.append(f"{cand}: {exc}")
        else:
            raise CuptiUnavailable("libcupti was not found (it comes with PyTorch's CUDA wheels as "
                                   "nvidia-cuda-cupti, or with the CUDA toolkit under extras/CUPTI): "
                                   + "; ".join(errors[-3:]))
        L = self.lib
        L.cuptiSubscribe.argtypes = [ctypes.POINTER(_void_p), _void_p, _void_p]
        L.cuptiUnsubscribe.argtypes = [_void_p]
        L.cuptiEnableCallback.argtypes = [_u32, _void_p, ctypes.c_int, _u32]
        L.cuptiEnableDomain.argtypes = [_u32, _void_p, ctypes.c_int]
        L.cuptiGetCallbackName.argtypes = [ctypes.c_int, _u32, ctypes.POINTER(ctypes.c_char_p)]
        L.cuptiGetResultString.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
        L.cuptiGetVersion.argtypes = [ctypes.POINTER(_u32)]
        v = _u32()
        self.version = v.value if L.cuptiGetVersion(ctypes.byref(v)) == 0 else None

    def error(self, code: int) -> str:
        s = ctypes.c_char_p()
        self.lib.cuptiGetResultString(code, ctypes.byref(s))
        return f"{s.value.decode() if s.value else 'CUPTI error'} ({code})"

    @functools.cache  # noqa: B019 - one Cupti per process
    def callback_ids(self, domain: int) -> dict[str, list[tuple[int, bool]]]:
        """API name -> [(callback id, per-thread variant)] for one domain, from CUPTI's own names."""
        out: dict[str, list[tuple[int, bool]]] = {}
        name = ctypes.c_char_p()
        misses = 0
        for cbid in range(1, 4096):
            if self.lib.cuptiGetCallbackName(domain, cbid, ctypes.byref(name)) != 0 or not name.value:
                misses += 1
                if misses > 64:
                    break
                continue
            misses = 0
            base, ptsz = api_name(name.value.decode())
            out.setdefault(base, []).append((cbid, ptsz))
        return out

    def subscribe(self, callback: int) -> int:
        """Subscribe the C function at address ``callback`` (a native one, or a ctypes callback's)."""
        handle = _void_p()
        rc = self.lib.cuptiSubscribe(ctypes.byref(handle), callback, None)
        if rc != 0:
            holder = ("another CUPTI client holds it (torch.profiler, Nsight Systems/Compute, compute-sanitizer)"
                      if rc in (ERROR_MULTIPLE_SUBSCRIBERS, ERROR_MAX_LIMIT) else "")
            raise CuptiUnavailable(f"cuptiSubscribe failed: {self.error(rc)}" + (f": {holder}" if holder else ""))
        return handle.value

    def unsubscribe(self, handle: int) -> None:
        self.lib.cuptiUnsubscribe(handle)

    def enable_domain(self, handle: int, domain: int, on: bool) -> None:
        rc = self.lib.cuptiEnableDomain(int(on), handle, domain)
        if rc != 0:
            raise CuptiUnavailable(f"cuptiEnableDomain failed: {self.error(rc)}")

    def enable(self, handle: int, domain: int, cbid: int, on: bool) -> None:
        rc = self.lib.cuptiEnableCallback(int(on), handle, domain, cbid)
        if rc != 0:
            raise CuptiUnavailable(f"cuptiEnableCallback failed: {self.error(rc)}")


@functools.cache
def load() -> Cupti:
    return Cupti()
