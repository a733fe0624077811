"""Every model's training step and scoring on an emulated CUDA device, on a CPU-only machine.

RecBole builds a model on the CPU, moves it with ``model.to(device)`` and moves each batch with
``interaction.to(device)``: a tensor left on the CPU (not a parameter or buffer) or created there
(a factory without ``device=``) crashes a GPU run at its first batch. Here a CUDA tensor is a real
CPU tensor of class :class:`CudaTensor` that reports ``cuda:0``; :class:`EmulatedCuda`, a torch
function mode, refuses what CUDA refuses (a CUDA tensor with a CPU tensor of one dimension or
more in one op, CUDA indices into a CPU tensor) and places factories' results (``device=``).
Real data flows, so ``.item()``, ``nonzero()`` and autograd run as they do. (A dispatch-level
wrapper or FakeTensor reporting ``cuda`` aborts the process in autograd on a CPU-only build.)
Not caught: CUDA-only kernels and dtypes, numerics, streams, ops torch runs inside its own
Python functions, and a CPU value assigned into a CUDA tensor (``x[i] = v``, left unchecked).
"""

import contextlib

import pytest
import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from recbole_eimf.config import Config
from recbole_eimf.quick_start import build_model

from conftest import SMALL
from test_eimf import esim_settings

CUDA = torch.device("cuda", 0)


class CudaTensor(Tensor):
    """A CPU tensor standing for one on CUDA (under :class:`EmulatedCuda`)."""


def _tensors(obj):
    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, (list, tuple, dict)):
        for item in obj.values() if isinstance(obj, dict) else obj:
            yield from _tensors(item)


def _place(obj, cuda: bool):
    if isinstance(obj, Tensor) and isinstance(obj, CudaTensor) != cuda:
        return obj.as_subclass(CudaTensor if cuda else Tensor)
    if type(obj) in (list, tuple):
        return type(obj)(_place(item, cuda) for item in obj)
    return obj


def _device_type(arg):
    if isinstance(arg, Tensor):
        return "cuda" if isinstance(arg, CudaTensor) else "cpu"
    return torch.device(arg).type if isinstance(arg, (str, torch.device)) else None


def _on_cpu(arg):
    return "cpu" if isinstance(arg, (str, torch.device)) else _place(arg, False)


REPORTS = {Tensor.device.__get__: CUDA, Tensor.is_cuda.__get__: True, Tensor.is_cpu.__get__: False}
MOVES = {Tensor.to: None, Tensor.cuda: "cuda", Tensor.cpu: "cpu"}
INDEXING = {Tensor.__getitem__, Tensor.__setitem__, Tensor.index_put_, Tensor.index_put}
# copy_ may cross devices; nn.Module.to asks the other (a query, no computation) of each Parameter.
UNCHECKED = {Tensor.copy_, getattr(torch, "_has_compatible_shallow_copy_type", None)}


class EmulatedCuda(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        on_cuda = bool(args) and isinstance(args[0], CudaTensor)
        if func in REPORTS and on_cuda:
            return REPORTS[func]
        if func in MOVES:
            targets = map(_device_type, (*args[1:], kwargs.get("device")))
            target = MOVES[func] or next(filter(None, targets), None)
            if func is not Tensor.to:
                args, kwargs = args[:1], {}
            out = Tensor.to(args[0], *map(_on_cpu, args[1:]), **{k: _on_cpu(v) for k, v in kwargs.items()})
            if target is None or (target == "cuda") == on_cuda:
                return out
            return _place(out.clone(), target == "cuda")  # a move copies
        if kwargs.get("device") is not None:  # factories: torch.arange(n, device=x.device), ...
            cuda = _device_type(kwargs["device"]) == "cuda"
            return _place(func(*args, **{**kwargs, "device": "cpu"}), cuda)
        if func in INDEXING:  # CPU indices into a CUDA tensor are fine, CUDA indices into a CPU one not
            if not on_cuda and any(isinstance(t, CudaTensor) and t.dim() > 0 for t in _tensors(args[1:2])):
                shape = tuple(args[0].shape)
                raise RuntimeError(f"indices should be either on cpu or on the same device as the indexed "
                                   f"tensor (cpu) (emulated CUDA: CPU tensor of shape {shape})")
            return _place(func(*args, **kwargs), True) if on_cuda else func(*args, **kwargs)
        tensors = list(_tensors((args, kwargs)))
        if not any(isinstance(t, CudaTensor) for t in tensors):
            return func(*args, **kwargs)
        cpu = [tuple(t.shape) for t in tensors if not isinstance(t, CudaTensor) and t.dim() > 0]
        if cpu and func not in UNCHECKED:  # CUDA takes 0-dim CPU tensors (scalars) only
            name = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
            raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two "
                               f"devices, cuda:0 and cpu! (emulated CUDA, in {name}: CPU tensors {cpu})")
        return _place(func(*args, **kwargs), True)  # also the grads, which autograd makes plain


@contextlib.contextmanager
def emulated_cuda():
    # swap_tensors keeps each Parameter object (and class) through model.to(), as .data = does on a GPU.
    swap = torch.__future__.get_swap_module_params_on_conversion()
    torch.__future__.set_swap_module_params_on_conversion(True)
    try:
        with EmulatedCuda():
            yield
    finally:
        torch.__future__.set_swap_module_params_on_conversion(swap)


def test_the_emulation_refuses_what_cuda_refuses():
    with emulated_cuda():
        x = torch.ones(3, 2).to(CUDA)
        assert x.device == CUDA and torch.arange(3, device=x.device).device == CUDA
        assert (x * torch.tensor(2.0))[torch.tensor([0, 2])].device == CUDA  # CPU scalars and indices: fine
        assert torch.zeros(2).cpu().device.type == "cpu" and x.cpu().device.type == "cpu"
        for mixed in (lambda: x * torch.ones(3, 2), lambda: torch.nn.Linear(2, 2)(x),
                      lambda: torch.nn.functional.embedding(torch.tensor([0]), x)):
            with pytest.raises(RuntimeError, match="same device"):
                mixed()
        with pytest.raises(RuntimeError, match="indices should be"):
            torch.ones(3)[torch.tensor([0, 2]).to(CUDA)]


CASES = {
    "TransMI": ("TransMI", {}),
    "ComiRecSA": ("ComiRecSA", {}),
    "ComiRecDR": ("ComiRecDR", {}),
    "MIND": ("MIND", {}),
    "EIMF-TransMI": ("EIMF", {"backbone": "TransMI"}),
    "EIMF-ComiRecDR": ("EIMF", {"backbone": "ComiRecDR"}),
    "EIMF-MIND": ("EIMF", {"backbone": "MIND"}),
    "TransMI-options": ("TransMI", {"sampled_softmax_negatives": 64, "logq_correction": True,
                                    "logq_correct_positive": True, "hard_negative_beta": 1.0,
                                    "routing_reg_weight": 1.0, "train_readout": "target",
                                    "trim_padding": True}),
    "ComiRecDR-options": ("ComiRecDR", {"sampled_softmax_negatives": 64,
                                        "sampled_softmax_distribution": "popularity",
                                        "routing_reg_weight": 1.0, "embedding_dropout": 0.2,
                                        "train_readout": "max"}),
    "MIND-options": ("MIND", {"hard_negative_beta": 1.0, "embedding_dropout": 0.2, "relu_layer": True,
                              "train_readout": "max", "trim_padding": False}),
}


@pytest.fixture(scope="module")
def batch(ml100k):
    train = ml100k[2]
    state = train.generator.get_state()  # later tests see the batches they would see without this one
    try:
        return next(iter(train))
    finally:
        train.generator.set_state(state)


@pytest.fixture(scope="module")
def esim_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("esim")  # ESIM runs once for all cases


@pytest.mark.parametrize("case", CASES)
def test_training_step_and_scoring_stay_on_the_device(case, ml100k, batch, esim_cache):
    name, extra = CASES[case]
    config = Config(model=name, dataset="ml-100k",
                    config_dict={**SMALL, **esim_settings(esim_cache), **extra})
    model = build_model(config, ml100k[2]._dataset)  # on the CPU, its stage outputs too, as a run builds it
    with emulated_cuda():
        model.to(CUDA)
        on_device = batch.to(CUDA)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
        losses = model.train().calculate_loss(on_device)
        loss = sum(losses) if isinstance(losses, tuple) else losses
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        optimizer.step()
        with torch.no_grad():
            scores = [model.eval().full_sort_predict(on_device), model.predict(on_device)]
    if name == "EIMF":
        assert losses[1] > 0 and losses[2] > 0  # the semantic losses ran
    assert grads and torch.isfinite(loss)
    for t in (loss, *scores, *grads, *model.parameters(), *model.buffers()):
        assert isinstance(t, CudaTensor)
