"""Pure analyses of recorded graphs (no GPU): census against eager, frozen arguments, graph races.

Inputs are plain records (``GraphNodeInfo``, parameter bytes, eager kernel lists), so CPU tests drive
every branch with synthetic graphs.
"""
from __future__ import annotations

import bisect
import difflib
import struct
from typing import Callable, Sequence

from ..trace import short_kernel_name
from .model import CensusDiff, FrozenArg, GraphNodeInfo, GraphRace, StepInfo

MAX_RACES = 20
MAX_FROZEN = 20


# -- census ----------------------------------------------------------------------------------------------
def census(eager: Sequence[dict], nodes: Sequence[GraphNodeInfo]) -> CensusDiff:
    """Compare eager kernels (``{"name", "grid", "block", "stream"}``, in launch order) with the graph's
    kernel nodes (graphsafe's own snapshot nodes excluded), in the order they were captured."""
    graph = [n for n in nodes if n.kind == "kernel" and not n.instrumentation]
    e_names = [short_kernel_name(k["name"]) for k in eager]
    g_names = [short_kernel_name(n.name) for n in graph]
    out = CensusDiff(eager_kernels=len(eager), graph_kernels=len(graph), eager=e_names,
                     streams=len({k.get("stream") for k in eager}))
    for n in nodes:
        if not n.instrumentation:
            out.node_kinds[n.kind] = out.node_kinds.get(n.kind, 0) + 1
    missing, extra, missing_at = [], [], []
    sm = difflib.SequenceMatcher(a=e_names, b=g_names, autojunk=False)
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag == "equal":
            for i, j in zip(range(i1, i2), range(j1, j2)):
                eg, eb = list(eager[i].get("grid") or []), list(eager[i].get("block") or [])
                if eg and (eg != graph[j].grid or eb != graph[j].block):
                    out.config.append(f"{e_names[i]}: eager grid {_dim(eg)} block {_dim(eb)}, graph grid "
                                      f"{_dim(graph[j].grid)} block {_dim(graph[j].block)} (node {graph[j].id})")
        if tag in ("delete", "replace"):
            missing += e_names[i1:i2]
            missing_at += list(range(i1, i2))
        if tag in ("insert", "replace"):
            extra += g_names[j1:j2]
    for name in list(missing):
        if name in extra:  # present in both, at another place: reordered
            missing.remove(name)
            extra.remove(name)
            if name not in out.reordered:
                out.reordered.append(name)
    out.missing_at = [i for i in missing_at if e_names[i] in missing]
    out.missing, out.extra = _counted(missing), _counted(extra)
    return out


def real_deps(nodes: Sequence[GraphNodeInfo]) -> dict[int, list[int]]:
    """Each node's dependencies with graphsafe's own snapshot nodes contracted away (their dependencies
    take their place), so the target's graph reads as if it had been captured alone."""
    by_id = {n.id: n for n in nodes}
    snap = {n.id for n in nodes if n.instrumentation}
    memo: dict[int, list[int]] = {}  # snapshot node -> the target's nodes it stands for

    def resolve(deps: list[int]) -> list[int]:
        return list(dict.fromkeys(x for d in deps for x in (memo[d] if d in snap else [d])))

    for n in nodes:
        if n.id not in snap or n.id in memo:
            continue
        todo = [n.id]  # depth first, without recursion: chains of snapshots can be long
        while todo:
            i = todo[-1]
            waiting = [d for d in by_id[i].deps if d in snap and d not in memo]
            if waiting:
                todo += waiting
            else:
                memo[i] = resolve(by_id[i].deps)
                todo.pop()
    return {n.id: resolve(n.deps) for n in nodes if n.id not in snap}


def _dim(d) -> str:
    return "×".join(str(x) for x in (d or [])) or "?"


def _counted(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
    return [f"{n} (×{c})" if c > 1 else n for n, c in seen.items()]


# -- frozen arguments --------------------------------------------------------------------------------------
def signature_types(name: str) -> list[str] | None:
    """Parameter types from a demangled C++ name, ``k(float const*, int)`` -> ``["float const*", "int"]``."""
    if not name.endswith(")") or "(" not in name:
        return None
    depth, start = 0, None
    for i in range(len(name) - 1, -1, -1):
        ch = name[i]
        if ch == ")":
            depth += 1
        elif ch == "(":
            depth -= 1
            if depth == 0:
                start = i
                break
    if start is None:
        return None
    inner, parts, depth, cur = name[start + 1:-1], [], 0, ""
    for ch in inner:
        if ch in "<([":
            depth += 1
        elif ch in ">)]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


_DECODE = {"float": "<f", "double": "<d", "int": "<i", "unsigned int": "<I", "long": "<q", "unsigned long": "<Q",
           "long long": "<q", "unsigned long long": "<Q", "short": "<h", "unsigned short": "<H", "bool": "<?",
           "char": "<b", "unsigned char": "<B", "signed char": "<b"}


def decode(raw: bytes, ctype: str | None) -> str:
    fmt = _DECODE.get((ctype or "").replace("const", "").strip())
    if fmt and struct.calcsize(fmt) == len(raw):
        return repr(struct.unpack(fmt, raw)[0])
    if len(raw) == 4:
        f, i = struct.unpack("<f", raw)[0], struct.unpack("<i", raw)[0]
        return f"{f!r} (as float32; {i} as int32)" if 1e-30 < abs(f) < 1e30 else f"{i} (as int32)"
    if len(raw) == 8:
        d, q = struct.unpack("<d", raw)[0], struct.unpack("<q", raw)[0]
        return f"{d!r} (as float64; {q} as int64)" if 1e-300 < abs(d) < 1e300 else f"{q} (as int64)"
    return raw.hex()


def _align(xs: Sequence[GraphNodeInfo], ys: Sequence[GraphNodeInfo]) -> list[tuple[GraphNodeInfo, GraphNodeInfo]]:
    sm = difflib.SequenceMatcher(a=[n.name for n in xs], b=[n.name for n in ys], autojunk=False)
    return [(x, y) for tag, i1, i2, j1, j2 in sm.get_opcodes() if tag == "equal"
            for x, y in zip(xs[i1:i2], ys[j1:j2])]


def _kernels(nodes: Sequence[GraphNodeInfo], params: dict) -> list[GraphNodeInfo]:
    return [n for n in nodes if n.kind == "kernel" and not n.instrumentation and n.id in params]


def frozen_args(nodes_a: Sequence[GraphNodeInfo], params_a: dict, nodes_b: Sequence[GraphNodeInfo],
                params_b: dict, is_pointer: Callable[[int], bool], steps: dict[int, StepInfo] | None = None,
                arg_names: dict[int, list[str]] | None = None, nodes_a2: Sequence[GraphNodeInfo] | None = None,
                params_a2: dict | None = None) -> list[FrozenArg]:
    """Kernel arguments that differ between capture A and capture B of the same code, made with other
    inputs and host state. ``params_*`` map node id -> ``KernelParams``. Bytes that differ between A and
    A2, a repeat of A, are not values of the host state but noise (each capture allocates its own
    buffers; kernel parameter structs carry uninitialized padding), and are skipped, as are 8-byte
    words that are device pointers in both A and B."""
    ka = _kernels(nodes_a, params_a)
    repeat = {x.id: params_a2[y.id] for x, y in _align(ka, _kernels(nodes_a2, params_a2))} \
        if nodes_a2 is not None and params_a2 is not None else {}
    out: list[FrozenArg] = []
    for na, nb in _align(ka, _kernels(nodes_b, params_b)):
        pa, pb = params_a[na.id], params_b[nb.id]
        pa2 = repeat.get(na.id)
        if len(pa.values) != len(pb.values) or (pa2 is not None and len(pa2.values) != len(pa.values)):
            continue
        types = signature_types(na.name)
        names = (arg_names or {}).get(na.id) or []
        for i, (va, vb) in enumerate(zip(pa.values, pb.values)):
            off = _differs(va, vb, pa2.values[i] if pa2 is not None else None, is_pointer)
            if off is None:
                continue
            ctype = types[i] if types and i < len(types) else None
            whole = off == 0 and len(va) <= 8
            seg_a, seg_b = (va, vb) if whole else (va[off:off + 4], vb[off:off + 4])
            out.append(FrozenArg(
                kernel=short_kernel_name(na.name), node=na.id, param=i,
                name=names[i] if i < len(names) else None, offset=pa.offsets[i] + off, size=len(va),
                value_a=decode(seg_a, ctype if whole else None), value_b=decode(seg_b, ctype if whole else None),
                step=(steps or {}).get(na.step) if na.step is not None else None))
            if len(out) >= MAX_FROZEN:
                return out
    return out


def _differs(a: bytes, b: bytes, a2: bytes | None, is_pointer: Callable[[int], bool]) -> int | None:
    """Offset of the first 4 bytes that differ between A and B, agree between A and its repeat A2, and
    do not lie in a word that is a device pointer in both; None when there are none."""
    if a == b or len(a) != len(b):
        return None
    for off in range(0, len(a), 4):
        ca = a[off:off + 4]
        if ca == b[off:off + 4]:
            continue
        if a2 is not None and (len(a2) != len(a) or a2[off:off + 4] != ca):
            continue  # unstable between identical captures
        w = off - off % 8
        if w + 8 <= len(a):
            wa, wb = int.from_bytes(a[w:w + 8], "little"), int.from_bytes(b[w:w + 8], "little")
            if is_pointer(wa) and is_pointer(wb):
                continue
        return off
    return None


# -- memory accesses of kernel nodes ----------------------------------------------------------------------------
def kernel_accesses(node: GraphNodeInfo, values: Sequence[bytes], step_accesses: Sequence, opaque: bool) -> None:
    """Fill ``node.reads/writes/may_write`` from the tensors its step touched. Pointer-sized words in the
    kernel's parameters pick which of them this kernel touches; const-qualified C++ pointer parameters are
    reads; what an opaque call's kernel does with a non-const pointer is unknown (``may_write``)."""
    spans = sorted(((a.start, a.end, a) for a in step_accesses), key=lambda x: x[0])
    starts = [s for s, _, _ in spans]
    types = signature_types(node.name) or []
    hits: dict[int, tuple] = {}
    for i, raw in enumerate(values):
        const = i < len(types) and "const" in types[i] and "*" in types[i]
        for off in range(0, len(raw) - 7, 8):
            v = int.from_bytes(raw[off:off + 8], "little")
            k = bisect.bisect_right(starts, v) - 1
            while k >= 0 and spans[k][0] <= v:
                s, e, acc = spans[k]
                if v < e:
                    hits.setdefault(id(acc), (acc, const))
                k -= 1
    chosen = list(hits.values()) or [(a, False) for a in step_accesses]
    for acc, const in chosen:
        rng = [acc.start, acc.end]
        if const or acc.write is False:
            node.reads.append(rng)
        elif acc.write:
            node.writes.append(rng)
        else:
            (node.may_write if opaque else node.writes).append(rng)
    if not hits and step_accesses:
        node.note = (node.note + "; " if node.note else "") + "memory from its operation's arguments"


# -- races ------------------------------------------------------------------------------------------------
def ancestors(nodes: Sequence[GraphNodeInfo]) -> dict[int, int]:
    """node id -> bitset of the nodes that always run before it (top-level nodes; bodies fold into
    their container)."""
    top = {n.id: n for n in nodes if n.parent is None}
    indeg = {i: 0 for i in top}
    kids: dict[int, list[int]] = {i: [] for i in top}
    for n in top.values():
        for d in set(n.deps):
            if d in top:
                indeg[n.id] += 1
                kids[d].append(n.id)
    order = [i for i, k in indeg.items() if k == 0]
    anc = {i: 0 for i in top}
    for i in order:  # Kahn: ``order`` grows while it is walked
        for c in kids[i]:
            anc[c] |= anc[i] | (1 << i)
            indeg[c] -= 1
            if indeg[c] == 0:
                order.append(c)
    return anc


def _container(nodes_by_id: dict[int, GraphNodeInfo], n: GraphNodeInfo) -> int:
    while n.parent is not None and n.parent in nodes_by_id:
        n = nodes_by_id[n.parent]
    return n.id


def races(nodes: Sequence[GraphNodeInfo], steps: dict[int, StepInfo] | None = None,
          labels: Callable[[int, int], str] | None = None) -> list[GraphRace]:
    """Unordered pairs of nodes whose memory ranges overlap where at least one writes."""
    by_id = {n.id: n for n in nodes}
    anc = ancestors(nodes)
    spans: list[tuple[int, int, int, str]] = []  # start, end, node, mode (w, m, r)
    for n in nodes:
        if n.instrumentation:
            continue
        c = _container(by_id, n)
        for mode, rs in (("w", n.writes), ("m", n.may_write), ("r", n.reads)):
            spans += [(s, e, c, mode) for s, e in rs if e > s]
    spans.sort()
    out: dict[tuple[int, int], GraphRace] = {}
    active: list[tuple[int, int, int, str]] = []
    for s, e, node, mode in spans:
        active = [a for a in active if a[1] > s]
        for a_s, a_e, a_node, a_mode in active:
            if a_node == node or (a_mode == "r" and mode == "r"):
                continue
            if (anc.get(node, 0) >> a_node) & 1 or (anc.get(a_node, 0) >> node) & 1:
                continue
            key = (min(a_node, node), max(a_node, node))
            if key in out:
                continue
            x, y = by_id[key[0]], by_id[key[1]]
            modes = {a_node: a_mode, node: mode}
            word = {"w": "write", "m": "may-write", "r": "read"}
            out[key] = GraphRace(
                a=x.id, b=y.id, a_name=short_kernel_name(x.name), b_name=short_kernel_name(y.name),
                a_step=(steps or {}).get(x.step) if x.step is not None else None,
                b_step=(steps or {}).get(y.step) if y.step is not None else None,
                start=max(s, a_s), end=min(e, a_e), access=f"{word[modes[x.id]]}/{word[modes[y.id]]}",
                tensor=labels(max(s, a_s), min(e, a_e)) if labels else "")
        active.append((s, e, node, mode))
    found = sorted(out.values(), key=lambda r: ("may-write" in r.access, r.a, r.b))
    return found[:MAX_RACES]
