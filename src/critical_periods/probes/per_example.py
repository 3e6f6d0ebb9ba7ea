"""Per-example gradients, layer by layer, without materialising them where the layer allows it.

For a loss ``l_i`` that depends on the network only through the logits ``z_i = f(x_i)``, the chain rule
gives ``grad_w l_i = J_i^T v_i`` with ``v_i = dl_i/dz_i`` (for cross-entropy with label ``y``:
``v_i = softmax(z_i) - e_y``). So one forward pass serves any number of "directions" ``v``: each is one
batched backward pass from the logits to the outputs of every layer.

A *layer* is a module with trainable parameters of its own (``named_modules()`` name; the root
module, if it owns parameters, is called ``"root"``). Per layer, the per-example gradients are kept in
the cheapest exact form:

* ``nn.Linear`` on (N, in) inputs, called once: the gradient is the outer product ``d_i a_i^T`` of the
  output gradient ``d_i`` and the input ``a_i`` (plus ``d_i`` for the bias), so
  ``||g_i||^2 = (||a_i||^2 + 1) ||d_i||^2`` and ``<g_i, g_j> = (a_i.a_j + 1)(d_i.d_j)``:
  :class:`FactoredGradients`, O(N (in + out)) memory.
* ``nn.Linear`` on (N, ..., in) inputs, ``nn.Conv1d``/``nn.Conv2d`` (zero padding given as numbers),
  eval-mode BatchNorm: the per-example gradient is a sum over positions, formed explicitly by an
  einsum over unfolded patches: :class:`DenseGradients`, formed on demand from the captured inputs
  and output gradients (O(N P_layer) while one product uses them, not kept).
* anything else (LayerNorm, custom parameters, 0-dim parameters, ``padding="same"``...), and every
  module owning a parameter that another module owns too (tied weights, ``b.weight = a.weight``):
  ``torch.func`` ``vmap(grad(functional_call))`` over the examples, restricted to those parameters.
  A model containing a recurrent layer (``nn.LSTM``/``nn.GRU``/``nn.RNN``: their fused kernels have no
  batching rule, and vmap breaks on them) gets the same gradients from one backward pass instead: each
  example runs through its own copy of those parameters (a leaf of shape (n, *p.shape), row i used by
  example i only), so the gradient with respect to the leaf is the per-example gradients, stacked.

Sums over positions and over repeated calls of a module are handled by the dense forms, so weight
sharing within a forward pass is exact too. A tied parameter's per-example gradient is the sum over
all its uses, which only a gradient with respect to the parameter itself sees (per-module hooks would
book each use apart and drop the cross terms); ``functional_call`` substitutes a tied parameter
everywhere it is used, so the functional path gets the sum. A tied parameter is booked to the first
layer (``named_modules()`` order) that owns it, like ``model.named_parameters()`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import math
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap
from torch.nn.modules.batchnorm import _BatchNorm

from critical_periods.probes.context import check_class_logits, has_stock_forward

ROOT_LAYER = "root"

# Prepared layer inputs (patch matrices: K times a convolution's input) are kept across the directions
# of one chunk while they total at most this many elements (256 MB in float32); past it, each
# direction prepares them again, one layer at a time.
PREPARED_INPUT_BUDGET = 1 << 26

Method = Literal["auto", "functional"]


class LayerGradients(Protocol):
    """Per-example gradients of one layer's parameters for n examples."""

    def __len__(self) -> int: ...

    def squared_norms(self) -> Tensor:
        """(n,) float64: ``||g_i||^2``."""
        ...

    def gram(self) -> Tensor:
        """(n, n) float64: ``<g_i, g_j>``."""
        ...


def _squared_norms(rows: Tensor) -> Tensor:
    # vector_norm in the rows' dtype is several times faster than a float64 copy; accurate to rounding
    return torch.linalg.vector_norm(rows, dim=1).double().square()


@dataclass
class FactoredGradients:
    """``g_i = d_i [a_i; 1]^T`` for a Linear layer: weight gradient ``d_i a_i^T``, bias gradient ``d_i``."""

    inputs: Tensor  # (n, in)   a_i
    output_grads: Tensor  # (n, out)  d_i
    has_weight: bool
    has_bias: bool

    def __len__(self) -> int:
        return self.output_grads.shape[0]

    def _input_inner(self, a: Tensor, b: Tensor) -> Tensor:
        # <[a_i;1], [b_j;1]> restricted to the trainable parts
        inner = a @ b.T if self.has_weight else a.new_zeros(a.shape[0], b.shape[0])
        return inner + float(self.has_bias)

    def squared_norms(self) -> Tensor:
        input_sq = _squared_norms(self.inputs) if self.has_weight else 0.0
        return (input_sq + float(self.has_bias)) * _squared_norms(self.output_grads)

    def gram(self) -> Tensor:
        # Products in the layer's dtype (fast), summed over layers in float64 by the caller.
        a, d = self.inputs, self.output_grads
        return (self._input_inner(a, a) * (d @ d.T)).double()



class DenseGradients:
    """Explicit per-example gradients, flattened: (n, P_layer), given as a tensor or as a function that
    forms them in parts (e.g. weight and bias: (n, P_weight), (n, P_bias)), called each time they are
    needed, so only one layer's are alive at a time. Norms and Gram matrices are summed over the
    parts, which are concatenated only when the whole rows are asked for."""

    def __init__(self, gradients: Tensor | Callable[[], list[Tensor]], n: int | None = None) -> None:
        self._source = gradients
        self._n = gradients.shape[0] if isinstance(gradients, Tensor) else n

    def parts(self) -> list[Tensor]:
        return [self._source] if isinstance(self._source, Tensor) else self._source()

    @property
    def gradients(self) -> Tensor:
        parts = self.parts()
        return parts[0] if len(parts) == 1 else torch.cat(parts, 1)

    def __len__(self) -> int:
        return self._n

    def squared_norms(self) -> Tensor:
        return sum(_squared_norms(part) for part in self.parts())

    def gram(self) -> Tensor:
        return sum((part @ part.T).double() for part in self.parts())


def cross_gram(first: LayerGradients, second: LayerGradients) -> Tensor:
    """(n_1, n_2) float64: ``<g_i, h_j>`` between one layer's per-example gradients on two sets of examples."""
    if isinstance(first, FactoredGradients) and isinstance(second, FactoredGradients):
        return (first._input_inner(first.inputs, second.inputs) * (first.output_grads @ second.output_grads.T)).double()
    return (_densify(first) @ _densify(second).T).double()


def concatenate(blocks: Sequence[LayerGradients]) -> LayerGradients:
    """Stack one layer's per-example gradients from consecutive chunks of examples."""
    first = blocks[0]
    if all(isinstance(b, FactoredGradients) for b in blocks):
        return FactoredGradients(
            torch.cat([b.inputs for b in blocks]),
            torch.cat([b.output_grads for b in blocks]),
            first.has_weight,
            first.has_bias,
        )
    # A layer can come out factored in one chunk and dense in another only if its inputs change
    # shape between chunks; densify to be safe.
    return DenseGradients(torch.cat([_densify(b) for b in blocks]))


def _densify(block: LayerGradients) -> Tensor:
    if isinstance(block, DenseGradients):
        return block.gradients
    d, a = block.output_grads, block.inputs
    parts = []
    if block.has_weight:
        parts.append(torch.einsum("no,ni->noi", d, a).flatten(1))
    if block.has_bias:
        parts.append(d)
    return torch.cat(parts, 1)


def parametrised_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Modules with trainable parameters of their own, by ``named_modules()`` name (root: ``"root"``).

    A tied parameter counts for the first module that owns it only (as in ``model.named_parameters()``),
    so a module whose only trainable parameters are tied to an earlier module's is not a layer.
    """
    seen: set[int] = set()
    layers = {}
    for name, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad and id(p) not in seen]
        seen.update(id(p) for p in own)
        if own:
            layers[name or ROOT_LAYER] = module
    return layers


def _modules_sharing_parameters(model: nn.Module) -> set[int]:
    """ids of the modules that own a parameter another module owns too (tied weights)."""
    owners: dict[int, list[nn.Module]] = {}
    for module in model.modules():
        for p in module.parameters(recurse=False):
            owners.setdefault(id(p), []).append(module)
    return {id(m) for modules in owners.values() if len(modules) > 1 for m in modules}


def _trainable(module: nn.Module, name: str) -> bool:
    parameter = getattr(module, name, None)
    return isinstance(parameter, nn.Parameter) and parameter.requires_grad


def _only_weight_and_bias(module: nn.Module) -> bool:
    return {n for n, _ in module.named_parameters(recurse=False)} <= {"weight", "bias"}


def _has_hook_formula(module: nn.Module) -> bool:
    """Whether the per-example gradients follow from the layer's input and output gradient: only for
    a layer type's stock forward (:func:`has_stock_forward`); any other layer goes the functional way."""
    if not _only_weight_and_bias(module):
        return False
    if has_stock_forward(module, nn.Linear) or has_stock_forward(module, _BatchNorm):
        return True
    if has_stock_forward(module, nn.Conv1d) or has_stock_forward(module, nn.Conv2d):
        return module.padding_mode == "zeros" and not isinstance(module.padding, str)
    return False


def _linear_dense(module: nn.Linear, a: Tensor, d: Tensor) -> list[Tensor]:
    a = a.reshape(a.shape[0], -1, a.shape[-1])  # (n, T, in)
    d = d.reshape(d.shape[0], -1, d.shape[-1])  # (n, T, out)
    parts = []
    if _trainable(module, "weight"):
        parts.append(torch.bmm(d.transpose(1, 2), a).flatten(1))  # (n, out, in)
    if _trainable(module, "bias"):
        parts.append(d.sum(1))
    return parts


def _conv_patches(module: nn.Conv1d | nn.Conv2d, a: Tensor) -> Tensor:
    """(n, C_in, *out_positions, *kernel): the input window under each output position.

    Built from ``Tensor.unfold`` views of the zero-padded input, so only the padding copies; several
    times cheaper than ``F.unfold`` (im2col), which would also treat a Conv1d as a 2-D convolution.
    """
    if any(module.padding):
        a = F.pad(a, [p for p in reversed(module.padding) for _ in range(2)])  # last dim first
    for dim, (size, stride, dilation) in enumerate(zip(module.kernel_size, module.stride, module.dilation)):
        a = a.unfold(2 + dim, dilation * (size - 1) + 1, stride)  # appends a window dim at the end
    if any(d > 1 for d in module.dilation):
        a = a[(...,) + tuple(slice(None, None, d) for d in module.dilation)]
    return a


def _conv_patch_matrix(module: nn.Conv1d | nn.Conv2d, a: Tensor) -> Tensor:
    """(n, groups, T, C_in/groups * K), contiguous: the patches laid out for one batched matrix product
    per direction (formed once per chunk, reused by every direction)."""
    n, groups = a.shape[0], module.groups
    kernel = math.prod(module.kernel_size)
    patches = _conv_patches(module, a)  # (n, C_in, *out, *k)
    positions = math.prod(patches.shape[2 : 2 + len(module.kernel_size)])
    patches = patches.reshape(n, groups, -1, positions, kernel)  # (n, g, C_in/g, T, K)
    return patches.permute(0, 1, 3, 2, 4).reshape(n, groups, positions, -1).contiguous()


def _conv_dense(module: nn.Conv1d | nn.Conv2d, patches: Tensor, d: Tensor) -> list[Tensor]:
    n, groups, positions, _ = patches.shape
    d = d.reshape(n, groups, -1, positions)  # (n, g, C_out/g, T)
    parts = []
    if _trainable(module, "weight"):
        # (n, g, C_out/g, C_in/g * K) = the weight's (C_out, C_in/g, *k) layout
        parts.append(torch.matmul(d, patches).reshape(n, -1))
    if _trainable(module, "bias"):
        parts.append(d.sum(3).reshape(n, -1))
    return parts


def _batchnorm_normalised(module: _BatchNorm, a: Tensor) -> Tensor:
    shape = (1, -1) + (1,) * (a.dim() - 2)
    return (a - module.running_mean.view(shape)) / torch.sqrt(module.running_var.view(shape) + module.eps)


def _batchnorm_dense(module: _BatchNorm, normalised: Tensor, d: Tensor) -> list[Tensor]:
    positions = tuple(range(2, normalised.dim()))
    parts = []
    if _trainable(module, "weight"):
        parts.append((d * normalised).sum(positions) if positions else d * normalised)
    if _trainable(module, "bias"):
        parts.append(d.sum(positions) if positions else d)
    return parts


def _prepared_input(module: nn.Module, a: Tensor) -> Tensor:
    """What the dense form needs of a layer's input, computed once per chunk: the patch matrix of a
    convolution, the normalised input of a BatchNorm, the input itself for a Linear."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        return _conv_patch_matrix(module, a)
    if isinstance(module, _BatchNorm):
        return _batchnorm_normalised(module, a)
    return a


def _prepared_size(module: nn.Module, a: Tensor) -> int:
    """Elements of ``_prepared_input(module, a)`` beyond ``a`` itself (which is kept anyway)."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        return _conv_patches(module, a).numel()  # a view: its shape is the patch matrix's size
    if isinstance(module, _BatchNorm):
        return a.numel()
    return 0


def _hooked_layer_gradients(
    module: nn.Module, calls: list[tuple[Tensor, Tensor]], prepared: bool = False
) -> LayerGradients:
    """From each call's input (``prepared``: already through :func:`_prepared_input`) and output
    gradient; a layer called several times (weight sharing) gets the sum over its calls."""
    if isinstance(module, nn.Linear) and len(calls) == 1 and calls[0][0].dim() == 2:
        a, d = calls[0]
        return FactoredGradients(a, d, _trainable(module, "weight"), _trainable(module, "bias"))
    if isinstance(module, nn.Linear):
        dense = _linear_dense
    elif isinstance(module, _BatchNorm):
        dense = _batchnorm_dense
    else:
        dense = _conv_dense

    def form(a: Tensor, d: Tensor) -> list[Tensor]:
        return dense(module, a if prepared else _prepared_input(module, a), d)

    def parts() -> list[Tensor]:
        total = form(*calls[0])
        for a, d in calls[1:]:
            total = [part + more for part, more in zip(total, form(a, d))]
        return total

    return DenseGradients(parts, n=calls[0][0].shape[0])


class PerExampleGradients:
    """One forward pass over a chunk of examples; then per-example gradients along any output direction.

    ``PerExampleGradients(model, x)(v)`` returns, per layer, the per-example gradients
    ``g_i = J_i^T v_i`` of the scalar ``sum_i <z_i, v_i>`` (``z = model(x)``, ``v`` of the logits' shape,
    treated as a constant). Call it inside :func:`~critical_periods.probes.context.probe_mode`.
    ``method="functional"`` sends every layer through the ``torch.func`` path (a reference for tests).
    """

    def __init__(self, model: nn.Module, inputs: Tensor, method: Method = "auto") -> None:
        self.model = model
        self.inputs = inputs
        layers = parametrised_layers(model)
        if any(isinstance(m, _BatchNorm) and m.running_mean is None for m in model.modules()):
            raise ValueError(
                "BatchNorm without running statistics normalises with batch statistics even in eval "
                "mode; that couples the examples, so per-example gradients are undefined."
            )
        if method == "auto":
            tied = _modules_sharing_parameters(model)
            self._hooked = {
                name: m for name, m in layers.items() if _has_hook_formula(m) and id(m) not in tied
            }
        elif method == "functional":
            self._hooked = {}
        else:
            raise ValueError(f"unknown method {method!r}")
        self._functional = [name for name in layers if name not in self._hooked]
        # vmap cannot batch the fused recurrent kernels: per-example parameter copies instead
        self._copies_per_example = any(isinstance(m, nn.RNNBase) for m in model.modules())
        self._copies_graph: tuple[Tensor, dict[str, Tensor]] | None = None  # built at the first call
        self._layer_order = list(layers)
        self._calls: dict[str, list[tuple[Tensor, Tensor]]] = {name: [] for name in self._hooked}
        self._prepared: dict[str, list[Tensor]] = {}  # layer -> its calls' prepared inputs, within budget
        self._prepared_size = 0
        handles = [m.register_forward_hook(self._capture(name)) for name, m in self._hooked.items()]
        try:
            self._logits = model(inputs)
        finally:
            for handle in handles:
                handle.remove()
        check_class_logits(self._logits, inputs.shape[0])
        self.logits = self._logits.detach()

    def _capture(self, name: str):
        def hook(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
            # Keep the layer's own output as the tensor to differentiate to, and hand the rest of the
            # network a copy, so an in-place op downstream (ReLU(inplace=True)) cannot alter it.
            self._calls[name].append((args[0].detach(), output))
            return output.clone()

        return hook

    def __call__(self, direction: Tensor) -> dict[str, LayerGradients]:
        blocks: dict[str, LayerGradients] = {}
        if self._hooked:
            outputs = [out for calls in self._calls.values() for _, out in calls]
            grads = torch.autograd.grad(
                self._logits, outputs, grad_outputs=direction, retain_graph=True, allow_unused=True
            )
            grads_iter = iter(grads)
            for name, calls in self._calls.items():
                with_grads = []
                inputs, prepared = self._prepared_inputs(name)
                for a, (_, out) in zip(inputs, calls):
                    g = next(grads_iter)
                    with_grads.append((a, torch.zeros_like(out) if g is None else g))
                if with_grads:  # a layer never called in forward has no gradient to report
                    blocks[name] = _hooked_layer_gradients(self._hooked[name], with_grads, prepared)
        if self._functional:
            blocks.update(self._functional_gradients(direction))
        # in named_modules() order, so concatenated gradients follow model.parameters()
        return {name: blocks[name] for name in self._layer_order if name in blocks}

    def _prepared_inputs(self, name: str) -> tuple[list[Tensor], bool]:
        """The layer's calls' prepared inputs (True) if they are kept within the budget, else its raw
        inputs (False), to be prepared when its gradients are formed and dropped right after."""
        if name not in self._prepared:
            raw = [a for a, _ in self._calls[name]]
            size = sum(_prepared_size(self._hooked[name], a) for a in raw)
            if self._prepared_size + size > PREPARED_INPUT_BUDGET:
                return raw, False
            self._prepared[name] = [_prepared_input(self._hooked[name], a) for a in raw]
            self._prepared_size += size
        return self._prepared[name], True

    def _functional_gradients(self, direction: Tensor) -> dict[str, DenseGradients]:
        prefixes = {name: ("" if name == ROOT_LAYER else name + ".") for name in self._functional}
        owned = {  # parameter name -> layer, for parameters owned directly by a functional layer
            (prefix + pname): layer
            for layer, prefix in prefixes.items()
            for pname, p in self._module(layer).named_parameters(recurse=False)
            if p.requires_grad
        }
        # named_parameters() names a tied parameter once (its first owner): functional_call then
        # substitutes it at every use, and its gradient is the sum over the uses.
        params = {n: p.detach() for n, p in self.model.named_parameters() if n in owned}
        if self._copies_per_example:
            per_example = self._gradients_through_copies(params, direction)
        else:
            per_example = self._vmapped_gradients(params, direction)
        columns: dict[str, list[Tensor]] = {layer: [] for layer in self._functional}
        for pname, g in per_example.items():  # dict order = named_parameters order
            columns[owned[pname]].append(g.reshape(g.shape[0], -1))  # (n,) for a 0-dim parameter
        # detach: the result still depends on the other (live) parameters through functional_call
        return {layer: DenseGradients(torch.cat(cols, 1).detach()) for layer, cols in columns.items() if cols}

    def _vmapped_gradients(self, params: dict[str, Tensor], direction: Tensor) -> dict[str, Tensor]:
        def contracted_logits(params: dict[str, Tensor], x: Tensor, v: Tensor) -> Tensor:
            return (functional_call(self.model, params, (x.unsqueeze(0),)).squeeze(0) * v).sum()

        return vmap(grad(contracted_logits), in_dims=(None, 0, 0))(params, self.inputs, direction)

    def _gradients_through_copies(self, params: dict[str, Tensor], direction: Tensor) -> dict[str, Tensor]:
        """One forward per example (once per chunk), each with its own row of (n, *p.shape) leaves;
        then one backward pass per direction gives every example's gradient in its row."""
        if self._copies_graph is None:
            n = self.inputs.shape[0]
            copies = {name: p.expand(n, *p.shape).clone().requires_grad_() for name, p in params.items()}
            logits = torch.cat([
                functional_call(self.model, {name: c[i] for name, c in copies.items()}, (self.inputs[i : i + 1],))
                for i in range(n)
            ])
            self._copies_graph = (logits, copies)
        logits, copies = self._copies_graph
        names = list(copies)
        grads = torch.autograd.grad(
            logits, [copies[name] for name in names], grad_outputs=direction, retain_graph=True, allow_unused=True
        )
        return {name: torch.zeros_like(copies[name]) if g is None else g for name, g in zip(names, grads)}

    def _module(self, layer: str) -> nn.Module:
        return self.model if layer == ROOT_LAYER else self.model.get_submodule(layer)
