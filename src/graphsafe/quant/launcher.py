"""Launching the NVRTC-compiled kernels (``csrc/w4a4_mma.cu``, ``csrc/w4a4_planes.cu``,
``csrc/w4a4_wgmma.cu``) through the driver's ``cuLaunchKernelEx`` on PyTorch's current stream, so CUDA
graphs capture them like any kernel.

Building a launch configuration (``CUlaunchConfig``, its PDL and cluster attributes) and the parameter
array through cuda-bindings and ctypes costs more Python time than the launch itself, so a
:class:`Launch` is built once per configuration and thread (:func:`launch`) and each call only writes
its stream and parameter values into slots it owns. The driver copies every parameter when the launch
is made (into the graph's node when capturing), so the slots are free again when a call returns.
"""
from __future__ import annotations

import ctypes
import threading

MAP_BYTES = 128  # a TMA descriptor (CUtensorMap), passed by value


def cu_ok(result, what: str) -> None:
    """Raise ``RuntimeError`` naming the driver's error where ``result`` is not ``CUDA_SUCCESS``."""
    from cuda.bindings import driver
    if result != driver.CUresult.CUDA_SUCCESS:
        _, name = driver.cuGetErrorName(result)
        raise RuntimeError(f"{what} failed: {name.decode() if isinstance(name, bytes) else name}")


class Launch:
    """One launch configuration of kernel ``name``: a 1-D grid and block, dynamic shared memory, PDL
    (programmatic stream serialization: the kernel may start while the previous one finishes), a
    cluster of ``cluster`` CTAs along x, and its parameter slots: ``maps`` TMA descriptors first, each
    in a 64-byte aligned slot (the driver reads them there), then one ctypes slot per entry of
    ``types``."""

    def __init__(self, name: str, types: tuple, grid: int, block: int, smem: int, pdl: bool = False,
                 cluster: int = 1, maps: int = 0):
        from cuda.bindings import driver
        self.name = name
        self.config = driver.CUlaunchConfig()
        self.config.gridDimX, self.config.gridDimY, self.config.gridDimZ = grid, 1, 1
        self.config.blockDimX, self.config.blockDimY, self.config.blockDimZ = block, 1, 1
        self.config.sharedMemBytes = smem
        self.attrs = []
        if pdl:
            attr = driver.CUlaunchAttribute()
            attr.id = driver.CUlaunchAttributeID.CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION
            attr.value.programmaticStreamSerializationAllowed = 1
            self.attrs.append(attr)
        if cluster > 1:
            attr = driver.CUlaunchAttribute()
            attr.id = driver.CUlaunchAttributeID.CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION
            attr.value.clusterDim.x, attr.value.clusterDim.y, attr.value.clusterDim.z = cluster, 1, 1
            self.attrs.append(attr)
        self.config.attrs = self.attrs
        self.config.numAttrs = len(self.attrs)
        self._maps = ctypes.create_string_buffer(maps * MAP_BYTES + 64)
        base = (ctypes.addressof(self._maps) + 63) // 64 * 64
        self.map_slots = tuple(base + MAP_BYTES * i for i in range(maps))
        self.args = tuple(t() for t in types)
        self.params = (ctypes.c_void_p * (maps + len(self.args)))(
            *self.map_slots, *(ctypes.addressof(a) for a in self.args))

    def __call__(self, fn, stream: int, values: tuple, maps: tuple[bytes, ...] = ()) -> None:
        """Launch ``fn`` on ``stream`` (a ``cudaStream_t`` as an int) with these parameter values and
        encoded descriptors; a count that does not match the slots raises ``ValueError``."""
        from cuda.bindings import driver
        for slot, encoded in zip(self.map_slots, maps, strict=True):
            if len(encoded) != MAP_BYTES:
                raise ValueError(f"a TMA descriptor is {MAP_BYTES} bytes, got {len(encoded)}")
            ctypes.memmove(slot, encoded, MAP_BYTES)
        for slot, value in zip(self.args, values, strict=True):
            slot.value = value
        self.config.hStream = driver.CUstream(stream)
        cu_ok(driver.cuLaunchKernelEx(self.config, fn, ctypes.addressof(self.params), 0)[0], f"launching {self.name}")


_THREAD = threading.local()


def launch(name: str, types: tuple, grid: int, block: int, smem: int, pdl: bool = False, cluster: int = 1,
           maps: int = 0) -> Launch:
    """This thread's :class:`Launch` for the configuration, built on first use. Per thread: two threads
    launching at once must not write each other's slots."""
    cache = _THREAD.__dict__.setdefault("launches", {})
    key = (name, types, grid, block, smem, pdl, cluster, maps)
    got = cache.get(key)
    if got is None:
        got = cache[key] = Launch(name, types, grid, block, smem, pdl, cluster, maps)
    return got
