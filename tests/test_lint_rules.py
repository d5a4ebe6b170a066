"""Lint rules: every rule's examples, the labelled stream fixtures, the seed, and Python scoping."""
from __future__ import annotations

from pathlib import Path

import pytest

from graphsafe.lint.codes import RULES
from graphsafe.lint.engine import LintConfig, lint_paths, lint_source

FIXTURES = Path(__file__).parent / "lint_fixtures"
SEED = Path(__file__).resolve().parents[1] / "src" / "graphsafe" / "cases" / "seed"


def codes(source: str, name: str = "x.py") -> list[str]:
    return [f.code for f in lint_source(source.encode(), name)[0]]


@pytest.mark.parametrize("rule", [r for r in RULES.values() if r.bad], ids=lambda r: r.code)
def test_rule_examples(rule):
    bad = codes(rule.bad, f"example{rule.suffix}")
    good = codes(rule.good, f"example{rule.suffix}")
    assert rule.code in bad, bad
    assert rule.code not in good, good


def _expected(path: Path, code: str) -> set[int]:
    return {i for i, line in enumerate(path.read_text().splitlines(), 1) if f"// expect {code}" in line}


def test_launch_stream_rule_on_labelled_fixtures():
    """Precision and recall of GSC001 on fixtures that include tricky correct code."""
    tp = fp = fn = 0
    for fx in sorted(FIXTURES.glob("*.cu")):
        got = {f.location.line for f in lint_paths([str(fx)], LintConfig(select=["GSC001"])).findings}
        want = _expected(fx, "GSC001")
        tp, fp, fn = tp + len(got & want), fp + len(got - want), fn + len(want - got)
        assert got == want, (fx.name, sorted(got - want), sorted(want - got))
    assert tp >= 30 and fp == 0 and fn == 0


def test_seed_kernel_file_reports_the_streamless_launch_at_its_line():
    findings = lint_paths([str(SEED / "csrc" / "seed_quant.cu")]).findings
    by_code = {f.code: f for f in findings}
    assert set(by_code) == {"GSC001", "GSC006"}
    launch = by_code["GSC001"]
    assert (launch.location.line, launch.location.column) == (109, 5)
    assert "at::cuda::getCurrentCUDAStream()" in launch.help
    assert by_code["GSC006"].severity == "warning"


def test_seed_fixed_twin_has_no_launch_finding():
    assert lint_paths([str(SEED / "csrc" / "seed_quant_fixed.cu")]).findings == []


def test_seed_runner_returns_its_static_output():
    found = {(f.code, f.location.line) for f in lint_paths([str(SEED / "script.py")]).findings}
    assert ("GSP007", 54) in found  # CUDAGraphRunner.forward: return self.graph_output
    assert ("GSP006", 44) in found  # capture without warm-up


def test_python_rules_only_apply_to_captured_code():
    src = (
        "import torch\n"
        "def report(x):\n"
        "    return x.sum().item()\n"          # not reachable from a forward: fine
        "class M(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        return self._norm(x)\n"
        "    def _norm(self, x):\n"
        "        return x / x.max().item()\n"    # reachable through self._norm: reported
        "    def stats(self, x):\n"
        "        return x.mean().item()\n")      # not reachable: fine
    found = [f for f in lint_source(src.encode(), "m.py")[0]]
    assert [(f.code, f.location.line) for f in found] == [("GSP001", 8)]


def test_code_inside_a_graph_capture_block_is_checked():
    src = ("import torch\n"
           "def step(x):\n"
           "    torch.cuda.synchronize()\n"
           "    return x\n"
           "def capture(x):\n"
           "    step(x)\n"
           "    g = torch.cuda.CUDAGraph()\n"
           "    with torch.cuda.graph(g):\n"
           "        y = step(x)\n")
    assert codes(src) == ["GSP001"]


def test_shape_and_size_branches_are_not_tensor_branches():
    src = ("import torch\n"
           "class M(torch.nn.Module):\n"
           "    def forward(self, x):\n"
           "        if x.shape[0] > 1 and x.dim() == 2 and len(x) and torch.is_grad_enabled():\n"
           "            return x[0]\n"
           "        return int(x.shape[-1]) * x\n")
    assert codes(src) == []


def test_per_thread_define_in_cuda_source():
    assert codes("#define CUDA_API_PER_THREAD_DEFAULT_STREAM 1\n", "a.cu") == ["GSC007"]


@pytest.mark.parametrize("src", [
    'flags = ["-O3", "--default-stream=per-thread"]\nload("k", ["k.cu"], extra_cuda_cflags=flags)\n',
    'load("k", ["k.cu"], extra_cuda_cflags=["-O3"] + ["--default-stream", "per-thread"])\n',
    'CUDAExtension("k", ["k.cu"], extra_compile_args={"nvcc": ["-DCUDA_API_PER_THREAD_DEFAULT_STREAM"]})\n',
    'cmd = os.environ["NVCC_FLAGS"].replace("--default-stream legacy", "--default-stream per-thread")\n',
    'class B:\n    nvcc = ["--default-stream=per-thread"]\n    def go(self):\n        run(self.nvcc)\n'
    'def check(nvcc):\n    return "-G" in nvcc\n',  # another scope's name
    'os.system("/usr/local/cuda/bin/nvcc k.cu -O3 --default-stream per-thread -o k.o")\n',
    'os.environ["NVCC_APPEND_FLAGS"] = "-lineinfo -DCUDA_API_PER_THREAD_DEFAULT_STREAM"\n',
    'NVCC = ("--default-stream=per-thread",)\nif cmd.startswith("nvcc"):\n    run([cmd, *NVCC])\n',
    'load("k", ["k.cu"], extra_cuda_cflags=["-O3 -default-stream per-thread"])\n',
    'os.system("nvcc -O3 -o kern --default-stream per-thread kern.cu")\n',  # a flag's value without a dot
    'load("k", ["k.cu"], extra_cuda_cflags=["-D", "CUDA_API_PER_THREAD_DEFAULT_STREAM"])\n',
    'load("k", ["k.cu"], extra_cuda_cflags=["-O3 -D CUDA_API_PER_THREAD_DEFAULT_STREAM=1"])\n',
])
def test_per_thread_flag_set_in_a_build_is_reported(src):
    assert codes(src) == ["GSC007"]


@pytest.mark.parametrize("src", [
    'PER_THREAD = ("--default-stream=per-thread", "-DCUDA_API_PER_THREAD_DEFAULT_STREAM")\n'
    'def bad(arg):\n    return arg.startswith(PER_THREAD)\n',
    'def bad(args):\n    return "--default-stream=per-thread" in args or args == ["--default-stream", "per-thread"]\n',
    'def bad(flag):\n    return flag.replace("-DCUDA_API_PER_THREAD_DEFAULT_STREAM", "")\n',
    'HELP = "do not build with --default-stream per-thread"\n',  # prose, not a command line
])
def test_per_thread_flag_only_looked_for_is_not_reported(src):
    """A linter or a build check that searches for the flag does not set it (graphsafe's own rule table
    was reported before)."""
    assert codes(src) == []


_LAZY = "import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n{}        return x\n"


@pytest.mark.parametrize("body", [
    "        if self.buf is None:\n            self.buf = torch.empty_like(x)\n",
    "        if not hasattr(self, 'side'):\n            self.side = torch.cuda.Stream()\n",
    "        self.side = self.side or torch.cuda.Stream()\n",
    "        if self.buf is not None:\n            pass\n        else:\n            self.buf = torch.empty_like(x)\n",
    "        if hasattr(self, 'buf'):\n            pass\n        else:\n            self.buf = torch.empty_like(x)\n",
    "        if getattr(self, 'buf', None) is None:\n            self.buf = torch.empty_like(x)\n",
    "        if not getattr(self, 'buf', None):\n            self.buf = torch.empty_like(x)\n",
])
def test_state_set_once_on_the_first_call_is_not_reported(body):
    """A buffer or stream made on the first call (the warm-up before capture) and reused after: not
    per-call state."""
    assert codes(_LAZY.format(body)) == []


@pytest.mark.parametrize("body", [
    "        if self.buf is None or self.buf.shape != x.shape:\n            self.buf = torch.empty_like(x)\n",
    "        if self.buf is None:\n            pass\n        else:\n            self.buf = x\n",
    "        if self.other is None:\n            self.buf = torch.empty_like(x)\n",
    "        self.buf = x or self.buf\n",
    "        if getattr(self, 'buf', 0) is None:\n            self.buf = torch.empty_like(x)\n",
])
def test_state_set_again_in_captured_code_is_reported(body):
    assert codes(_LAZY.format(body)) == ["GSP004"]


def test_state_set_through_a_tuple_is_reported_per_attribute():
    assert codes(_LAZY.format("        self.a, (self.b) = x, x\n")) == ["GSP004", "GSP004"]


def test_capture_inside_another_block_without_warmup_is_reported():
    src = ("import torch\ndef capture(g, model, x):\n    with torch.no_grad():\n{}"
           "        with torch.cuda.graph(g):\n            return model(x)\n")
    assert codes(src.format("")) == ["GSP006"]
    assert codes(src.format("        model(x)\n")) == []  # warmed up inside the same outer block


def test_capture_without_warmup_points_at_the_graph_and_knows_runners_that_warm_up_elsewhere():
    src = ("import torch\ndef capture(g, model, x):\n"
           "    with keep_rng(), torch.cuda.graph(g):\n        return model(x)\n")
    found = lint_source(src.encode(), "x.py")[0]
    assert [(f.code, f.location.line, f.location.column) for f in found] == [("GSP006", 3, 22)]  # the graph itself
    assert codes(src + "def warmup(model, x):\n    model(x)\n") == []
    assert codes(src.replace("    with", "    self._warm_up(model)\n    with")) == []
    # names that only contain "warm", and warm-ups of other classes, are not this capture's warm-up
    for other in ("def swarm_step():\n    pass\n", "class R:\n    def warmup(self):\n        pass\n",
                  "def test_capture_without_warmup():\n    pass\n"):
        assert codes(src + other) == ["GSP006"], other
    assert codes(src.replace("    with", "    skip_warmup()\n    with")) == ["GSP006"]


def test_library_handle_bound_elsewhere_in_file_is_accepted():
    src = ("cublasHandle_t handle() { static cublasHandle_t h; cublasCreate(&h); return h; }\n"
           "void gemm(cudaStream_t s) { cublasSetStream(handle(), s); }\n")
    assert "GSC003" not in codes(src, "a.cu")
    assert "GSC003" in codes(src.replace("cublasSetStream(handle(), s)", "cublasSetStream(handle(), 0)"), "a.cu")


def test_static_stream_cache_is_reported():
    assert codes("static cudaStream_t s;\nvoid f() {}\n", "a.cu") == ["GSC002"]


@pytest.mark.parametrize("src, found", [
    ('__global__ void k(const float* x, float* y) { asm volatile("griddepcontrol.wait;"); y[0] = x[0]; }', True),
    ('__global__ void k() { __asm__ __volatile__("griddepcontrol.wait;" : : : ); }', True),
    ('__global__ void k() { asm volatile("griddepcontrol" ".wait;" ::: "cc"); }', True),
    ('#define PDL_WAIT() asm volatile("griddepcontrol.wait;")\n__global__ void k() { PDL_WAIT(); }', True),
    ('__global__ void k() { asm volatile("griddepcontrol.wait;" ::: "memory"); }', False),
    ('__global__ void k() { asm volatile("griddepcontrol" ".wait;" ::: "cc", "memory"); }', False),
    ('__global__ void k() { asm volatile("griddepcontrol.launch_dependents;"); }', False),
    ('__global__ void k() { cudaGridDependencySynchronize(); }', False),
    ('__global__ void k() { asm volatile("membar.gl;"); }', False),
])
def test_pdl_wait_without_memory_clobber(src, found):
    """GSC008: an inline-asm PDL wait is a compiler barrier only with a "memory" clobber (adjacent string
    literals and macros included); the trigger, the runtime call and other asm are not this rule's."""
    assert codes(src + "\n", "k.cu") == (["GSC008"] if found else [])


@pytest.mark.parametrize("src, found", [
    ("void op() { auto s = at::cuda::getCurrentCUDAStream(); s.synchronize(); }", ["`.synchronize()`"]),
    ("void op(at::cuda::CUDAEvent& e) { e.synchronize(); }", ["`.synchronize()`"]),
    ("void op() { c10::cuda::stream_synchronize(at::cuda::getCurrentCUDAStream()); }", ["`stream_synchronize`"]),
    ("void op() { torch::cuda::synchronize(); }", ["`synchronize`"]),
    ("void op(at::Tensor t) { c10::cuda::memcpy_and_sync(nullptr, nullptr, 4, cudaMemcpyDeviceToHost, 0); }",
     ["`memcpy_and_sync`"]),
    ("void op() { cudaDeviceSynchronize(); }", ["`cudaDeviceSynchronize`"]),
    ("void wait_for_gpu() { cudaDeviceSynchronize(); }", ["`cudaDeviceSynchronize`"]),  # a helper not named so
    # helpers whose own name says they synchronize: waiting is their job, their callers are reported
    ("void stream_synchronize(cudaStream_t s) { cudaStreamSynchronize(s); }", []),
    ("struct Event { void synchronize() const { cudaEventSynchronize(e_); } cudaEvent_t e_; };", []),
    ("struct G { void synchronizeDevice(int d) const { cudaDeviceSynchronize(); } };", []),
    ("int64_t memcpy_and_sync(at::Tensor t) { return t.item<int64_t>(); }", []),
    # not the host waiting: device code, a PDL wait, queries, a class's own stream-side synchronize()
    ("__global__ void k() { cg::this_grid().sync(); cudaGridDependencySynchronize(); }", []),
    ("__device__ void d() { cudaGridDependencySynchronize(); }", []),
    ("void op() { if (c10::cuda::warning_state().get_sync_debug_mode() != 0) {} }", []),
    ("struct W { void blockCurrentStream() { synchronize(); } void synchronize(); };", []),
    ("struct W { void blockCurrentStream() { this->synchronize(); } void synchronize(); };", []),
    ("void op(c10::ivalue::Future& f) { f.synchronizeWithCurrentStreams(); }", []),
    ("void op(WorkNCCL& w) { w.synchronizeStreams(); w.synchronizeStream(); }", []),
    ("bool op(int x) { return needs_synchronize(x) || should_synchronize(); }", []),
    # the helper's own name decides, not its class's, through templates and reference returns
    ("bool needs_synchronize(at::Tensor t) { return t.item<bool>(); }", ["`.item()`"]),
    ("template <typename T> void StreamSynchronize<T>::run() { cudaStreamSynchronize(s); t.item<int>(); }",
     ["`cudaStreamSynchronize`", "`.item()`"]),
    ("template <typename T> void Event<T>::synchronize() const { cudaEventSynchronize(e_); }", []),
    ("Foo& Foo::synchronize() noexcept { cudaDeviceSynchronize(); return *this; }", []),
    ("template <> void synchronize<int>() { cudaDeviceSynchronize(); }", []),
    ("struct G { void synchronizeStream(const Stream& s) const { CUDAStream c{s}; c.synchronize(); } };", []),
    # a call's name with template arguments earlier in the expression (PyTorch's BucketizationUtils.h)
    ("void op(at::Tensor t) { int64_t v = std::get<0>(t.aminmax()).item().toLong(); }", ["`.item()`"]),
    # a bare synchronize() that names torch::cuda::synchronize through a using-directive or -declaration in
    # a scope holding the call, made before it; not one in another function's scope, or after the call
    ("using namespace torch::cuda;\nvoid op() { synchronize(); }", ["`synchronize`"]),
    ("using torch::cuda::synchronize;\nvoid op() { synchronize(); }", ["`synchronize`"]),
    ("void op() { using namespace ::torch::cuda; synchronize(); }", ["`synchronize`"]),
    ("namespace ext { using namespace torch :: cuda; void op() { synchronize(); } }", ["`synchronize`"]),
    ("void a() { using namespace torch::cuda; }\nvoid op() { synchronize(); }", []),
    ("void op() { synchronize(); }\nusing namespace torch::cuda;", []),
    ("using namespace c10::cuda;\nvoid op() { synchronize(); }", []),
    ("using namespace torch::cuda;\nstruct W { void blockCurrentStream() { this->synchronize(); } void synchronize(); };",
     []),
])
def test_host_sync_names_and_sync_helpers(src, found):
    """GSC004 on what makes the host wait, by name: the CUDA calls, c10's helpers, a `.synchronize()` call
    (a stream's, an event's), torch::cuda::synchronize(); not inside such a helper's own definition, not in
    device code, not on a class's own synchronize() (c10d's Work makes a stream wait), not on names that
    only mention synchronizing."""
    got = [f.message.split(" ")[0] for f in lint_source((src + "\n").encode(), "op.cu")[0] if f.code == "GSC004"]
    assert got == found


_CAPTURED = ("import torch\nclass M(torch.nn.Module):\n    def forward(self, x, k, v):\n{}        return x\n"
             "g = torch.cuda.CUDAGraph()\nm = M()\nm(1, 2, 3)\nwith torch.cuda.graph(g):\n    m(1, 2, 3)\n")


@pytest.mark.parametrize("body", [
    "        if torch.onnx.is_in_onnx_export():\n            pass\n",
    "        if torch._C._get_tracing_state():\n            pass\n",
    "        if torch.cuda.device_count() > 1:\n            pass\n",
    "        if torch.cuda.get_device_capability() >= (9, 0):\n            pass\n",
    "        if torch.cuda.get_device_name().startswith('NVIDIA H100'):\n            pass\n",
    "        if x.device == torch.device('cpu'):\n            pass\n",
    "        if x.shape == torch.Size([2, 3]):\n            pass\n",
    "        world = int(torch.cuda.device_count())\n",
    "        a = k.repeat_interleave(4, dim=1)\n",
    "        b = torch.repeat_interleave(v, 4, dim=1)\n",
    "        c = torch.repeat_interleave(v, repeats=2)\n",
    "        d = k.repeat_interleave(v, output_size=8)\n",
    "        x[x < 0] = 0\n",
])
def test_host_values_and_static_shapes_are_not_reported(body):
    """torch calls that return flags, counts, devices or shapes are host values; ``repeat_interleave`` with a
    whole-number ``repeats`` and a masked store keep their shapes."""
    assert codes(_CAPTURED.format(body)) == []


@pytest.mark.parametrize("body, code", [
    ("        if torch.any(x > 0):\n            pass\n", "GSP005"),
    ("        c = k.repeat_interleave(v)\n", "GSP002"),
    ("        c = torch.repeat_interleave(v, k)\n", "GSP002"),
    ("        d = x[x < 0]\n", "GSP002"),
    ("        x[x > 0] += 1\n", "GSP002"),  # reads x[m] first: data-dependent
    ("        n = int(x.sum())\n", "GSP001"),
])
def test_tensor_values_and_data_dependent_shapes_still_are(body, code):
    assert codes(_CAPTURED.format(body)) == [code]
