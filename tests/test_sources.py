"""The seed's sources: the buggy file keeps the bug, the twin differs only in its launch, the script
is the user's, and the launch finder sees both launches."""
from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from graphsafe.lint.cuda import launches

SEED = Path(__file__).resolve().parents[1] / "src" / "graphsafe" / "cases" / "seed"
REPORT = Path(__file__).resolve().parents[2] / "shared" / "seed" / "000_5242220ec7d32754.txt"


def test_seed_launch_has_no_stream_and_twin_uses_current_stream():
    [bad] = launches((SEED / "csrc" / "seed_quant.cu").read_bytes())
    [good] = launches((SEED / "csrc" / "seed_quant_fixed.cu").read_bytes())
    assert (bad.kernel, bad.stream, bad.function, bad.line) == ("scale_andquant_kernel", None, "sym_quantfuse_host", 109)
    assert good.stream == "at::cuda::getCurrentCUDAStream()"


def test_fixed_twin_differs_only_in_header_includes_and_launch():
    bad = (SEED / "csrc" / "seed_quant.cu").read_text().splitlines()
    good = (SEED / "csrc" / "seed_quant_fixed.cu").read_text().splitlines()
    changed = [ln[1:].strip() for ln in difflib.unified_diff(bad, good, lineterm="", n=0)
               if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    code = [c for c in changed if c and not c.startswith("//")]
    assert sorted(code) == sorted([
        "#include <ATen/cuda/CUDAContext.h>", "#include <c10/cuda/CUDAException.h>",
        "scale_andquant_kernel<<<grid, block>>>(x, scale, input_clip_ratio, colsSrc, colsDst, q);",
        "scale_andquant_kernel<<<grid, block, 0, at::cuda::getCurrentCUDAStream()>>>(",
        "x, scale, input_clip_ratio, colsSrc, colsDst, q);", "C10_CUDA_KERNEL_LAUNCH_CHECK();"])


def _code_lines(text: str) -> list[str]:
    return [ln.rstrip() for ln in text.splitlines() if ln.strip()]


@pytest.mark.skipif(not REPORT.is_file(), reason="the user report lives in ../shared/seed beside the checkout")
def test_script_is_the_users_script_with_only_the_import_changed():
    report = REPORT.read_text()
    start = report.index("import torch\n")
    end = report.index("The ‘sym_quant_fuse’ serves")
    users = _code_lines(report[start:end])
    ours = _code_lines((SEED / "script.py").read_text())
    while ours[0].startswith("#"):  # our header comment
        ours.pop(0)
    assert ours[0] == "from graphsafe.cases.seed import sym_quant_fuse"
    assert ours[1:] == users


def test_launch_finder_survives_broken_source():
    assert launches(b"void f( { k<<<1, 2>>>(;; }") is not None
    assert launches(b"") == []
    assert launches(b"\xff\xfe\x00garbage") == []


def test_every_source_file_the_package_compiles_ships_in_the_wheel():
    """Each non-Python file under src/graphsafe (kernels compiled at run time by NVRTC or torch's
    extension builder, headers NVRTC takes from memory, the seed's data) matches a package-data glob of
    pyproject.toml; a file missing there works from a checkout and fails only in an installed wheel."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    root = Path(__file__).resolve().parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["graphsafe"]
    pkg = root / "src" / "graphsafe"
    shipped = {p for g in globs for p in pkg.glob(g)}
    data = [p for p in pkg.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc", ".typed")
            and "__pycache__" not in p.parts]
    assert data, "no data files found: the layout changed"
    missing = sorted(str(p.relative_to(pkg)) for p in data if p not in shipped)
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"
    assert pkg / "quant" / "csrc" / "w4a4_common.cuh" in shipped
