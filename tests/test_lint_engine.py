"""The lint engine: configuration, suppressions, output formats, exit statuses, and bad input."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

from graphsafe.lint.engine import LintConfig, lint_paths, lint_source, load_config
from graphsafe.lint.output import to_json, to_sarif

BAD_CU = "void f(float* y) {\n  k<<<1, 1>>>(y);\n}\n"


def gs(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "graphsafe", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120, env={**os.environ, "COLUMNS": "160"})


def test_suppression_comments(tmp_path):
    assert {f.code for f in lint_source(BAD_CU.encode(), "a.cu")[0]} == {"GSC001", "GSC006"}
    same_line = BAD_CU.replace("(y);\n", "(y);  // graphsafe: ignore[GSC001]\n")
    assert [f.code for f in lint_source(same_line.encode(), "a.cu")[0]] == ["GSC006"]
    line_before = BAD_CU.replace("  k<<<", "  // graphsafe: ignore[GSC001, GSC006]\n  k<<<")
    assert lint_source(line_before.encode(), "a.cu")[0] == []
    everything = BAD_CU.replace("(y);\n", "(y);  // graphsafe: ignore\n")
    assert lint_source(everything.encode(), "a.cu")[0] == []
    py = "import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n" \
         "        return x.item()  # graphsafe: ignore[GSP001]\n"
    assert lint_source(py.encode(), "m.py")[0] == []


def test_select_and_ignore_by_prefix():
    cfg = LintConfig(select=["GSC00"], ignore=["GSC006"])
    assert [f.code for f in lint_source(BAD_CU.encode(), "a.cu", cfg)[0]] == ["GSC001"]
    assert lint_source(BAD_CU.encode(), "a.cu", LintConfig(select=["GSP"]))[0] == []


def test_pyproject_configuration(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.graphsafe]\nignore = ["GSC006"]\nexclude = ["vendor/*"]\n')
    (tmp_path / "vendor").mkdir()
    (tmp_path / "vendor" / "v.cu").write_text(BAD_CU)
    (tmp_path / "a.cu").write_text(BAD_CU)
    cfg = load_config(tmp_path)
    assert cfg.ignore == ["GSC006"] and cfg.source.endswith("pyproject.toml")
    p = gs("lint", "--json", ".", cwd=tmp_path)
    out = json.loads(p.stdout)
    assert p.returncode == 1 and [f["code"] for f in out["findings"]] == ["GSC001"]
    assert out["findings"][0]["location"]["file"].endswith("a.cu")
    (tmp_path / "pyproject.toml").write_text('[tool.graphsafe]\nselct = ["GSC"]\n')
    p = gs("lint", ".", cwd=tmp_path)
    assert p.returncode == 2 and "unknown keys" in p.stderr


def test_exit_statuses(tmp_path):
    (tmp_path / "ok.cu").write_text("void f(cudaStream_t s) { k<<<1, 1, 0, s>>>(); C10_CUDA_KERNEL_LAUNCH_CHECK(); }\n")
    (tmp_path / "bad.cu").write_text(BAD_CU)
    assert gs("lint", str(tmp_path / "ok.cu")).returncode == 0
    assert gs("lint", str(tmp_path / "bad.cu")).returncode == 1
    assert gs("lint", "--exit-zero", str(tmp_path / "bad.cu")).returncode == 0
    assert gs("lint", "--json", "--sarif", str(tmp_path)).returncode == 2


def test_text_output_is_rustc_style(tmp_path):
    (tmp_path / "bad.cu").write_text(BAD_CU)
    out = gs("lint", str(tmp_path / "bad.cu")).stdout
    assert "error[GSC001]: kernel launch `k<<<1, 1>>>` names no stream" in out
    assert "bad.cu:2:3" in out and "k<<<1, 1>>>(y);" in out and "^^^^^^^^^^^" in out
    assert "= help: pass the current stream" in out
    assert "Found 1 error, 1 warning in 1 file" in out


def test_sarif_is_2_1_0_with_rules_and_regions(tmp_path):
    (tmp_path / "bad.cu").write_text(BAD_CU)
    doc = json.loads(to_sarif(lint_paths([str(tmp_path / "bad.cu")])))
    assert doc["version"] == "2.1.0" and "sarif-2.1.0" in doc["$schema"]
    run = doc["runs"][0]
    ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    res = {r["ruleId"]: r for r in run["results"]}
    assert set(res) == {"GSC001", "GSC006"}
    r = res["GSC001"]
    assert ids[r["ruleIndex"]] == "GSC001" and r["level"] == "error"
    region = r["locations"][0]["physicalLocation"]["region"]
    assert region == {"startLine": 2, "startColumn": 3, "endColumn": 14}


def test_json_output(tmp_path):
    (tmp_path / "bad.cu").write_text(BAD_CU)
    doc = json.loads(to_json(lint_paths([str(tmp_path)])))
    assert doc["schema"] == "graphsafe.lint/1" and doc["files"] == 1 and doc["exit_status"] == 1


def test_bad_files_never_crash(tmp_path):
    (tmp_path / "empty.cu").write_bytes(b"")
    (tmp_path / "binary.cu").write_bytes(b"\x00\x01\x02" * 100)
    (tmp_path / "latin1.py").write_bytes("# -*- coding: latin-1 -*-\nx = 'caf\xe9'\n".encode("latin-1"))
    (tmp_path / "badutf8.py").write_bytes(b"x = '\xff\xfe'\n")
    (tmp_path / "syntax.py").write_text("def f(:\n")
    (tmp_path / "broken.cu").write_text("void f( { k<<<1, 1>>>(;; }}}")
    (tmp_path / "huge.cu").write_bytes(b"// x\n" * 2_200_000)  # 11 MB
    (tmp_path / "loop_a.cu").symlink_to(tmp_path / "loop_b.cu")
    (tmp_path / "loop_b.cu").symlink_to(tmp_path / "loop_a.cu")
    (tmp_path / "dirloop").mkdir()
    (tmp_path / "dirloop" / "self").symlink_to(tmp_path / "dirloop")
    unreadable = tmp_path / "secret.cu"
    unreadable.write_text(BAD_CU)
    unreadable.chmod(0)
    result = lint_paths([str(tmp_path), str(tmp_path / "missing.cu")])
    by_file = {}
    for f in result.findings:
        by_file.setdefault(Path(f.location.file).name, []).append(f.code)
    assert by_file["binary.cu"] == ["GSX003"]
    assert by_file["huge.cu"] == ["GSX003"]
    assert by_file["badutf8.py"] == ["GSX002"] and by_file["syntax.py"] == ["GSX002"]
    assert "GSX002" in by_file["broken.cu"]
    assert by_file["loop_a.cu"] == ["GSX001"] and by_file["loop_b.cu"] == ["GSX001"]
    assert by_file["missing.cu"] == ["GSX001"]
    assert "empty.cu" not in by_file and "latin1.py" not in by_file
    if os.geteuid() != 0:  # root reads anything
        assert by_file["secret.cu"] == ["GSX001"]


def test_fuzz_random_and_mutated_sources():
    rng = random.Random(1234)
    seeds = [BAD_CU, Path(__file__).read_text(),
             (Path(__file__).parent / "lint_fixtures" / "streams_bad.cu").read_text()]
    alphabet = "<>{}()[];,.:#/*\\\"'\n\t abcxyz0123456789_=+-!&|?"
    for i in range(300):
        base = rng.choice(seeds)
        chars = list(base)
        for _ in range(rng.randint(1, 40)):
            op = rng.random()
            pos = rng.randrange(len(chars) + 1)
            if op < 0.4 and chars:
                del chars[min(pos, len(chars) - 1)]
            elif op < 0.8:
                chars.insert(pos, rng.choice(alphabet))
            else:
                chars[pos:pos] = list(base[rng.randrange(len(base)):][:rng.randint(1, 60)])
        data = "".join(chars).encode()
        if i % 5 == 0:
            data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 400)))
        for name in ("f.cu", "f.py", "f.h"):
            lint_source(data, name)  # must not raise


def test_precommit_hook_definition():
    text = (Path(__file__).resolve().parents[1] / ".pre-commit-hooks.yaml").read_text()
    assert "id: graphsafe-lint" in text and "entry: graphsafe lint" in text


_SPLIT = b'''#ifndef MY_HEADER_ONLY
#include <cuda_runtime.h>

__global__ void fill_kernel(float* x, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] = 0.f;
}

class MY_API Filler {
 public:
  MY_DEPRECATED(
#if MY_WIDE
      "use fill_wide()")
#else
      "use fill_narrow()")
#endif
  static void fill(float* x, int n) {
    fill_kernel<<<(n + 255) / 256, 256>>>(x, n);
  }
};
#else
#error "not in header-only builds"
#endif
'''


def test_a_file_tree_sitter_cannot_parse_as_written_is_read_by_its_first_branches():
    """A declaration split across #if branches inside a class swallows the rest of it into one ERROR
    node; read with only the first branch of each conditional, the launch after it is analysed whole
    (its missing error check too), at the same line and column, and a note says what was read."""
    found = lint_source(_SPLIT, "filler.cuh")[0]
    assert {(f.code, f.location.line, f.location.column) for f in found if f.code != "GSX002"} == {
        ("GSC001", 18, 5), ("GSC006", 18, 5)}
    notes = [f for f in found if f.code == "GSX002"]
    assert len(notes) == 1 and notes[0].severity == "note" and "one branch of each" in notes[0].message
    assert "other branches" in notes[0].help


def test_the_second_reading_adds_findings_and_loses_none():
    """What the file as written gave stays, other branches included (a ROCm/CUDA split's CUDA side),
    and a suppression comment in a branch the second reading blanks still holds."""
    other = (b"__global__ void k(float* x) {}\n#ifdef USE_ROCM\nvoid a(float* x) { hipLaunch(x); }\n#else\n"
             b"void b(float* x) {\n  k<<<1, 1>>>(x);\n  k<<<1, 1>>>(x);  // graphsafe: ignore[GSC001]\n"
             b"  C10_CUDA_KERNEL_LAUNCH_CHECK();\n}\n#endif\n")
    alone = {(f.code, f.location.line) for f in lint_source(other, "k.cu")[0]}
    assert ("GSC001", 6) in alone and ("GSC001", 7) not in alone
    found = {(f.code, f.location.line) for f in lint_source(other + _SPLIT, "k.cu")[0]}
    assert alone <= found and {("GSC001", 28), ("GSC006", 28), ("GSX002", None)} <= found
    assert ("GSC001", 7) not in found


def test_first_branches_keeps_positions_and_one_branch():
    from graphsafe.lint.preproc import first_branches

    def kept(src):
        view = first_branches(src)
        assert len(view) == len(src) and [i for i, c in enumerate(view) if c in b"\r\n"] == [
            i for i, c in enumerate(src) if c in b"\r\n"]
        return [ln.strip() for ln in view.splitlines() if ln.strip()]

    assert kept(b"a();\n#if X\nb();\n#  ifdef Y \\\n  // continued\nc();\n#  else\nd();\n#  endif\n#elif Z\n"
                b"e();\n#else\nf();\n#endif\ng();\n#endif\nh();\n") == [b"a();", b"b();", b"c();", b"g();", b"h();"]
    assert kept(b"#if 0\nold();\n#elif A\nnew();\n#else\nother();\n#endif\n") == [b"new();"]
    assert kept(b"/* the old way:\r\n#else\r\n*/\r\nx();\r\n#endif /* a\n#else\n*/\ny();\n") == [
        b"/* the old way:", b"#else", b"*/", b"x();", b"#else", b"*/", b"y();"]  # #else in a comment: text
    assert kept(b'#else\ns = "/*";\n#endif\n#if A\nt();\n') == [b's = "/*";', b"t();"]  # stray, and unclosed
    assert first_branches(b"int x;\n") == b"int x;\n"  # nothing to do: the same bytes


def test_one_finding_per_code_and_place(monkeypatch):
    """Where tree-sitter's error recovery reaches the same launch twice, it is reported once."""
    from graphsafe.lint import cpp_rules
    real = cpp_rules.lint_cpp

    def twice(src, return_tree=False):
        hits, errors, tree, scan = real(src, return_tree=True)
        return (hits + hits, errors, tree, scan) if return_tree else (hits + hits, errors)

    monkeypatch.setattr(cpp_rules, "lint_cpp", twice)
    src = b"__global__ void k(float* x) {}\nvoid run(float* x) {\n  k<<<1, 1>>>(x);\n}\n"
    assert sorted((f.code, f.location.line) for f in lint_source(src, "k.cu")[0]) == [("GSC001", 3), ("GSC006", 3)]


_ATTRIBUTED = b'''#if !defined(STABLE_ONLY)
#pragma once
namespace my::ops {
template <typename V>
struct Pair {
  V lo, hi;
  C10_HOST_DEVICE Pair(V lo, V hi) : lo(lo), hi(hi) { }
};
template <typename V>
struct Split {
  C10_HOST_DEVICE inline Pair<V> split(V n) const { return Pair<V>(n / d, n % d); }
  V d;
};
__global__ void twice(float* x) { x[threadIdx.x] *= 2; }
TORCH_API inline void run(float* x) {
  const char* why = "C10_HOST_DEVICE stays in strings";  // and C10_HOST_DEVICE in comments
  twice<<<1, 32>>>(x);
}
}  // namespace my::ops
#else
#error "not in stable builds"
#endif
'''


def test_the_second_reading_blanks_attribute_macros():
    """A header whose constructors carry an unexpanded C10_HOST_DEVICE (PyTorch's IntegerDivider.cuh is
    one) does not parse even with one branch per conditional: the macro reads as a type and the
    initializer list breaks the rest of the namespace. With the attribute macros blanked it parses whole
    and the note says so; strings and comments keep their text. (The launch rules find this launch in
    the broken parse too: they read inside ERROR nodes. What the blanking buys is a whole tree, and a
    note that says nothing was left unread.)"""
    from graphsafe.lint.cuda import parser
    from graphsafe.lint.preproc import blank_attribute_macros, first_branches
    view = first_branches(_ATTRIBUTED)
    blanked = blank_attribute_macros(view, parser().parse(view))
    assert len(blanked) == len(view) and blanked.count(b"\n") == view.count(b"\n")
    assert blanked.count(b"C10_HOST_DEVICE") == 2 and b"TORCH_API" not in blanked  # the string's and comment's
    assert blank_attribute_macros(b"int x;\n", parser().parse(b"int x;\n")) == b"int x;\n"
    found = lint_source(_ATTRIBUTED, "pair.cuh")[0]
    assert ("GSC001", 17, 3) in {(f.code, f.location.line, f.location.column) for f in found}
    from graphsafe.lint.cpp_rules import lint_cpp
    assert lint_cpp(view, return_tree=True)[1] > len(view) // 2  # one branch per conditional alone: not enough
    [note] = [f for f in found if f.code == "GSX002"]
    assert "attribute macros blanked, 0% could not" in note.message


def test_the_second_reading_keeps_the_view_that_parses_better(monkeypatch):
    """Without conditionals the second reading is the blanking alone; where blanking parses worse (it
    can turn tree-sitter's error recovery the wrong way: one PyTorch header went from 5 % to 92 %
    unparsed) the view with the macros kept is read."""
    from graphsafe.lint import engine, preproc
    from graphsafe.lint.cpp_rules import error_bytes
    from graphsafe.lint.cuda import parser
    plain = _ATTRIBUTED.split(b"#else")[0].replace(b"#if !defined(STABLE_ONLY)\n", b"\n")
    tree = parser().parse(plain)
    view, _, how, _ = engine._second_view(plain, tree, error_bytes(tree))
    assert how == "attribute macros blanked" and b"C10_HOST_DEVICE Pair" not in view
    [note] = [f for f in lint_source(plain, "pair.cuh")[0] if f.code == "GSX002"]
    assert "read again with attribute macros blanked, 0% could not" in note.message
    assert "unparsed part" in note.help
    monkeypatch.setattr(preproc, "blank_attribute_macros", lambda src, tree: b"}" * len(src))
    tree = parser().parse(_ATTRIBUTED)
    view, _, how, _ = engine._second_view(_ATTRIBUTED, tree, error_bytes(tree))
    assert view == preproc.first_branches(_ATTRIBUTED) and "blanked" not in how


_EVERY_PATTERN = b'''// a comment
using namespace torch::cuda;
#define GS_FLAG 1
#define GS_LAUNCH(s) k<<<1, 1, 0, s>>>()
static cudaStream_t kept;
__global__ void k() { asm volatile("griddepcontrol.wait;"); }
void run(cudaStream_t s) {
  k<<<1, 1>>>();  /* another */
  cudaMemcpyAsync(nullptr, nullptr, 0, cudaMemcpyDefault, s);
  int broken = (;
}
'''


def test_one_scan_finds_what_each_pattern_finds_alone():
    """``cuda.Scan`` runs every whole-file pattern as one query; each name's matches are those of its
    pattern run alone, in the same order, and this source has at least one of each."""
    from graphsafe.lint.cuda import PATTERNS, Scan, matches, parser

    root = parser().parse(_EVERY_PATTERN).root_node
    scan = Scan(root)

    def spans(found):
        return [{k: (v.start_byte, v.end_byte, v.type) for k, v in m.items()} for m in found]

    for name, pattern in PATTERNS.items():
        assert spans(scan[name]) == spans(matches(pattern, root)), name
        assert scan[name], f"the test source has no {name}"


def test_exclude_and_configuration_hold_however_the_project_is_named(tmp_path):
    """The pyproject.toml is found from the linted paths (not only the working directory), and its
    ``exclude`` patterns match paths from its own directory: relative, absolute or from outside alike."""
    proj = tmp_path / "proj"
    (proj / "third_party").mkdir(parents=True)
    (proj / "src").mkdir()
    (proj / "pyproject.toml").write_text('[tool.graphsafe]\nexclude = ["third_party/*"]\n')
    launch = "__global__ void k(float*);\nvoid f(float* x) { k<<<1, 1>>>(x); }\n"
    (proj / "third_party" / "v.cu").write_text(launch)
    (proj / "src" / "a.cu").write_text(launch)
    for cwd, paths in ((proj, ["."]), (proj, [str(proj)]), (tmp_path, ["proj"]), (tmp_path, ["proj/src", "proj/third_party"])):
        p = gs("lint", "--json", *paths, cwd=cwd)
        files = {Path(f["location"]["file"]).name for f in json.loads(p.stdout)["findings"]}
        assert files == {"a.cu"}, (cwd, paths, p.stdout)
