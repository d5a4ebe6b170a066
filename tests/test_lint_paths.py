"""What the linter is given, besides sources: devices, FIFOs, links, unreadable directories, a file named
twice, nesting too deep to analyse; and where it writes them (SARIF URIs, text excerpts)."""
from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import pytest
from rich.console import Console

from graphsafe.lint.engine import LintConfig, discover, lint_paths, lint_source
from graphsafe.lint.output import render_text, to_sarif

BAD_LAUNCH = "__global__ void k(float*);\nvoid f(float* x) { k<<<1, 1>>>(x); }\n"
ITEM = "import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n        return x.item()\n"


def codes(result):
    return sorted(f.code for f in result.findings)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_reported_not_read(tmp_path):
    os.mkfifo(tmp_path / "pipe.cu")  # reading it would block forever
    result = lint_paths([str(tmp_path / "pipe.cu")])
    [f] = result.findings
    assert f.code == "GSX001" and "not a regular file" in f.message
    assert codes(lint_paths([str(tmp_path)])) == ["GSX001"]  # found by the walk too


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_link_to_a_device_is_reported_not_read(tmp_path):
    (tmp_path / "zero.cu").symlink_to("/dev/zero")  # reading it would never end
    [f] = lint_paths([str(tmp_path / "zero.cu")]).findings
    assert f.code == "GSX001" and "not a regular file" in f.message


def test_a_link_named_without_a_suffix_is_linted_as_its_target(tmp_path):
    (tmp_path / "m.py").write_text(ITEM)
    (tmp_path / "mlink").symlink_to("m.py")
    result = lint_paths([str(tmp_path / "mlink")])
    assert codes(result) == ["GSP001"] and result.findings[0].location.file.endswith("mlink")
    (tmp_path / "m.txt").write_text("prose\n")
    (tmp_path / "notes").symlink_to("m.txt")  # points at no source
    assert codes(lint_paths([str(tmp_path / "notes")])) == ["GSX003"]
    (tmp_path / "gone").symlink_to("missing")  # dangling: reported as unreadable, not skipped
    assert codes(lint_paths([str(tmp_path / "gone")])) == ["GSX001"]


def test_a_file_named_twice_is_linted_once(tmp_path, monkeypatch):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.cu").write_text(BAD_LAUNCH)
    monkeypatch.chdir(tmp_path)
    result = lint_paths(["src", "src/a.cu", "./src/a.cu", str(tmp_path / "src" / "a.cu")])
    assert result.files == 1 and codes(result).count("GSC001") == 1


def test_a_directory_that_cannot_be_listed_is_reported(tmp_path, monkeypatch):
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "x.cu").write_text(BAD_LAUNCH)
    real = os.scandir

    def scandir(path="."):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    files, problems = discover([str(tmp_path)], LintConfig())
    assert files == []
    [f] = problems
    assert f.code == "GSX001" and "cannot list this directory" in f.message and f.location.file.endswith("locked")


def test_python_too_deep_to_analyse_is_a_warning_not_a_pass():
    deep = ("x = " + "not " * 50000 + "y\n").encode()
    [f] = lint_source(deep, "deep.py")[0]
    assert f.code == "GSX002" and f.severity == "warning"
    limit = sys.getrecursionlimit()
    nested = ITEM + "        if " + "not " * (limit + 200) + "x.sum():\n            pass\n"
    found = lint_source(nested.encode(), "nested.py")[0]
    assert [f.severity for f in found if f.code == "GSX002"] in (["warning"], [])  # checked, or said unchecked
    assert found  # never silently clean


def test_a_prototype_returning_a_stream_caches_none():
    src = ("cudaStream_t get_stream();\nnamespace a { cudaStream_t current(int device); }\n"
           "at::cuda::CUDAStream pick(const at::Tensor& t);\nstatic cudaStream_t cached;\n")
    found = lint_source(src.encode(), "proto.h")[0]
    assert [(f.code, f.location.line) for f in found] == [("GSC002", 4)]


def test_sarif_uris_are_percent_encoded(tmp_path, monkeypatch):
    (tmp_path / "my kernel#1.cu").write_text(BAD_LAUNCH)
    monkeypatch.chdir(tmp_path)
    sarif = json.loads(to_sarif(lint_paths(["my kernel#1.cu"])))
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in sarif["runs"][0]["results"]}
    assert uris == {"my%20kernel%231.cu"}


def test_the_excerpt_shows_the_line_as_written(tmp_path):
    path = tmp_path / "macro.cu"
    path.write_text("__global__ void k(float*);\n#define L(x) \\\n    k<<<1, 1>>>(x); \\\n    foo()\n")
    buf = io.StringIO()
    render_text(lint_paths([str(path)]), Console(file=buf, width=200, color_system=None))
    assert "3 |     k<<<1, 1>>>(x); \\\n" in buf.getvalue()  # one backslash, as in the file


@pytest.mark.parametrize("line", [
    "  /* graphsafe: ignore[GSC001] */ k<<<1, 1>>>(x); /* grid 1 */",
    "  k<<<1, 1>>>(x); /* grid 1 */ // graphsafe: ignore[GSC001]",
    "  k<<<1, 1>>>(x); /* graphsafe: ignore[GSC001]\n     the legacy stream is wanted here */",
])
def test_a_suppression_holds_beside_other_comments(line):
    src = f"__global__ void k(float*);\nvoid f(float* x) {{\n{line}\n  C10_CUDA_KERNEL_LAUNCH_CHECK();\n}}\n"
    assert [f.code for f in lint_source(src.encode(), "s.cu")[0]] == []
    unsuppressed = src.replace("graphsafe: ignore[GSC001]", "a note")
    assert [f.code for f in lint_source(unsuppressed.encode(), "s.cu")[0]] == ["GSC001"]


def test_columns_count_characters_not_bytes(tmp_path):
    """tree-sitter and ast count UTF-8 bytes; findings (text, JSON, SARIF's unicodeCodePoints) count
    characters, and the caret keeps a line's tabs so it lands under the code."""
    cu = tmp_path / "u.cu"
    cu.write_text("__global__ void k(float*);\nvoid f(float* x) {\n  /* débit µs */ k<<<1, 1>>>(x);\n"
                  "\tk<<<1, 1>>>(x);\n}\n", encoding="utf-8")
    py = tmp_path / "u.py"
    py.write_text('import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n'
                  '        y = "ééééé"; return x.item()\n', encoding="utf-8")
    result = lint_paths([str(cu), str(py)])
    places = {(Path(f.location.file).name, f.code, f.location.line, f.location.column, f.location.span)
              for f in result.findings}
    assert ("u.cu", "GSC001", 3, 18, 11) in places and ("u.cu", "GSC001", 4, 2, 11) in places
    assert ("u.py", "GSP001", 4, 29, 8) in places
    sarif = json.loads(to_sarif(result))
    assert sarif["runs"][0]["columnKind"] == "unicodeCodePoints"
    buf = io.StringIO()
    render_text(result, Console(file=buf, width=200, color_system=None))
    assert "  3 |   /* débit µs */ k<<<1, 1>>>(x);\n    |                  ^^^^^^^^^^^" in buf.getvalue()
    lines = buf.getvalue().splitlines()
    code = next(i for i, ln in enumerate(lines) if ln.startswith("  4 |"))
    assert lines[code].index("k<<<") == lines[code + 1].index("^")  # however the terminal expands the tab


def test_code_in_an_if_0_branch_is_not_reported():
    src = ("__global__ void k(float*);\nvoid f(float* x, cudaStream_t s) {\n#if 0\n  k<<<1, 1>>>(x);\n"
           "  cudaDeviceSynchronize();\n#else\n  k<<<2, 1>>>(x);\n#endif\n  k<<<1, 1, 0, s>>>(x);\n"
           "  C10_CUDA_KERNEL_LAUNCH_CHECK();\n}\n")
    found = lint_source(src.encode(), "d.cu")[0]
    assert [(f.code, f.location.line) for f in found] == [("GSC001", 7)]  # the #else branch is compiled


@pytest.mark.parametrize("decl, bad", [
    ("cudaStream_t s{};", True), ("cudaStream_t s = {};", True), ("cudaStream_t s = cudaStream_t();", True),
    ("cudaStream_t s(at::cuda::getCurrentCUDAStream());", False),
    ("cudaStream_t s{at::cuda::getCurrentCUDAStream()};", False),
])
def test_a_value_initialized_stream_is_the_null_stream(decl, bad):
    assert _launch_on_s(f"  {decl}\n") == (["GSC001"] if bad else [])


def _launch_on_s(body: str) -> list[str]:
    """The codes found for ``body`` followed by a checked launch on the stream ``s``."""
    src = (f"__global__ void k(float*);\nvoid f(float* x) {{\n{body}  k<<<1, 1, 0, s>>>(x);\n"
           "  C10_CUDA_KERNEL_LAUNCH_CHECK();\n}\n")
    return [f.code for f in lint_source(src.encode(), "s.cu")[0]]


def test_a_bound_handle_does_not_hide_an_unbound_one():
    src = ("void f() {\n  cublasHandle_t h1, h2;\n  cublasCreate(&h1);\n  cublasCreate(&h2);\n"
           "  cublasSetStream(h1, at::cuda::getCurrentCUDAStream());\n}\n")
    assert [(f.code, f.location.line) for f in lint_source(src.encode(), "h.cu")[0]] == [("GSC003", 4)]
    both = src.replace("\n}\n", "\n  cublasSetStream(h2, at::cuda::getCurrentCUDAStream());\n}\n")
    assert lint_source(both.encode(), "h.cu")[0] == []


def test_a_device_side_launch_is_not_a_host_stream_finding():
    src = ("__global__ void child(float* x);\n__global__ void parent(float* x) {\n  child<<<1, 1>>>(x);\n}\n"
           "void host(float* x) {\n  parent<<<1, 1>>>(x);\n}\n")
    found = lint_source(src.encode(), "dp.cu")[0]
    assert {(f.code, f.location.line) for f in found} == {("GSC001", 6), ("GSC006", 6)}


@pytest.mark.parametrize("body, bad", [
    # a block's own `s` ends with the block: the launch uses the outer, current stream
    ("  cudaStream_t s = at::cuda::getCurrentCUDAStream();\n  for (int i = 0; i < 2; ++i) { int s = 0; (void)s; }\n",
     False),
    ("  cudaStream_t s = at::cuda::getCurrentCUDAStream();\n  { cudaStream_t s = 0; s = 0; (void)s; }\n", False),
    ("  cudaStream_t s = at::cuda::getCurrentCUDAStream();\n  for (int s = 0; s < 2; ++s) {}\n", False),
    # an assignment to the outer `s` from inside a block still counts
    ("  cudaStream_t s = at::cuda::getCurrentCUDAStream();\n  if (x) { s = 0; }\n", True),
    ("  cudaStream_t s = 0;\n  { int t = 1; (void)t; }\n", True),
    # declared without a value in a block, then assigned there: the block's own
    ("  cudaStream_t s = at::cuda::getCurrentCUDAStream();\n  for (int i = 0; i < 2; ++i) { cudaStream_t s; s = 0; }\n",
     False),
    ("  cudaStream_t s = at::cuda::getCurrentCUDAStream();\n  auto g = [&] { cudaStream_t s = 0; (void)s; };\n", False),
])
def test_a_declaration_holds_only_in_its_block(body, bad):
    assert _launch_on_s(body) == (["GSC001"] if bad else [])


def test_code_in_an_if_0_branch_checks_and_binds_nothing():
    launch = ("__global__ void k(float*);\nvoid f(float* x) {\n  k<<<1, 1, 0, at::cuda::getCurrentCUDAStream()>>>(x);\n"
              "#if 0\n  C10_CUDA_KERNEL_LAUNCH_CHECK();\n#endif\n}\n")
    assert [f.code for f in lint_source(launch.encode(), "c.cu")[0]] == ["GSC006"]
    handle = "void f() {\n  cublasHandle_t h;\n  cublasCreate(&h);\n#if 0\n  cublasSetStream(h, s);\n#endif\n}\n"
    assert [f.code for f in lint_source(handle.encode(), "c.cu")[0]] == ["GSC003"]
    # a lone carriage return ends no line (tree-sitter's rows): the branch is still lines 3-4
    cr = b"// a\rb\n__global__ void k(float*);\n#if 0\nvoid f(float* x) { k<<<1, 1>>>(x); }\n#endif\nvoid g(float* x) { k<<<1, 1>>>(x); }\n"
    assert [(f.code, f.location.line) for f in lint_source(cr, "c.cu")[0] if f.code == "GSC001"] == [("GSC001", 6)]


def test_exclude_holds_for_a_linked_file_inside_the_excluded_directory(tmp_path, monkeypatch):
    from graphsafe.lint.engine import load_config

    proj = tmp_path / "proj"
    (proj / "third_party").mkdir(parents=True)
    (proj / "pyproject.toml").write_text('[tool.graphsafe]\nexclude = ["third_party/*"]\n')
    (tmp_path / "outside.py").write_text(ITEM)
    (proj / "third_party" / "ext.py").symlink_to(tmp_path / "outside.py")
    config = load_config(start=proj)
    monkeypatch.chdir(tmp_path)
    for named in ("proj", str(proj)):
        assert lint_paths([named], config).files == 0


def test_python_columns_follow_the_coding_cookie():
    src = '# -*- coding: latin-1 -*-\nimport torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n' \
          '        s = "\xe9"; return x[x > 0]\n'
    [f] = lint_source(src.encode("latin-1"), "l.py")[0]
    assert (f.code, f.location.column, f.location.span) == ("GSP002", 25, 8)
