"""Reads a CUDA graph's nodes, edges and kernel parameters through cuda-bindings (the driver API).

Child graphs and conditional bodies are flattened: their nodes get ``parent`` set to the container
node and depend on what the container depends on. Kernel names come from ``cuFuncGetName`` (or
``cuKernelGetName``) and are demangled with the C++ runtime's ``__cxa_demangle``; the parameter
layout comes from ``cuFuncGetParamInfo`` and the values from the node's ``kernelParams``. A node kind
this module does not know is listed as ``unknown(N)``, never dropped.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
from dataclasses import dataclass, field

from .model import GraphNodeInfo

_KINDS = {
    "KERNEL": "kernel", "MEMCPY": "memcpy", "MEMSET": "memset", "HOST": "host", "GRAPH": "graph",
    "EMPTY": "empty", "WAIT_EVENT": "event_wait", "EVENT_RECORD": "event_record",
    "EXT_SEMAS_SIGNAL": "semaphore_signal", "EXT_SEMAS_WAIT": "semaphore_wait", "MEM_ALLOC": "mem_alloc",
    "MEM_FREE": "mem_free", "BATCH_MEM_OP": "batch_mem_op", "CONDITIONAL": "conditional",
}
MAX_NODES = 200_000  # beyond this the census lists the first ones and says so


@dataclass
class KernelParams:
    func: int
    values: list[bytes] = field(default_factory=list)   # one entry per parameter, as the kernel receives it
    offsets: list[int] = field(default_factory=list)


@dataclass
class RawGraph:
    nodes: list[GraphNodeInfo]
    handles: list[int]                      # nodes[i] <-> handles[i]
    params: dict[int, KernelParams]         # node id -> kernel parameters
    truncated: int = 0                      # nodes not read (beyond MAX_NODES)
    errors: list[str] = field(default_factory=list)


@functools.cache
def _demangler():
    name = ctypes.util.find_library("stdc++") or "libstdc++.so.6"
    try:
        lib = ctypes.CDLL(name)
        fn = lib.__cxa_demangle
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_void_p
    fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_int)]
    free = ctypes.CDLL(None).free
    free.argtypes = [ctypes.c_void_p]
    return fn, free


def demangle(name: str) -> str:
    """``_Z3fooPfi`` -> ``foo(float*, int)``; names that are not mangled C++ come back unchanged."""
    if not name.startswith("_Z"):
        return name
    d = _demangler()
    if d is None:
        return name
    fn, free = d
    status = ctypes.c_int()
    ptr = fn(name.encode(), None, None, ctypes.byref(status))
    if status.value != 0 or not ptr:
        return name
    try:
        return ctypes.string_at(ptr).decode(errors="replace")
    finally:
        free(ptr)


def _ok(res, what: str):
    err = res[0]
    if int(err) != 0:
        raise RuntimeError(f"{what} failed: {getattr(err, 'name', err)}")
    if len(res) == 1:
        return None
    return res[1:] if len(res) > 2 else res[1]


def driver():
    try:
        from cuda.bindings import driver as drv
    except ImportError as exc:
        raise RuntimeError("reading CUDA graphs needs cuda-bindings: pip install 'graphsafe[cuda]'") from exc
    return drv


def read_graph(graph_handle: int) -> RawGraph:
    """All nodes of the graph (flattened), their dependencies, kernel names, launch shapes and params."""
    drv = driver()

    _ok(drv.cuInit(0), "cuInit")
    out = RawGraph([], [], {})
    index: dict[int, int] = {}
    _walk(drv, drv.CUgraph(int(graph_handle)), None, [], out, index)
    return out


def keepable_graph(errors: list[str]):
    """(``torch.cuda.CUDAGraph(keep_graph=True)``, True), or a plain graph and False on a torch without
    ``keep_graph`` (before 2.8), said in ``errors``."""
    import torch

    try:
        return torch.cuda.CUDAGraph(keep_graph=True), True
    except TypeError:
        errors.append(f"torch {torch.__version__} cannot keep a captured graph to read it (keep_graph needs torch "
                      "2.8 or newer): the graph's collectives come from its first replay instead")
        return torch.cuda.CUDAGraph(), False


def captured_kernels(graph, errors: list[str]) -> list[str] | None:
    """The kernel names of a ``torch.cuda.CUDAGraph(keep_graph=True)``, in node order; None (and why, appended
    to ``errors``) if the graph cannot be read."""
    try:
        return [n.name for n in read_graph(graph.raw_cuda_graph()).nodes if n.kind == "kernel"]
    except Exception as exc:  # noqa: BLE001 - said by the caller's report
        errors.append(f"reading the captured graph failed: {type(exc).__name__}: {exc}")
        return None


def _walk(drv, graph, parent: int | None, parent_deps: list[int], out: RawGraph, index: dict[int, int]) -> None:
    _, n = _ok(drv.cuGraphGetNodes(graph, 0), "cuGraphGetNodes")
    nodes, _ = _ok(drv.cuGraphGetNodes(graph, n), "cuGraphGetNodes") if n else ([], 0)
    handles = [int(x) for x in nodes[:n]]
    room = MAX_NODES - len(out.nodes)
    if room < len(handles):
        out.truncated += len(handles) - max(room, 0)
        handles = handles[:max(room, 0)]
    first = len(out.nodes)
    for h in handles:
        index[h] = len(out.nodes)
        out.nodes.append(GraphNodeInfo(id=len(out.nodes), kind="", parent=parent))
        out.handles.append(h)
    res = drv.cuGraphGetEdges(graph, 0)
    ne = int(res[-1]) if int(res[0]) == 0 else 0
    if int(res[0]) != 0:
        out.errors.append(f"cuGraphGetEdges: {res[0]}")
    if ne:
        res = drv.cuGraphGetEdges(graph, ne)
        if int(res[0]) != 0:
            out.errors.append(f"cuGraphGetEdges: {res[0]}")
        else:
            for a, b in zip(res[1], res[2]):
                ia, ib = index.get(int(a)), index.get(int(b))
                if ia is not None and ib is not None:
                    out.nodes[ib].deps.append(ia)
    bodies: list[tuple[GraphNodeInfo, list]] = []
    for i in range(first, first + len(handles)):
        node = out.nodes[i]
        if not node.deps:
            node.deps = list(parent_deps)
        try:
            bodies.append((node, _describe(drv, drv.CUgraphNode(out.handles[i]), node, out)))
        except Exception as exc:  # noqa: BLE001 - one unreadable node must not lose the rest
            node.note = f"not fully readable: {exc}"
            node.name = node.name or node.kind
    for node, graphs in bodies:
        for body in graphs:
            _walk(drv, body, node.id, node.deps, out, index)


def _describe(drv, h, node: GraphNodeInfo, out: RawGraph) -> list:
    """Fill ``node`` from the driver; returns the body graphs it contains (child graph, conditional)."""
    t = _ok(drv.cuGraphNodeGetType(h), "cuGraphNodeGetType")
    name = getattr(t, "name", str(t)).replace("CU_GRAPH_NODE_TYPE_", "")
    node.kind = _KINDS.get(name, f"unknown({int(t)})")
    if node.kind == "kernel":
        p = _ok(drv.cuGraphKernelNodeGetParams(h), "cuGraphKernelNodeGetParams")
        node.grid = [p.gridDimX, p.gridDimY, p.gridDimZ]
        node.block = [p.blockDimX, p.blockDimY, p.blockDimZ]
        node.smem = p.sharedMemBytes
        func, kern = int(p.func), int(p.kern) if p.kern is not None else 0
        node.name = _kernel_name(drv, func, kern)
        out.params[node.id] = _params(drv, func, kern, p)
    elif node.kind == "memcpy":
        p = _ok(drv.cuGraphMemcpyNodeGetParams(h), "cuGraphMemcpyNodeGetParams")
        n = int(p.WidthInBytes) * max(1, int(p.Height)) * max(1, int(p.Depth))
        src, dst = int(p.srcDevice), int(p.dstDevice)
        node.name = f"memcpy {n} B"
        if src:
            node.reads.append([src + int(p.srcXInBytes), src + int(p.srcXInBytes) + n])
        if dst:
            node.writes.append([dst + int(p.dstXInBytes), dst + int(p.dstXInBytes) + n])
    elif node.kind == "memset":
        p = _ok(drv.cuGraphMemsetNodeGetParams(h), "cuGraphMemsetNodeGetParams")
        rows = max(1, int(p.height))
        n = int(p.width) * int(p.elementSize)
        pitch = int(p.pitch) if rows > 1 else n
        node.name = f"memset {n * rows} B"
        node.writes.append([int(p.dst), int(p.dst) + pitch * (rows - 1) + n])
    elif node.kind == "graph":
        body = _ok(drv.cuGraphChildGraphNodeGetGraph(h), "cuGraphChildGraphNodeGetGraph")
        node.name = "child graph"
        return [body]
    elif node.kind == "conditional":
        node.name = "conditional"
        if not hasattr(drv, "cuGraphNodeGetParams"):
            raise RuntimeError("its bodies cannot be read: cuda-bindings lacks cuGraphNodeGetParams")
        p = _ok(drv.cuGraphNodeGetParams(h), "cuGraphNodeGetParams").conditional
        bodies = list(p.phGraph_out[:int(p.size)]) if p.phGraph_out is not None else []
        node.name = f"conditional ({getattr(p.type, 'name', p.type)}, {len(bodies)} bod{'y' if len(bodies) == 1 else 'ies'})"
        return bodies
    elif node.kind == "mem_alloc":
        p = _ok(drv.cuGraphMemAllocNodeGetParams(h), "cuGraphMemAllocNodeGetParams")
        node.name = f"mem_alloc {int(p.bytesize)} B"
    elif node.kind == "mem_free":
        node.name = "mem_free"
    else:
        node.name = node.kind
    return []


def _kernel_name(drv, func: int, kern: int) -> str:
    res = drv.cuFuncGetName(drv.CUfunction(func)) if func else drv.cuKernelGetName(drv.CUkernel(kern))
    if int(res[0]) != 0:
        return f"<kernel {func or kern:#x}>"
    raw = res[1]
    return demangle(raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw))


def _params(drv, func: int, kern: int, p) -> KernelParams:
    kp = KernelParams(func=func or kern)
    addr = int(p.kernelParams) if p.kernelParams is not None else 0
    if not addr:
        return kp
    ptrs = ctypes.cast(addr, ctypes.POINTER(ctypes.c_void_p))
    for i in range(4096):
        res = (drv.cuFuncGetParamInfo(drv.CUfunction(func), i) if func
               else drv.cuKernelGetParamInfo(drv.CUkernel(kern), i))
        if int(res[0]) != 0:
            break
        offset, size = int(res[1]), int(res[2])
        value = ptrs[i]
        kp.values.append(ctypes.string_at(value, size) if value else b"")
        kp.offsets.append(offset)
    return kp


def is_device_pointer(value: int) -> bool:
    """Does ``value`` point into device memory this process allocated?"""
    drv = driver()
    if value < 4096:
        return False
    res = drv.cuPointerGetAttribute(drv.CUpointer_attribute.CU_POINTER_ATTRIBUTE_MEMORY_TYPE, value)
    return int(res[0]) == 0
