"""The linter's rule table: stable codes, severities, explanations, and a bad and a good example each.

The tests run every example through the linter: the bad one must give its code, the good one must not.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    severity: str        # error: breaks or silently escapes capture; warning: hygiene or likely bug
    language: str        # "cuda" | "python" | "any"
    summary: str
    explanation: str
    bad: str
    good: str
    suffix: str = ".cu"  # file suffix for the examples


_R = [
    Rule("GSC001", "default-stream-work", "error", "cuda",
         "kernel launch, copy or memset on a default stream",
         """\
PyTorch captures CUDA graphs on a non-blocking stream. Work enqueued on the legacy default stream
(`<<<grid, block>>>` with no stream, stream `0`/`nullptr`, `cudaStreamLegacy`,
`at::cuda::getDefaultCUDAStream()`) or the per-thread default stream (`cudaStreamPerThread`) is not
part of that capture: it runs once while the graph is captured and never on replay, so outputs keep
their capture-time values (the seed case). The rule follows the stream value inside the function:
a parameter, the current stream, a variable assigned from them, `.stream()` of them, and a launch
config whose `.stream` is set from them are accepted; macros that forward a stream are accepted.""",
         "void run(float* x, int n) {\n  scale<<<n / 256, 256>>>(x, n);\n  C10_CUDA_KERNEL_LAUNCH_CHECK();\n}\n",
         "void run(float* x, int n) {\n  auto stream = at::cuda::getCurrentCUDAStream();\n"
         "  scale<<<n / 256, 256, 0, stream>>>(x, n);\n  C10_CUDA_KERNEL_LAUNCH_CHECK();\n}\n"),
    Rule("GSC002", "stream-created-in-op", "error", "cuda",
         "a stream is created inside an op or cached in a static/global",
         """\
A stream the op creates (or cached earlier) is not the stream being captured: work on it escapes
the capture, or joins it only if events fork and join it explicitly. A cached stream handle also
outlives the context that should use it (the current stream changes under capture).""",
         "void run(float* x) {\n  cudaStream_t s;\n  cudaStreamCreate(&s);\n  k<<<1, 1, 0, s>>>(x);\n"
         "  C10_CUDA_KERNEL_LAUNCH_CHECK();\n}\n",
         "void run(float* x) {\n  k<<<1, 1, 0, at::cuda::getCurrentCUDAStream()>>>(x);\n"
         "  C10_CUDA_KERNEL_LAUNCH_CHECK();\n}\n"),
    Rule("GSC003", "library-handle-unbound", "error", "cuda",
         "a cuBLAS/cuDNN/cuSPARSE/cuSOLVER handle is created but never bound to the current stream",
         """\
A library handle launches on the stream it is bound to, the legacy default stream until
`*SetStream` is called. Its work then escapes capture. PyTorch's own handles are bound to the
current stream on every `at::cuda::getCurrentCUDABlasHandle()`.""",
         "void gemm() {\n  cublasHandle_t h;\n  cublasCreate(&h);\n}\n",
         "void gemm() {\n  cublasHandle_t h;\n  cublasCreate(&h);\n"
         "  cublasSetStream(h, at::cuda::getCurrentCUDAStream());\n}\n"),
    Rule("GSC004", "host-sync-in-op", "error", "cuda",
         "a synchronization or synchronous copy inside an op",
         """\
`cudaDeviceSynchronize`, `cudaStreamSynchronize`, `cudaEventSynchronize`, synchronous
`cudaMemcpy`/`cudaMemset`, `cudaMemcpyToSymbol`, `tensor.item<T>()` and `tensor.cpu()` make the host
wait for the GPU, and so do the helpers around them: c10's `device_synchronize`,
`stream_synchronize`, `memcpy_and_sync`, the device guard's `synchronizeEvent`/`synchronizeDevice`,
any `.synchronize()` call (a stream's, an event's) and `torch::cuda::synchronize()` (also called bare
after `using namespace torch::cuda;` or `using torch::cuda::synchronize;`). A capturing
stream cannot be waited on: the capture fails with error 900 (or the copy runs outside the graph).
The finding goes where such a helper is called, not inside its own definition (nor inside a
`synchronizeStream`), where waiting is the function's job. Not reported: device code, the device-side
PDL wait (`cudaGridDependencySynchronize`), and a class calling its own `synchronize()` (c10d's
`Work::synchronize` makes a stream wait, not the host).""",
         "void run(float* d, const float* h, size_t n) {\n  cudaMemcpy(d, h, n, cudaMemcpyHostToDevice);\n}\n",
         "void run(float* d, const float* h, size_t n) {\n  cudaMemcpyAsync(d, h, n, cudaMemcpyHostToDevice, "
         "at::cuda::getCurrentCUDAStream());\n}\n"),
    Rule("GSC005", "raw-allocation-in-op", "error", "cuda",
         "raw cudaMalloc/cudaFree (or host/managed allocation) inside an op",
         """\
`cudaMalloc`/`cudaFree` are not stream-ordered: during capture they fail or synchronize, and memory
they return is not part of the graph's pool. Allocate through PyTorch's caching allocator
(`torch::empty`), which graph capture understands.""",
         "void run(int n) {\n  float* tmp;\n  cudaMalloc(&tmp, n * sizeof(float));\n}\n",
         "void run(const at::Tensor& x) {\n  auto tmp = torch::empty_like(x);\n}\n"),
    Rule("GSC006", "unchecked-launch", "warning", "cuda",
         "a kernel launch whose errors are never checked",
         """\
A failed launch (bad configuration, too much shared memory) reports nothing unless the error is
read: the op silently does nothing, which under a graph looks like a stale result. Check each
launch with `C10_CUDA_KERNEL_LAUNCH_CHECK()` or `cudaGetLastError()`.""",
         "void run(float* x, cudaStream_t s) {\n  k<<<1, 1, 0, s>>>(x);\n}\n",
         "void run(float* x, cudaStream_t s) {\n  k<<<1, 1, 0, s>>>(x);\n  C10_CUDA_KERNEL_LAUNCH_CHECK();\n}\n"),
    Rule("GSC007", "per-thread-default-stream", "error", "any",
         "nvcc flag or macro that makes the default stream per-thread",
         """\
`--default-stream per-thread` (or `CUDA_API_PER_THREAD_DEFAULT_STREAM`) sends default-stream work to
the per-thread stream, which does not synchronize with PyTorch's non-blocking capture stream: that
work escapes the graph exactly like a legacy-stream launch.""",
         "extra_cuda_cflags = [\"-O3\", \"--default-stream\", \"per-thread\"]\n",
         "extra_cuda_cflags = [\"-O3\"]\n", ".py"),
    Rule("GSC008", "pdl-wait-not-a-barrier", "warning", "cuda",
         "inline `griddepcontrol.wait` without a \"memory\" clobber",
         """\
Under programmatic dependent launch (PDL), which CUDA graphs keep as a programmatic edge, a kernel
starts while the kernel before it still runs; `griddepcontrol.wait` is the point after which that
kernel's writes are visible. Written as inline asm without a `"memory"` clobber, the wait is not a
compiler barrier: the compiler may move loads of the previous kernel's outputs above it, and the
kernel then reads them half-written, now and then, in replays as in eager runs. Add the clobber, or
call `cudaGridDependencySynchronize()`.""",
         "__global__ void scale(const float* x, float* y) {\n  asm volatile(\"griddepcontrol.wait;\");\n"
         "  y[threadIdx.x] = 2.0f * x[threadIdx.x];\n}\n",
         "__global__ void scale(const float* x, float* y) {\n  asm volatile(\"griddepcontrol.wait;\" ::: \"memory\");\n"
         "  y[threadIdx.x] = 2.0f * x[threadIdx.x];\n}\n"),
    Rule("GSP001", "host-sync-in-forward", "error", "python",
         "host synchronization in code that runs under capture",
         """\
`.item()`, `.tolist()`, `.cpu()`, `.numpy()`, `float()/int()/bool()` of a tensor and
`torch.cuda.synchronize()` wait for the GPU. Under capture they fail with CUDA error 900; even when
they do not, the host value is taken once at capture and frozen into the graph.""",
         "import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n"
         "        return x / x.abs().max().item()\n",
         "import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n"
         "        return x / x.abs().amax()\n", ".py"),
    Rule("GSP002", "dynamic-shape-in-forward", "error", "python",
         "an operation whose output shape depends on the data",
         """\
Boolean-mask indexing, `nonzero`, `masked_select`, `unique`, one-argument `torch.where` and
`repeat_interleave` with tensor repeats must read the data to know the output size: they synchronize
(capture fails) and a graph cannot replay a different shape. Not reported: a masked store (`x[m] = 0`
keeps x's shape) and `repeat_interleave` with a whole-number `repeats` or an `output_size`.""",
         "import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n        return x[x > 0].sum()\n",
         "import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n"
         "        return torch.where(x > 0, x, 0).sum()\n", ".py"),
    Rule("GSP003", "host-tensor-in-forward", "error", "python",
         "a tensor built from host data and copied to the GPU inside captured code",
         """\
`torch.tensor(..., device="cuda")` copies from pageable host memory: during capture the copy is
either rejected or recorded with the value of that moment, so every replay uses the capture-time
value.""",
         "import torch\nclass M(torch.nn.Module):\n    def forward(self, x, t):\n"
         "        return x / torch.tensor([t], device=\"cuda\")\n",
         "import torch\nclass M(torch.nn.Module):\n    def forward(self, x, t):\n        return x / t\n", ".py"),
    Rule("GSP004", "python-state-in-forward", "error", "python",
         "Python state updated in captured code",
         """\
Python code runs once, at capture. `self.step += 1`, `self.cache = y` or a `global` update in a
forward happens at capture and never again: replays see the state of the capture, and a rebound
attribute is a pointer the graph no longer uses. An attribute set only while unset (`if self.buf is
None: self.buf = torch.empty(...)`, the same through `getattr(self, "buf", None)`, `self.side = self.side or torch.cuda.Stream()`) is not reported: the
warm-up call before capture makes it, and the graph keeps using it. Made again for another shape
(`... or self.buf.shape != x.shape`), it is: a graph captured at the first shape keeps the freed buffer.""",
         "import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n        self.calls += 1\n"
         "        return x * 2\n",
         "import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n        self.calls.add_(1)\n"
         "        return x * 2\n", ".py"),
    Rule("GSP005", "tensor-branch-in-forward", "error", "python",
         "a Python branch on a tensor value in captured code",
         """\
`if x.sum() > 0:` reads a tensor value on the host (a synchronization) and picks one branch; the
graph records only the branch taken at capture and replays it for every input. Not reported: torch calls
that return host values (`torch.cuda.device_count()`, `torch.device(...)`, `torch.Size(...)`,
`torch.onnx.is_in_onnx_export()`, `torch.is_*`), and shapes and sizes.""",
         "import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n        if x.max() > 1:\n"
         "            x = x / 2\n        return x\n",
         "import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n"
         "        return torch.where(x.amax() > 1, x / 2, x)\n", ".py"),
    Rule("GSP006", "capture-without-warmup", "warning", "python",
         "CUDA-graph capture without a warm-up run",
         """\
The first call of a model does one-time work: lazy initialization, cuBLAS/cuDNN workspace and
autotuning, allocations, extension loading. Done during capture it is recorded (or breaks the
capture). Run the callable a few times on a side stream first, as the `torch.cuda.graph` docs
show. Not reported where the code warms up in a place of its own: a call before the capture to
something named for it (`self.warmup()`, `_warm_up(model)`), or a module function or a method of the
capturing class so named (runners that warm up in one method and capture in another).""",
         "import torch\ndef capture(model, x):\n    g = torch.cuda.CUDAGraph()\n"
         "    with torch.cuda.graph(g):\n        y = model(x)\n    return g, y\n",
         "import torch\ndef capture(model, x):\n    s = torch.cuda.Stream()\n    with torch.cuda.stream(s):\n"
         "        model(x)\n    g = torch.cuda.CUDAGraph()\n    with torch.cuda.graph(g):\n"
         "        y = model(x)\n    return g, y\n", ".py"),
    Rule("GSP007", "static-output-returned", "warning", "python",
         "a graph runner returns its static output buffer without a copy",
         """\
A replayed graph writes into the same output buffer every time. Returning that buffer itself hands
callers a tensor the next replay overwrites (the seed's `CUDAGraphRunner.forward`). Return a copy,
or document the aliasing explicitly.""",
         "class Runner:\n    def forward(self, x):\n        self.graph_input.copy_(x)\n"
         "        self.graph.replay()\n        return self.graph_output\n",
         "class Runner:\n    def forward(self, x):\n        self.graph_input.copy_(x)\n"
         "        self.graph.replay()\n        return self.graph_output.clone()\n", ".py"),
    Rule("GSX001", "unreadable-file", "warning", "any", "the file could not be read",
         "The path could not be opened or read (permissions, a broken symlink, a symlink loop, a device "
         "file). Nothing in it was checked.", "", ""),
    Rule("GSX002", "parse-error", "note", "any", "the file could not be parsed completely",
         "Python files with a syntax error are not checked. For C++/CUDA, tree-sitter recovers from "
         "errors and the rest of the file is checked; this note says how much it skipped, when that is "
         "more than a tenth of the file (macro-heavy code is a common cause). The file is then read a "
         "second time with one branch of each preprocessor conditional (the first, or the one after "
         "`#if 0`), which helps where the conditionals are the cause (a declaration split across `#if` "
         "branches), and, where that parses better still, with well-known attribute macros blanked "
         "(`C10_HOST_DEVICE`, `TORCH_API`, `CUTLASS_HOST_DEVICE`, ...); if that reading parses more, its "
         "findings are added to the first reading's and the note says so. A Python syntax error or an "
         "undecodable file is a warning.", "", ""),
    Rule("GSX003", "skipped-file", "warning", "any", "the file was skipped (binary or too large)",
         "Binary files and files above the size limit (`max-file-size` in `[tool.graphsafe]`, 10 MB by "
         "default) are not parsed.", "", ""),
]
RULES: dict[str, Rule] = {r.code: r for r in _R}
