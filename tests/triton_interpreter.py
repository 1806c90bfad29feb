"""Run flash-linear-attention's Triton kernels on CPU tensors through Triton's interpreter.

CI has no GPU, yet the fla integration (argument order, signs, state layout, dtypes, the backward)
must be checked there. Triton's interpreter (`TRITON_INTERPRET=1`) executes `@triton.jit` kernels
with NumPy, one program instance at a time. fla 0.6.0 on triton 3.7.1 (the triton CUDA torch 2.13.0
pins) needs five patches to run under it; they live here, never in the library:

1. The autotuner asks the active GPU driver for a benchmarker; there is none. Timing is meaningless
   in the interpreter anyway, so every config "takes" zero time and the first one is used.
2. fla aliases `gather = tl.gather`. The interpreter swaps the builtins of `triton.language` while
   a kernel runs, but the alias still points at the original builtin, which then refuses to run
   outside a compiler ("Did you forget to add @triton.jit ?"). A `@triton.jit` wrapper calling
   `tl.gather` resolves through the patched module.
3. Compiled Triton makes the index of a `range`/`tl.range` loop a tensor; the interpreter leaves it a
   Python int, so kernels calling methods on it (`i_t.to(tl.int64)` in fla's
   `chunk_dplr_fwd_kernel_h`) fail. The interpreter already rewrites each kernel's AST (every
   assignment becomes `interpreter_semantic.to_tensor(...)`); one more rule makes each such loop
   index a tensor as the compiler does. `tl.static_range` indices stay ints, as compiled.
4. triton 3.7.1's interpreter cannot make a bf16 constant (`InterpreterBuilder.get_bf16` is missing;
   bf16 inputs reach one through `x * 0.5`-style arithmetic); it is added as triton 3.9 defines it.
5. The interpreter keeps bf16 data as its uint16 bit patterns, and its arithmetic, math functions
   and `tl.dot` compute on those integers (3.7.1 and 3.9.0 alike): fla's bf16 outputs come out ~1e11.
   bf16 operands are widened to fp32 and results rounded back to bf16 (nearest even), as the GPU
   does; `tl.dot` keeps its fp32 accumulator (exact products, fp32 sums, like the bf16 MMA).
   Reductions (`tl.sum`) and `tl.clamp` over bf16 are not widened: fla's RWKV-7 kernels reduce fp32.

`triton.jit` decides when a function is decorated whether it is compiled or interpreted, and triton's
own helpers (`tl.sum`, `tl.cdiv`, ...) are decorated when triton is imported, which Lightning and
torch._dynamo do early. So `TRITON_INTERPRET=1` must be set before anything imports triton:
tests/conftest.py sets it on machines without CUDA (where no Triton kernel can run compiled anyway);
importing this module sets it if triton is not yet imported, and `enable()` refuses if it was too late.
"""

from __future__ import annotations

import ast
import contextlib
import os
import sys
from collections.abc import Iterator
from types import ModuleType

import numpy as np

if "triton" not in sys.modules:
    os.environ["TRITON_INTERPRET"] = "1"

import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from triton.runtime import autotuner, interpreter  # noqa: E402


class LoopIndexAsTensor:
    """Mixin for the interpreter's AST rewriter: `for i in range(...)` binds i as a tensor."""

    LOOPS = ("range",)  # `range` and `tl.range`; not `tl.static_range`

    def visit_For(self, node: ast.For) -> ast.For:
        node = self.generic_visit(node)
        func = node.iter.func if isinstance(node.iter, ast.Call) else None
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        if name in self.LOOPS and isinstance(node.target, ast.Name):
            index = node.target.id
            to_tensor = ast.Attribute(value=ast.Name(id="interpreter_semantic", ctx=ast.Load()), attr="to_tensor", ctx=ast.Load())
            cast = ast.Assign(
                targets=[ast.Name(id=index, ctx=ast.Store())],
                value=ast.Call(func=to_tensor, args=[ast.Name(id=index, ctx=ast.Load()), ast.Constant(value=False)], keywords=[]),
            )
            node.body.insert(0, ast.copy_location(cast, node))
        return node


@triton.jit
def gather(src, index, axis):
    return tl.gather(src, index, axis)


def _bf16_constant(builder, value):
    return builder.create_fp_trunc(builder.get_fp32(value), tl.bfloat16)


def _to_fp32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _to_bf16(values: np.ndarray) -> np.ndarray:
    """Round to nearest even, as the GPU's conversion does."""
    bits = np.asarray(values, dtype=np.float32).view(np.uint32)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def _widened(handle):
    return interpreter.TensorHandle(_to_fp32(handle.data), tl.float32) if handle.dtype.scalar == tl.bfloat16 else handle


def _bf16_result(out: np.ndarray):
    if out.dtype == np.bool_:  # comparisons: the interpreter's own convention for their result
        return interpreter.TensorHandle(out.astype(np.uint16), tl.bfloat16)
    return interpreter.TensorHandle(_to_bf16(out), tl.bfloat16)


def _bf16_arithmetic(builder_cls) -> None:
    binary_op, unary_op, create_fma, create_dot = (
        builder_cls.binary_op, builder_cls.unary_op, builder_cls.create_fma, builder_cls.create_dot
    )

    def binary(self, lhs, rhs, op):
        if lhs.dtype.scalar != tl.bfloat16 or op in (np.bitwise_and, np.bitwise_or, np.bitwise_xor):
            return binary_op(self, lhs, rhs, op)
        return _bf16_result(op(_widened(lhs).data, _widened(rhs).data))

    def unary(self, arg, op):
        if arg.dtype.scalar != tl.bfloat16:
            return unary_op(self, arg, op)
        return _bf16_result(op(_widened(arg).data))

    def fma(self, x, y, z):
        if z.dtype.scalar != tl.bfloat16:
            return create_fma(self, x, y, z)
        return _bf16_result(_widened(x).data * _widened(y).data + _widened(z).data)

    def dot(self, a, b, *args):  # bf16 MMA: exact products, fp32 accumulation
        return create_dot(self, _widened(a), _widened(b), *args)

    builder_cls.binary_op, builder_cls.unary_op, builder_cls.create_fma, builder_cls.create_dot = binary, unary, fma, dot
    builder_cls.bf16_arithmetic = True


_TF32_DOTS = [False]


@contextlib.contextmanager
def tf32_dots() -> Iterator[None]:
    """Inside: fp32 `tl.dot` operands read as a GPU's tensor cores read them in TF32, Triton's default
    precision for fp32 dots where the GPU has it (the 13 low mantissa bits dropped). Not a patch the
    kernels need: it sizes tests/test_gpu.py's fp32 tolerance for fla's chunk kernel."""
    _TF32_DOTS[0] = True
    try:
        yield
    finally:
        _TF32_DOTS[0] = False


def _tf32_operands(builder_cls) -> None:
    create_dot = builder_cls.create_dot

    def dot(self, a, b, d, input_precision, *rest):
        if _TF32_DOTS[0] and a.dtype.scalar == tl.float32 and getattr(input_precision, "name", None) == "TF32":
            a, b = (interpreter.TensorHandle((x.data.view(np.uint32) & np.uint32(0xFFFFE000)).view(np.float32), x.dtype)
                    for x in (a, b))
        return create_dot(self, a, b, d, input_precision, *rest)

    builder_cls.create_dot = dot
    builder_cls.tf32_operands = True


def _no_timing(kernel_call, quantiles):
    return [0.0] * len(quantiles)


def enable() -> ModuleType:
    """Patch Triton's interpreter for fla, import and return `fla.ops.rwkv7` (its kernels interpreted)."""
    if not triton.knobs.runtime.interpret:
        raise RuntimeError(
            "triton was imported before TRITON_INTERPRET=1 was set, so its own @triton.jit helpers are "
            "compiled ones; set it before anything imports triton (tests/conftest.py does on machines without CUDA)"
        )
    autotuner.Autotuner.do_bench = property(lambda self: _no_timing)  # patch 1
    if not hasattr(interpreter.InterpreterBuilder, "get_bf16"):  # patch 4 (triton < 3.9)
        interpreter.InterpreterBuilder.get_bf16 = _bf16_constant
    if not getattr(interpreter.InterpreterBuilder, "bf16_arithmetic", False):  # patch 5
        _bf16_arithmetic(interpreter.InterpreterBuilder)
    if not getattr(interpreter.InterpreterBuilder, "tf32_operands", False):  # `tf32_dots` (off unless asked)
        _tf32_operands(interpreter.InterpreterBuilder)
    if not isinstance(interpreter.FunctionRewriter.ast_transformer, LoopIndexAsTensor):  # patch 3
        rewriter = type("InterpreterRewriter", (LoopIndexAsTensor, interpreter.ASTTransformer), {})
        interpreter.FunctionRewriter.ast_transformer = rewriter()

    import fla.ops.rwkv7

    for name, module in list(sys.modules.items()):  # patch 2
        if name.startswith("fla.") and getattr(module, "gather", None) is tl.gather:
            module.gather = gather
    return fla.ops.rwkv7
