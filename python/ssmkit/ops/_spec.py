"""One description per op (:class:`Op`), and everything that follows from it.

An op is described once: its arguments in the order of its torch schema (tensors with
their kind and shape symbols such as ``batch H N``, sizes, options) and its results with
their shapes and kinds. From that description follow

- the torch custom op ``ssmkit::<name>`` (schema, kernel, fake kernel), and for an op
  with ``out=`` also ``<name>_`` (updates the input ``out`` may alias in place) and
  ``<name>_out`` (writes into ``out``): one mechanism for every op that has ``out=``;
- the argument checks of the fake kernels, which never reach the compiled core's own;
- the allocation of the results, for torch and for NumPy or CuPy arrays;
- the public entry: the NumPy/CuPy path, the custom op, or in eager inference on the CPU
  (:func:`direct_call_ok`) the custom op's kernel without the dispatcher, and for the
  per-sample ops (``direct``) the compiled core with results allocated like the inputs.

The compiled core's function takes the tensors and sizes in the schema's order, then
the results (None for one that is not needed), then the options (flags, method).
"""

from __future__ import annotations

import operator

import numpy as np

from ._common import array_module, array_stream, as_array, device_of, direct_call_ok, plain, run_core, torch, use_torch

COMPLEX = "complex"  # complex64 or complex128: the op's precision, fixed by its reference tensor
REAL = "real"  # the real dtype of that precision (float32 with complex64)
REAL_OR_COMPLEX = "real or complex"  # either of the two

_REAL = {np.dtype(np.complex64): np.dtype(np.float32), np.dtype(np.complex128): np.dtype(np.float64)}


class Tensor:
    """A tensor argument or result.

    dims: its shape symbols, "batch H N"; a leading "..." stands for leading dimensions
    that broadcast across the op's "..." tensors. optional: None is allowed. real_if: the
    flag argument that makes this complex tensor real (vandermonde's conj_pairs). like: a
    result whose dtype is that input's. schema_name: the name in the torch schema where
    it differs from the name errors use.
    """

    def __init__(self, name, kind, dims, *, optional=False, real_if=None, like=None, schema_name=None):
        self.name, self.kind, self.optional, self.real_if, self.like = name, kind, optional, real_if, like
        self.dims = tuple(dims.split())
        self.batched = self.dims[:1] == ("...",)
        self.sizes = self.dims[1:] if self.batched else self.dims
        self.layout = "(" + ", ".join(self.dims) + ("," if len(self.dims) == 1 else "") + ")"
        self.schema = f"{'Tensor?' if optional else 'Tensor'} {schema_name or name}"


class Size:
    """A non-negative integer argument; it also gives the shape symbol of its name."""

    def __init__(self, name):
        self.name, self.schema = name, f"SymInt {name}"

    def normalize(self, n):
        if isinstance(n, (bool, float)):
            raise TypeError(f"{self.name}: expected a non-negative integer length, got {type(n).__name__} {n!r}")
        try:
            n = operator.index(n)
        except TypeError:
            raise TypeError(f"{self.name}: expected a non-negative integer length, got {type(n).__name__}") from None
        if n < 0:
            raise ValueError(f"{self.name}: expected a non-negative integer length, got {n}")
        return n


class Flag:
    """A bool option."""

    def __init__(self, name):
        self.name, self.schema = name, f"bool {name}"

    def normalize(self, value):
        return bool(value)


class Choice:
    """A str option, one of values."""

    def __init__(self, name, values):
        self.name, self.values, self.schema = name, tuple(values), f"str {name}"

    def normalize(self, value):
        if value not in self.values:
            expected = " or ".join(f'"{v}"' for v in self.values)
            raise ValueError(f"{self.name}: expected {expected}, got {value!r}")
        return value


class Needs:
    """Which results a backward op computes (bool[], one per result); the others come back empty."""

    name, schema = "needs", "bool[] needs"


NEEDS = Needs()


def _shape(a) -> tuple:
    try:
        return tuple(a.shape)
    except AttributeError:
        return np.shape(a)


def _empty_like(t, dtype):
    return torch.empty_like(t, dtype=dtype, memory_format=torch.contiguous_format)


def _dtype_name(dtype) -> str:
    return str(dtype).replace("torch.", "")


class Op:
    """The description of one op; calling it is the op's public entry.

    params: the arguments in schema order (Tensor, Size, Flag, Choice, Needs). results:
    Tensors. core: the compiled core's function. ref: the tensor that fixes the precision
    and device (default: the first complex one; a real one for an op on real arrays).
    contiguous: the core reads contiguous inputs only (copies are made where needed). out: the result that
    ``out=`` receives, and in_place the input it may be (then updated in place). train:
    the op is inference only; its backward raises, naming what to train with. direct:
    eager inference on CPU calls the core directly (per-sample ops, where the dispatch
    costs more than the work); every result must then be shaped like an input.
    """

    def __init__(self, name, core, params, results, *, ref=None, contiguous=False, out=None, in_place=None,
                 train=None, direct=False):  # fmt: skip
        self.name, self.core, self.params, self.results = name, core, tuple(params), tuple(results)
        self.contiguous, self.train = contiguous, train
        index = {p.name: i for i, p in enumerate(self.params)}
        self._tensors = [i for i, p in enumerate(self.params) if isinstance(p, Tensor)]
        self._ref = index[ref] if ref else next(i for i in self._tensors if self.params[i].kind == COMPLEX)
        self._inputs = [i for i, p in enumerate(self.params) if isinstance(p, (Tensor, Size))]
        self._options = [i for i, p in enumerate(self.params) if isinstance(p, (Flag, Choice))]
        self._scalars = [i for i, p in enumerate(self.params) if isinstance(p, (Size, Flag, Choice))]
        self._needs = index.get("needs")
        # shape symbols are bound from the reference first, then in schema order; allocation
        # reads only the inputs that give the results' symbols or leading dimensions
        self._order = [self._ref] + [i for i in self._inputs if i != self._ref]
        wanted, given = {s for r in results for s in r.sizes}, set()
        self._shape_order = []
        for i in self._order:
            p = self.params[i]
            syms = {p.name} if isinstance(p, Size) else set(p.sizes)
            if isinstance(p, Size) or p.batched or (wanted & syms) - given:
                self._shape_order.append(i)
                given |= set() if getattr(p, "optional", False) else syms
        self._is_tensor = tuple(isinstance(p, Tensor) for p in self.params)
        self._real_if = {p.real_if: index[p.real_if] for p in self.params + self.results
                         if isinstance(p, Tensor) and p.real_if}  # fmt: skip
        self._like = {r.like: index[r.like] for r in self.results if r.like}
        names = [r.name for r in self.results]
        self._out = names.index(out) if out else None
        self._in_place = index[in_place] if in_place else None
        # a result shaped like a required input (same symbols, no "...") is allocated like it
        self._twin = [next((i for i in self._tensors if not self.params[i].optional and not r.batched
                            and (self.params[i].dims, self.params[i].kind) == (r.dims, r.kind)), None)
                      for r in self.results]  # fmt: skip
        self._all_twinned = None not in self._twin
        if direct:
            assert self._all_twinned and not self._options and self._needs is None, f"{self.name}: no direct path"
        self._direct = tuple(self._twin) if direct else None

    # ---- shapes, dtypes, checks ---------------------------------------------------------

    def _result_shapes(self, args, strict: bool = False) -> list:
        """The results' shapes from the inputs' (a symbol takes its first value). strict:
        every input must agree with the values bound so far (the fake kernels' check)."""
        sizes: dict[str, tuple] = {}  # symbol -> (value, the input that bound it)
        batch: list = []
        for i in self._order if strict else self._shape_order:
            p, a = self.params[i], args[i]
            if a is None:
                continue
            if p.__class__ is Size:
                sizes.setdefault(p.name, (a, p.name))
                continue
            shape = _shape(a)
            k = len(shape) - len(p.sizes)  # leading dimensions
            if k < 0 or (k and not p.batched):
                raise ValueError(f"{p.name}: expected an array of shape {p.layout}, got shape {shape}")
            if p.batched:
                batch.append((p.name, shape, shape[:k]))
            for sym, d in zip(p.sizes, shape[k:]):
                bound = sizes.get(sym)
                if bound is None:
                    sizes[sym] = (d, p.name)
                elif strict and bound[0] != d:
                    raise ValueError(f"{p.name}: expected shape {p.layout} with {sym} = {bound[0]} as in "
                                     f"{bound[1]}, got shape {shape}")  # fmt: skip
        lead = ()
        if batch:
            try:
                lead = tuple(np.broadcast_shapes(*(b for _, _, b in batch)))
            except ValueError:
                desc = ", ".join(f"{n} of shape {s}" for n, s, _ in batch)
                raise ValueError(
                    f"{self.name}: the leading dimensions of the inputs must broadcast together; got {desc}"
                ) from None
        return [(lead if r.batched else ()) + tuple(sizes[s][0] for s in r.sizes) for r in self.results]

    def _is_real(self, t, args) -> bool:
        return t.kind == REAL or (t.real_if is not None and bool(args[self._real_if[t.real_if]]))

    def check(self, args) -> None:
        """The compiled core's checks of dtype, device and shape, on torch tensors.

        For the fake kernels (under torch.compile and on the meta device they never reach
        the core) and for ops written in PyTorch: the reference is complex64 or
        complex128 (float32 or float64 when it is real), the other tensors of its
        precision (complex, real or either as described) and on its device, shapes agree
        on every symbol, options are valid."""
        rp, ref = self.params[self._ref], args[self._ref]
        if rp.kind == REAL:  # an op on real arrays: the reference is float32 or float64
            if ref.dtype not in (torch.float32, torch.float64):
                raise TypeError(f"{rp.name}: expected a float32 or float64 tensor, got {_dtype_name(ref.dtype)}")
        elif ref.dtype not in (torch.complex64, torch.complex128):
            raise TypeError(f"{rp.name}: expected a complex64 or complex128 tensor, got {_dtype_name(ref.dtype)}")
        cplx, real = ref.dtype.to_complex(), ref.dtype.to_real()
        for i in self._tensors:
            p, t = self.params[i], args[i]
            if t is None or i == self._ref:
                continue
            if p.kind == REAL_OR_COMPLEX:
                if t.dtype not in (real, cplx):
                    raise TypeError(f"{p.name}: expected {_dtype_name(real)} or {_dtype_name(cplx)} to match "
                                    f"{rp.name}, got {_dtype_name(t.dtype)}")  # fmt: skip
            elif self._is_real(p, args):
                if t.dtype != real:
                    raise TypeError(f"{p.name}: expected {_dtype_name(real)} (the real dtype of {rp.name}), "
                                    f"got {_dtype_name(t.dtype)}")  # fmt: skip
            elif t.dtype != cplx:
                raise TypeError(f"{p.name}: expected {_dtype_name(cplx)} like {rp.name}, got {_dtype_name(t.dtype)}")
            if t.device != ref.device:
                raise ValueError(f"{p.name}: expected a tensor on {ref.device} like {rp.name}, got one on {t.device}")
        for i in self._options:
            self.params[i].normalize(args[i])
        self._result_shapes(args, strict=True)

    def _allocate(self, args, new, like, cplx, real, skip=None) -> list:
        """The results: like(twin, dtype) for one shaped like an input, else new(shape, dtype);
        those not needed are empty, the one at skip is None."""
        shapes: list = [] if self._all_twinned else self._result_shapes(args)  # twins need none
        needs = None if self._needs is None else args[self._needs]
        out: list = []
        for j, (r, twin) in enumerate(zip(self.results, self._twin)):
            if j == skip:
                out.append(None)
                continue
            if r.like:
                dtype = getattr(args[self._like[r.like]], "dtype", None)
            else:
                dtype = real if self._is_real(r, args) else cplx
            if needs is not None and not needs[j]:
                out.append(new((0,), dtype=dtype))
            else:
                out.append(new(shapes[j], dtype=dtype) if twin is None else like(args[twin], dtype))
        return out

    def _torch_results(self, args, skip=None) -> list:
        ref = args[self._ref]
        # a real reference's complex partner; any other dtype as it is (the core names it)
        cplx = ref.dtype.to_complex() if ref.dtype.is_floating_point else ref.dtype
        return self._allocate(args, ref.new_empty, _empty_like, cplx, ref.dtype.to_real(), skip)

    def _returned(self, results: list, skip=None):
        if skip is not None:  # the result out= received: the caller has it
            del results[skip]
        return results[0] if len(results) == 1 else tuple(results)

    def _core_args(self, inputs, results, needs=None) -> list:
        if needs is not None:
            results = [r if need else None for r, need in zip(results, needs)]
        return [inputs[i] for i in self._inputs] + list(results) + [inputs[i] for i in self._options]

    # ---- the public entry ---------------------------------------------------------------

    def __call__(self, *args, out=None):
        """Torch tensors go through the custom op (in eager inference, its kernel alone);
        arrays (NumPy, CuPy, anything with __dlpack__) through the compiled core with
        results allocated here; mixing the two is an error. out: see the class."""
        eager = direct_call_ok([args[i] for i in self._tensors] + [out])  # eager inference: skip the dispatch
        if eager and self._direct is not None:
            # contiguous inputs (direct_call_ok): empty_like gives contiguous results, at less cost than torch.empty
            if out is None:
                results = [torch.empty_like(args[i]) for i in self._direct]
            else:
                results = [out if j == self._out else torch.empty_like(args[i]) for j, i in enumerate(self._direct)]
            self.core(*args, *results)
            if out is not None:  # as the mutating custom op would, for autograd's checks
                torch.autograd.graph.increment_version(out)
            return tuple(results)
        if self._scalars:
            args = tuple(self.params[i].normalize(a) if i in self._scalars else a for i, a in enumerate(args))
        if eager and out is None:  # the custom op's own kernel, without the dispatcher around it
            return self._eager_kernel(*args)
        named = {self.params[i].name: args[i] for i in self._tensors if args[i] is not None}
        if out is not None:
            named["out"] = out
        if not use_torch(self.name, named):
            return self._arrays(args, out)
        if out is None:
            return self._torch_op(*args)
        if torch.is_grad_enabled() and any(t.requires_grad for t in named.values()):
            raise RuntimeError(
                f"{self.name}(out=...) is inference only and cannot record autograd; call it under "
                f"torch.no_grad(), or train with {self.train}"
            )
        if out is args[self._in_place]:  # the common in-place generation step
            rest = self._in_place_op(*args)
        else:
            rest = self._out_op(*args, out)
        results = list(rest) if isinstance(rest, tuple) else [rest]
        results.insert(self._out, out)
        return tuple(results)

    def _arrays(self, args, out):
        """The NumPy/CuPy path: results allocated beside the reference, on its device."""
        args = list(args)
        for i in self._tensors:
            if args[i] is not None:
                a = as_array(self.params[i].name, args[i])
                # each on its own device (the core refuses a mix; never copied across devices here)
                args[i] = array_module(a).ascontiguousarray(a) if self.contiguous else a
        ref = args[self._ref]
        xp = array_module(ref)  # CuPy arrays get CuPy results on their device
        cplx = np.dtype(getattr(ref, "dtype", None))
        skip = None if out is None else self._out
        with device_of(ref):
            like = lambda a, dtype: xp.empty(_shape(a), dtype=dtype)  # noqa: E731
            results = self._allocate(args, xp.empty, like, cplx, _REAL.get(cplx, cplx), skip)
        if out is not None:
            results[self._out] = out
        self.core(*self._core_args(args, results), stream=array_stream(ref))
        return self._returned(results)

    # ---- torch custom ops ---------------------------------------------------------------

    def _schema(self, mutated=None, out=False) -> str:
        args = [f"Tensor(a{i}!) {p.schema.split()[1]}" if i == mutated else p.schema for i, p in enumerate(self.params)]
        if out:
            args.append(f"Tensor(a{len(args)}!) out")
        n = len(self.results) - (mutated is not None or out)
        return f"({', '.join(args)}) -> " + ("Tensor" if n == 1 else f"({', '.join(['Tensor'] * n)})")

    # The dispatcher passes a custom op's kernels their arguments by position, in schema order.

    def _kernel(self, mode):
        """The custom op's kernel: mode None (functional), "in_place" or "out"."""
        prep = (lambda t: None if t is None else plain(t).contiguous()) if self.contiguous else (
            lambda t: None if t is None else plain(t))  # fmt: skip
        skip = None if mode is None else self._out

        def kernel(*args):
            if mode == "out":
                args, given = args[:-1], args[-1]
                if not given.is_contiguous():
                    raise ValueError("out: expected a contiguous output tensor")
            inputs = [prep(a) if t else a for a, t in zip(args, self._is_tensor)]
            if mode == "in_place":
                given = inputs[self._in_place] = args[self._in_place]
                if not given.is_contiguous():
                    name = self.params[self._in_place].name
                    raise ValueError(f"{name}: {self.name}(out={name}) needs a contiguous {name} to update in place")
            ref = args[self._ref]
            results = self._torch_results(inputs, skip)
            if skip is not None:
                results[skip] = given
            needs = None if self._needs is None else args[self._needs]
            run_core(self.core, ref, *self._core_args(inputs, results, needs))
            return self._returned(results, skip)

        return kernel

    def _fake(self, mode):
        skip = None if mode is None else self._out

        def fake(*args):
            args = args[: len(self.params)]  # without out
            self.check(args)
            return self._returned(self._torch_results(args, skip), skip)

        return fake

    def register(self, backward=None):
        """Defines the torch custom ops of this description. backward(ctx, *grads): the
        functional op's backward; ctx holds the tensor inputs (ctx.saved_tensors, in schema
        order) and the other arguments by name (ctx.conj_pairs)."""
        qualname = f"ssmkit::{self.name}"
        self._eager_kernel = self._kernel(None)
        op = torch.library.custom_op(qualname, self._eager_kernel, mutates_args=(), schema=self._schema())
        op.register_fake(self._fake(None))
        if self.train:
            op.register_autograd(self._no_backward, setup_context=lambda ctx, inputs, output: None)
        elif backward is not None:
            op.register_autograd(backward, setup_context=self._save_inputs)
        if self._out is not None:
            mutated = self.params[self._in_place].schema.split()[1]
            in_place = torch.library.custom_op(qualname + "_", self._kernel("in_place"), mutates_args=(mutated,),
                                               schema=self._schema(mutated=self._in_place))  # fmt: skip
            in_place.register_fake(self._fake("in_place"))
            out = torch.library.custom_op(qualname + "_out", self._kernel("out"), mutates_args=("out",),
                                          schema=self._schema(out=True))  # fmt: skip
            out.register_fake(self._fake("out"))
            self._in_place_op = getattr(torch.ops.ssmkit, self.name + "_")
            self._out_op = getattr(torch.ops.ssmkit, self.name + "_out")
        self._torch_op = getattr(torch.ops.ssmkit, self.name)

    def _save_inputs(self, ctx, inputs, output):
        ctx.save_for_backward(*(inputs[i] for i in self._tensors))
        for i in self._scalars:
            setattr(ctx, self.params[i].name, inputs[i])

    def _no_backward(self, ctx, *grads):
        raise RuntimeError(
            f"ssmkit.ops.{self.name} is inference only (no backward); train with {self.train} "
            f"and use {self.name} to generate"
        )
