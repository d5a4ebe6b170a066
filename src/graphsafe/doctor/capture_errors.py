"""CUDA's stream-capture error codes (900-908), recognised from exception text and explained.

The descriptions are the strings ``cudaGetErrorString`` returns (a GPU test compares them with
cuda-bindings); the plain-words explanations are graphsafe's.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CaptureError:
    code: int
    name: str
    description: str  # cudaGetErrorString text, as it appears in PyTorch's exception messages
    plain: str        # what it means for the user


CAPTURE_ERRORS = [
    CaptureError(900, "cudaErrorStreamCaptureUnsupported",
                 "operation not permitted when stream is capturing",
                 "an operation that cannot be recorded in a graph (a synchronization, a synchronous "
                 "copy, a raw allocation) was called while the stream was capturing"),
    CaptureError(901, "cudaErrorStreamCaptureInvalidated",
                 "operation failed due to a previous error during capture",
                 "an earlier error already invalidated this capture; the first failing operation is "
                 "the cause"),
    CaptureError(902, "cudaErrorStreamCaptureMerge",
                 "operation would result in a merge of separate capture sequences",
                 "work joined two separate captures (e.g. an event recorded in one capture was waited "
                 "on in another)"),
    CaptureError(903, "cudaErrorStreamCaptureUnmatched",
                 "capture was not ended in the same stream as it began",
                 "the capture was ended on a different stream from the one it began on"),
    CaptureError(904, "cudaErrorStreamCaptureUnjoined",
                 "capturing stream has unjoined work",
                 "a side stream forked from the capture was never joined back before capture end"),
    CaptureError(905, "cudaErrorStreamCaptureIsolation",
                 "dependency created on uncaptured work in another stream",
                 "captured work was made to wait on work outside the capture (e.g. an event recorded "
                 "on a stream that is not capturing)"),
    CaptureError(906, "cudaErrorStreamCaptureImplicit",
                 "operation would make the legacy stream depend on a capturing blocking stream",
                 "a launch on the legacy default stream would have had to wait for a capturing "
                 "blocking stream"),
    CaptureError(907, "cudaErrorCapturedEvent",
                 "operation not permitted on an event last recorded in a capturing stream",
                 "an event recorded during capture was queried or synchronized on from the host"),
    CaptureError(908, "cudaErrorStreamCaptureWrongThread",
                 "attempt to terminate a thread-local capture sequence from another thread",
                 "a thread-local capture was ended from a different thread"),
]
# Faults: sticky errors that leave the CUDA context unusable for the rest of the process.
FAULTS = [
    CaptureError(700, "cudaErrorIllegalAddress", "an illegal memory access was encountered",
                 "a kernel read or wrote memory outside any allocation (a stale or freed pointer, an "
                 "out-of-range index, a grid larger than the data)"),
    CaptureError(710, "cudaErrorAssert", "device-side assert triggered",
                 "a kernel's device-side assertion failed (e.g. an index out of range in an embedding "
                 "or gather)"),
    CaptureError(716, "cudaErrorMisalignedAddress", "misaligned address",
                 "a kernel accessed memory with an address not aligned to the access size"),
    CaptureError(715, "cudaErrorIllegalInstruction", "an illegal instruction was encountered",
                 "a kernel executed an illegal instruction (often a trap or a corrupted function pointer)"),
    CaptureError(719, "cudaErrorLaunchFailure", "unspecified launch failure",
                 "a kernel faulted while running (an exception on the device)"),
    CaptureError(702, "cudaErrorLaunchTimeout", "the launch timed out and was terminated",
                 "a kernel ran past the watchdog limit and was stopped"),
]
BY_CODE = {e.code: e for e in CAPTURE_ERRORS + FAULTS}

# PyTorch raises its own messages for some capture-unsafe calls before CUDA sees them.
_TORCH_MESSAGES = [
    ("during CUDA graph capture", 900),
    ("operation not permitted when stream is capturing", 900),
    ("Cannot copy between CPU and CUDA tensors during CUDA graph capture", 900),
]


def recognise(message: str) -> CaptureError | None:
    """Return the capture error that ``message`` reports, or None if it is not one."""
    for e in CAPTURE_ERRORS + FAULTS:
        if e.name in message or e.description in message:
            return e
    for text, code in _TORCH_MESSAGES:
        if text in message:
            return BY_CODE[code]
    return None
