"""``--html report.html``: the captured graph beside the eager kernel sequence, in one static file.

Nodes are grouped by module (``model.layers.3``) into collapsible sections, so graphs of thousands of
nodes stay readable; sections holding a divergent, racing or frozen node open by themselves. An SVG
overview draws the module groups as a layered DAG. Every text is escaped; the page needs no network.
"""
from __future__ import annotations

import html
from collections import OrderedDict
from typing import Sequence

from ..trace import short_kernel_name
from .analysis import real_deps
from .model import GraphNodeInfo, Localization, StepInfo

GROUP_DEPTH = 3        # model.layers.3 | model.layers.3.mlp.down_proj -> model.layers.3
MAX_ROWS = 50_000      # rows beyond this are counted, not listed

_CSS = """
body{font:13px/1.4 system-ui,sans-serif;margin:16px;color:#1d1d1f}
h1{font-size:18px;margin:0 0 4px}h2{font-size:15px;margin:18px 0 6px}
.sum{background:#f5f5f7;border-radius:6px;padding:8px 12px;margin:8px 0}
.cols{display:grid;grid-template-columns:minmax(220px,1fr) 3fr;gap:16px;align-items:start}
table{border-collapse:collapse;width:100%}td,th{padding:1px 6px;text-align:left;vertical-align:top;
white-space:nowrap;font-family:ui-monospace,monospace;font-size:12px}th{background:#eee;position:sticky;top:0}
tr:nth-child(even){background:#fafafa}details{border:1px solid #ddd;border-radius:4px;margin:3px 0}
summary{cursor:pointer;padding:3px 6px;font-family:ui-monospace,monospace}
.divergent{background:#ffd6d6!important}.race{background:#ffe9c2!important}.frozen{background:#e4d9ff!important}
.missing{background:#ffd6d6!important}.extra{background:#d6ecff!important}.instr{color:#aaa;display:none}
.badge{display:inline-block;border-radius:8px;padding:0 6px;margin-left:4px;font-size:11px;color:#fff}
.b-divergent{background:#d33}.b-race{background:#e80}.b-frozen{background:#74c}.b-missing{background:#d33}
.name{max-width:520px;overflow:hidden;text-overflow:ellipsis}.legend span{margin-right:12px}
#eager{max-height:80vh;overflow:auto}svg text{font:11px ui-monospace,monospace}
"""

_JS = """
function setAll(open){document.querySelectorAll('details.group').forEach(d=>d.open=open)}
function showInstr(on){document.querySelectorAll('tr.instr').forEach(r=>r.style.display=on?'table-row':'none')}
function filt(q){q=q.toLowerCase();document.querySelectorAll('details.group').forEach(d=>{
 let hit=!q||d.textContent.toLowerCase().includes(q);d.style.display=hit?'':'none';if(q&&hit)d.open=true})}
"""


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def group_of(module: str) -> str:
    parts = module.split(".") if module else []
    return ".".join(parts[:GROUP_DEPTH]) if parts else "(outside any module)"


def write_html(path: str, target: str, loc: Localization, nodes: Sequence[GraphNodeInfo],
               steps: dict[int, StepInfo]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(render(target, loc, nodes, steps))


def _flags(loc: Localization) -> dict[int, set[str]]:
    """node id -> what to highlight (the divergent step's nodes are marked by step, in ``_row``)."""
    flags: dict[int, set[str]] = {}
    for r in loc.races:
        flags.setdefault(r.a, set()).add("race")
        flags.setdefault(r.b, set()).add("race")
    for fa in loc.frozen:
        flags.setdefault(fa.node, set()).add("frozen")
    return flags


def render(target: str, loc: Localization, nodes: Sequence[GraphNodeInfo], steps: dict[int, StepInfo]) -> str:
    flags = _flags(loc)
    div_step = loc.divergence.step.index if loc.divergence else None
    div_group = group_of(loc.divergence.step.module) if loc.divergence else None
    deps = real_deps(nodes)
    groups: OrderedDict[str, list[GraphNodeInfo]] = OrderedDict()
    group_of_node: dict[int, str] = {}
    if div_group is not None:
        groups[div_group] = []  # the divergent op's group, even when the op added no node
    for n in nodes:
        st = steps.get(n.step) if n.step is not None else None
        g = group_of(st.module) if st else ("(graphsafe snapshots)" if n.instrumentation else "(unattributed)")
        groups.setdefault(g, []).append(n)
        group_of_node[n.id] = g
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>graphsafe: ", _e(target), "</title><style>",
           _CSS, "</style><script>", _JS, "</script></head><body>"]
    out.append(f"<h1>graphsafe check {_e(target)}</h1>")
    out.append(_summary(loc, sum(not n.instrumentation for n in nodes), sum(n.instrumentation for n in nodes)))
    out.append("<div class='legend'><span class='divergent'>first divergent op</span><span class='race'>race"
               "</span><span class='frozen'>frozen argument</span><span class='missing'>missing from the graph"
               "</span><span class='extra'>only in the graph</span></div>")
    out.append("<h2>module groups</h2>")
    out.append(_overview(groups, group_of_node, nodes, deps, flags, div_step, div_group))
    out.append("<p><button onclick='setAll(true)'>expand all</button> <button onclick='setAll(false)'>collapse "
               "all</button> <label><input type='checkbox' onchange='showInstr(this.checked)'> show graphsafe's "
               "snapshot nodes</label> <input placeholder='filter (kernel, module, op)' oninput='filt(this.value)'>"
               "</p>")
    out.append("<div class='cols'><div><h2>eager kernels</h2><div id='eager'>")
    out.append(_eager(loc))
    out.append("</div></div><div><h2>captured graph</h2>")
    rows = 0
    for g, members in groups.items():
        hot = set()
        for n in members:
            hot |= flags.get(n.id, set())
        if g == div_group:
            hot.add("divergent")
        kinds: dict[str, int] = {}
        for n in members:
            kinds[n.kind] = kinds.get(n.kind, 0) + 1
        badges = "".join(f"<span class='badge b-{h}'>{h}</span>" for h in sorted(hot))
        cls = " instr" if g == "(graphsafe snapshots)" else ""
        out.append(f"<details class='group{cls}'{' open' if hot else ''}><summary>{_e(g)} — {len(members)} node"
                   f"{'s' * (len(members) != 1)} ({_e(', '.join(f'{v} {k}' for k, v in kinds.items()))}){badges}"
                   "</summary><table><tr><th>#</th><th>kind</th><th>name</th><th>grid</th><th>block</th>"
                   "<th>after</th><th>op</th><th>module</th><th>line</th></tr>")
        if g == div_group and not any(n.step == div_step for n in members):
            d = loc.divergence
            out.append(f"<tr class='divergent'><td></td><td>—</td><td colspan='4'>the first divergent op added no "
                       f"node to the graph: its work is not in it</td><td>{_e(d.step.op)}</td><td>"
                       f"{_e(d.step.module)}</td><td>{_e(d.step.location.short() if d.step.location else '')}"
                       "</td></tr>")
        for n in members:
            if rows >= MAX_ROWS:
                break
            rows += 1
            out.append(_row(n, steps, flags, div_step, deps.get(n.id, n.deps)))
        out.append("</table></details>")
    if rows < len(nodes):
        out.append(f"<p>{len(nodes) - rows} more nodes are not listed (the page lists {MAX_ROWS}).</p>")
    out.append("</div></div></body></html>")
    return "".join(out)


def _summary(loc: Localization, n_nodes: int, n_snap: int) -> str:
    lines = []
    d = loc.divergence
    if d is not None:
        where = d.step.location.short() if d.step.location else "?"
        what = ("eager ran it; the capture did not record it" if d.reason == "not-captured" else
                f"output {d.output} {'×'.join(map(str, d.shape))} {d.dtype}: max abs {d.max_abs:.3g}, "
                f"{d.mismatched}/{d.numel} elements")
        lines.append(f"<b>first divergent op</b>: <code>{_e(d.step.op)}</code> in <code>{_e(d.step.module or '-')}"
                     f"</code> at <code>{_e(where)}</code> — {_e(what)}")
    elif loc.no_divergence:
        lines.append(f"<b>first divergent op</b>: none found — {_e(loc.no_divergence)}")
    c = loc.census
    if c is not None:
        kinds = ", ".join(f"{v} {k}" for k, v in c.node_kinds.items()) or "none"
        lines.append(f"<b>census</b>: the target's graph has {n_nodes} nodes ({_e(kinds)}; graphsafe's snapshots "
                     f"add {n_snap}); eager ran {c.eager_kernels} kernels, the graph holds {c.graph_kernels}; missing "
                     f"{len(c.missing)}, extra {len(c.extra)}, reordered {len(c.reordered)}, other launch "
                     f"configuration {len(c.config)}")
    for fa in loc.frozen[:5]:
        lines.append(f"<b>frozen argument</b>: <code>{_e(fa.kernel)}</code> parameter {fa.param}"
                     f"{' (' + _e(fa.name) + ')' if fa.name else ''} was {_e(fa.value_a)} in one capture and "
                     f"{_e(fa.value_b)} in the other (node {fa.node})")
    for r in loc.races[:5]:
        lines.append(f"<b>race</b>: nodes {r.a} <code>{_e(r.a_name)}</code> and {r.b} <code>{_e(r.b_name)}</code> "
                     f"({_e(r.access)}{', ' + _e(r.tensor) if r.tensor else ''}) have no path between them")
    for err in loc.errors:
        lines.append(f"<b>not done</b>: {_e(err)}")
    return "<div class='sum'>" + "<br>".join(lines or ["nothing to report"]) + "</div>"


def _eager(loc: Localization) -> str:
    c = loc.census
    if c is None:
        return "<p>no eager kernel list (the census did not run)</p>"
    missing = set(c.missing_at)
    rows = "".join(f"<tr class='{'missing' if i in missing else ''}'><td>{i}</td><td class='name' title='{_e(k)}'>"
                   f"{_e(k)}</td></tr>" for i, k in enumerate(c.eager[:MAX_ROWS]))
    return f"<table><tr><th>#</th><th>kernel</th></tr>{rows}</table>"


def _row(n: GraphNodeInfo, steps: dict[int, StepInfo], flags: dict[int, set[str]], div_step, dep_ids) -> str:
    st = steps.get(n.step) if n.step is not None else None
    cls = set(flags.get(n.id, set()))
    if st is not None and n.step == div_step and not n.instrumentation:
        cls.add("divergent")
    if n.instrumentation:
        cls = {"instr"}
    if n.kind.startswith("unknown"):
        cls.add("extra")
    deps = " ".join(f"<a href='#n{d}'>{d}</a>" for d in dep_ids[:8]) + (" …" if len(dep_ids) > 8 else "")
    name = short_kernel_name(n.name) if n.kind == "kernel" else n.name
    where = st.location.short() if st is not None and st.location else ""
    return (f"<tr id='n{n.id}' class='{' '.join(sorted(cls))}'><td>{n.id}</td><td>{_e(n.kind)}</td>"
            f"<td class='name' title='{_e(n.name)}'>{_e(name)}{(' — ' + _e(n.note)) if n.note else ''}</td>"
            f"<td>{_e(_dim(n.grid))}</td><td>{_e(_dim(n.block))}</td><td>{deps}</td>"
            f"<td>{_e(st.op) if st else ''}</td><td>{_e(st.module) if st else ''}</td><td>{_e(where)}</td></tr>")


def _dim(d) -> str:
    return "×".join(str(x) for x in d) if d else ""


def _overview(groups, group_of_node, nodes, deps, flags, div_step, div_group) -> str:
    """Module groups as a layered DAG (longest path from the roots)."""
    names = [g for g in groups if g != "(graphsafe snapshots)"]
    idx = {g: i for i, g in enumerate(names)}
    edges: set[tuple[int, int]] = set()
    for n in nodes:
        b = idx.get(group_of_node[n.id])
        for d in deps.get(n.id, []):
            a = idx.get(group_of_node.get(d, ""))
            if a is not None and b is not None and a != b:
                edges.add((a, b))
    level = [0] * len(names)
    for _ in range(len(names)):  # relax; groups come in capture order, so this settles fast
        changed = False
        for a, b in edges:
            if level[b] < level[a] + 1 and level[a] + 1 < len(names):
                level[b], changed = level[a] + 1, True
        if not changed:
            break
    rows: dict[int, list[int]] = {}
    for i, lv in enumerate(level):
        rows.setdefault(lv, []).append(i)
    w, h, gap = 210, 22, 8
    pos = {}
    for lv, members in rows.items():
        for k, i in enumerate(members):
            pos[i] = (10 + k * (w + gap), 10 + lv * (h + gap))
    width = max((x for x, _ in pos.values()), default=0) + w + 20
    height = max((y for _, y in pos.values()), default=0) + h + 20
    parts = [f"<svg width='{width}' height='{height}' role='img' aria-label='module groups'>"]
    for a, b in sorted(edges):
        (x1, y1), (x2, y2) = pos[a], pos[b]
        parts.append(f"<line x1='{x1 + w // 2}' y1='{y1 + h}' x2='{x2 + w // 2}' y2='{y2}' stroke='#999'/>")
    for g, i in idx.items():
        x, y = pos[i]
        hot = set()
        for n in groups[g]:
            hot |= flags.get(n.id, set())
        if g == div_group:
            hot.add("divergent")
        fill = "#ffd6d6" if "divergent" in hot else "#ffe9c2" if "race" in hot else "#e4d9ff" if "frozen" in hot \
            else "#f0f4ff"
        label = g if len(g) <= 28 else "…" + g[-27:]
        parts.append(f"<g><title>{_e(g)}: {len(groups[g])} nodes</title><rect x='{x}' y='{y}' width='{w}' "
                     f"height='{h}' rx='4' fill='{fill}' stroke='#889'/><text x='{x + 6}' y='{y + 15}'>"
                     f"{_e(label)} ({len(groups[g])})</text></g>")
    parts.append("</svg>")
    return "".join(parts)
