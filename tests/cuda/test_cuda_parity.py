"""The CUDA kernel modules mirror the CPU ones name for name and argument for argument.

Needs numba-cuda (either mode: plain import or simulator); skipped without it.
"""

import importlib
import importlib.util
import inspect

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("numba_cuda") is None,
    reason="numba-cuda is not installed (pip install 'numrnn[cuda]')",
)

MODULES = ["simple_rnn", "lstm", "gru"]


def _public_kernels(module):
    """Public functions defined in ``module`` (not imported into it) -> their Python function."""
    found = {}
    for name, obj in vars(module).items():
        func = getattr(obj, "py_func", obj)
        if name.startswith("_") or not inspect.isfunction(func):
            continue
        if func.__module__ == module.__name__:
            found[name] = func
    return found


@pytest.mark.parametrize("name", MODULES)
def test_cuda_module_mirrors_cpu_module(name):
    cpu = _public_kernels(importlib.import_module(f"numrnn.kernels.cpu.{name}"))
    gpu = _public_kernels(importlib.import_module(f"numrnn.kernels.cuda.{name}"))
    assert cpu, f"no public kernels found in numrnn.kernels.cpu.{name}"
    assert sorted(gpu) == sorted(cpu)
    for function in cpu:
        cpu_params = list(inspect.signature(cpu[function]).parameters)
        gpu_params = list(inspect.signature(gpu[function]).parameters)
        assert gpu_params == cpu_params, f"{name}.{function}: arguments differ"


def test_every_cpu_kernel_module_has_a_cuda_twin():
    import numrnn.kernels.cpu as cpu_package

    cpu_dir = importlib.resources.files(cpu_package)
    modules = sorted(
        p.name[:-3] for p in cpu_dir.iterdir() if p.name.endswith(".py") and not p.name[0] == "_"
    )
    assert modules == sorted(MODULES)
    for name in modules:
        assert importlib.util.find_spec(f"numrnn.kernels.cuda.{name}") is not None
