"""Finds the C++/CUDA line that launched a kernel, in the sources of loaded torch extensions.

A JIT-built extension (``torch.utils.cpp_extension.load``) leaves a ``build.ninja`` next to its
shared object that lists its sources; a setuptools build can be pointed at with
``GRAPHSAFE_SOURCE_DIRS`` (paths separated by ``os.pathsep``). The launches are found with the
linter's tree-sitter parser.
"""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from ..diagnostics import Location

_SUFFIXES = (".cu", ".cuh", ".cpp", ".cc", ".cxx", ".h", ".hpp")


def _loaded_libraries() -> list[str]:
    """Shared objects loaded in this process: extension modules (``cpp_extension.load`` does not put
    its modules in ``sys.modules``) appear in the process's memory map."""
    libs = {getattr(m, "__file__", None) for m in list(sys.modules.values())}
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split(maxsplit=5)[-1].strip() if line.count(" ") >= 5 else ""
                if path.endswith(".so"):
                    libs.add(path)
    except OSError:  # not Linux: sys.modules alone
        pass
    return sorted(f for f in libs if f and f.endswith((".so", ".pyd")))


def extension_sources() -> list[Path]:
    found: dict[Path, None] = {}
    for f in _loaded_libraries():
        ninja = Path(f).parent / "build.ninja"
        if ninja.is_file():
            for p in _ninja_sources(ninja):
                found.setdefault(p)
    for d in filter(None, os.environ.get("GRAPHSAFE_SOURCE_DIRS", "").split(os.pathsep)):
        for p in sorted(Path(d).rglob("*")):
            if p.suffix in _SUFFIXES and p.is_file():
                found.setdefault(p.resolve())
    return list(found)


def _ninja_sources(ninja: Path) -> list[Path]:
    out = []
    for line in ninja.read_text(errors="replace").splitlines():
        if line.startswith("build ") and ":" in line:
            _, _, rhs = line.partition(":")
            parts = shlex.split(rhs)
            for p in parts[1:]:
                if p.endswith(_SUFFIXES) and Path(p).is_file():
                    out.append(Path(p).resolve())
    return out


def launch_sites(kernel: str, stream_role: str = "", sources: list[Path] | None = None) \
        -> tuple[list[Location], str | None]:
    """Locations of ``kernel<<<...>>>`` launches that fit the stream the kernel ran on (a launch on the
    current stream cannot have put it on the legacy stream); the second value says why none could be
    looked for."""
    try:
        import tree_sitter  # noqa: F401 - the parser's imports are lazy: ask for them here
        import tree_sitter_cuda  # noqa: F401

        from ..lint.cuda import NO_STREAM, FunctionScope, enclosing_function, launch_stream, launches_in, parser
    except ImportError as exc:
        return [], f"C++ launch sites not located: {exc.name or 'tree-sitter-cuda'} is not installed"
    srcs = extension_sources() if sources is None else sources
    sites, fitting = [], []
    for path in srcs:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        for ln in launches_in(parser().parse(data).root_node, data):
            if ln.kernel.split("<")[0].split("::")[-1] != kernel.split("::")[-1]:
                continue
            value = launch_stream(ln, FunctionScope(enclosing_function(ln.node), data))
            stream = "names no stream" if value is NO_STREAM else f"stream `{ln.stream}`"
            loc = Location(file=str(path), line=ln.line, column=ln.column, function=ln.function,
                           label=f"`{ln.kernel}` launched here ({stream})", span=ln.span)
            sites.append(loc)
            on_current = value.verdict == "ok" and value.kind == "the current stream"
            if value.is_default if stream_role in ("legacy", "per_thread") else not on_current:
                fitting.append(loc)
    return (fitting or sites), None
