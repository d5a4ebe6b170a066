"""The capture-trace analysis on hand-made kineto records (the real ones need a GPU)."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

torch = pytest.importorskip("torch")

from graphsafe.doctor import frames  # noqa: E402
from graphsafe.doctor.trace import CALIBRATE, WINDOW, TraceResult, analyse, short_kernel_name  # noqa: E402

CPU, CUDA = torch._C._autograd.DeviceType.CPU, torch._C._autograd.DeviceType.CUDA


@dataclass
class Ev:
    n: str
    dev: object
    t: int
    dur: int = 1
    corr: int = 0
    link: int = 0
    res: int = 0
    tid: int = 1
    ann: bool = False

    def name(self): return self.n
    def device_type(self): return self.dev
    def start_ns(self): return self.t
    def duration_ns(self): return self.dur
    def correlation_id(self): return self.corr
    def linked_correlation_id(self): return self.link
    def device_resource_id(self): return self.res
    def start_thread_id(self): return self.tid
    def is_user_annotation(self): return self.ann


@dataclass
class Frame:
    file_name: str
    line_number: int
    function_name: str


@dataclass
class Extra:
    caller: Frame


class Kind:
    def __init__(self, name): self.name = name


@dataclass
class Node:
    kind: str
    name: str
    start_time_ns: int
    end_time_ns: int
    caller: Frame | None = None
    start_tid: int = 1
    children: list = field(default_factory=list)

    @property
    def typed(self):
        return (Kind(self.kind), Extra(self.caller) if self.caller else None)


class Results:
    def __init__(self, events, tree): self._e, self._t = events, tree
    def events(self): return self._e
    def experimental_event_tree(self): return self._t


def make(user_file):
    events = [
        Ev(CALIBRATE + "legacy", CPU, 10, 10), Ev("cudaLaunchKernel", CPU, 12, corr=1), Ev("fill", CUDA, 14, corr=1, res=7),
        Ev(CALIBRATE + "per_thread", CPU, 30, 10), Ev("cudaLaunchKernel_ptsz", CPU, 32, corr=2),
        Ev("fill", CUDA, 34, corr=2, res=13),
        Ev(CALIBRATE + "capture", CPU, 50, 10), Ev("cudaLaunchKernel", CPU, 52, corr=3), Ev("fill", CUDA, 54, corr=3, res=21),
        Ev(WINDOW, CPU, 100, 100),
        Ev("cudaLaunchKernel", CPU, 120, corr=4),  # captured: no GPU record
        Ev("cudaLaunchKernel", CPU, 150, corr=5), Ev("void my_kernel<float>(float*, int)", CUDA, 400, corr=5, res=7),
        Ev("cudaLaunchKernel", CPU, 160, corr=6), Ev("void my_kernel<float>(float*, int)", CUDA, 410, corr=6, res=7),
        Ev("cudaMemsetAsync", CPU, 170, corr=7), Ev("Memset (Device)", CUDA, 420, corr=7, res=55),
        Ev(WINDOW, CUDA, 400, 50, ann=True),  # the GPU-side shadow of the marker: not work
    ]
    inner = Node("PyCCall", "<built-in method my_op of PyCapsule object at 0x1>", 140, 180,
                 caller=Frame(user_file, 9, "my_op_wrapper"))
    wrapper = Node("PyCall", f"{user_file}(8): my_op_wrapper", 130, 190, caller=Frame(user_file, 30, "forward"),
                   children=[inner])
    op = Node("TorchOp", "aten::mul", 110, 125)
    fwd = Node("PyCall", f"{user_file}(29): forward", 105, 195, caller=Frame("torch/nn/modules/module.py", 1, "_call"),
               children=[op, wrapper])
    return Results(events, [fwd])


def test_escaped_work_is_found_named_and_placed(tmp_path):
    user = str(tmp_path / "model.py")
    (tmp_path / "model.py").write_text("x\n" * 40)
    r = analyse(make(user), TraceResult())
    assert r.error is None
    assert r.stream_ids == {"legacy": 7, "per_thread": 13, "capture": 21}
    assert r.launches_in_window == 4
    kernel, memset = sorted(r.escaped, key=lambda o: o.kind)
    assert kernel.short_name == "my_kernel" and kernel.count == 2 and kernel.stream_role == "legacy"
    assert kernel.entry == "my_op" and kernel.api == "cudaLaunchKernel"
    assert (kernel.callsite.file, kernel.callsite.line) == (user, 9)
    assert [(s.line, s.function) for s in kernel.stack] == [(9, "my_op_wrapper"), (30, "forward")]
    assert memset.kind == "memset" and memset.stream_role == "other" and "CUPTI stream 55" in memset.stream
    assert r.last_entered == "aten::mul"  # the last operator entered (C calls are not operators)


def test_missing_window_marker_is_an_error_not_silence():
    r = analyse(Results([Ev("fill", CUDA, 1)], []), TraceResult())
    assert r.error and "marker" in r.error and r.escaped == []


def test_short_kernel_names():
    assert short_kernel_name("void ns::k<float, 4>(float*, int)") == "ns::k"
    assert short_kernel_name("scale_andquant_kernel(__half const*, unsigned char*)") == "scale_andquant_kernel"
    assert short_kernel_name("Memcpy HtoD (Pageable -> Device)") == "Memcpy HtoD (Pageable -> Device)"


def test_frames_helpers(tmp_path):
    assert frames.c_function_name("<built-in method sym_quant_fuse of PyCapsule object at 0x7f>") == "sym_quant_fuse"
    assert frames.c_function_name("<built-in function len>") == "len"
    assert not frames.is_user("torch/nn/modules/module.py")
    assert not frames.is_user("<frozen runpy>")
    assert frames.is_user(str(tmp_path / "mine.py"))
    import graphsafe.doctor.check as chk
    import graphsafe.cases.seed.model as seed_model
    assert not frames.is_user(chk.__file__)
    assert frames.is_user(seed_model.__file__)
