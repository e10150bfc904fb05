"""A stand-in for `torch` that provides names and nothing else.

PyPI's Linux torch wheel brings gigabytes of CUDA libraries, so the interop checks import the
trainers' own configuration and scheduler code (megatron-core from PyPI) with this module in
torch's place. It makes `import torch` and `from torch... import X` succeed: every attribute is a
class that can be subclassed, called, indexed and combined, and computes nothing. What is checked
with it is pure Python in the trainer's package (dataclass fields and their `__post_init__`
checks, the learning-rate scheduler's arithmetic); anything torch would compute (dtypes, init
functions, tensors) is not checked.
"""

import abc
import importlib.abc
import importlib.machinery
import sys
import types


class _Meta(abc.ABCMeta):
    """The metaclass of every stand-in name (an ABCMeta, so ABCs may derive from them too)."""

    def __getattr__(cls, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return _name(name)

    def __call__(cls, *args, **kwargs):
        # Used as a decorator (`@torch.no_grad()`, `@torch.jit.script`): give the function back.
        if len(args) == 1 and not kwargs and callable(args[0]):
            return args[0]
        return type.__call__(cls)

    def __getitem__(cls, item):
        return cls

    def __or__(cls, other):
        return cls

    def __ror__(cls, other):
        return cls

    def __iter__(cls):
        return iter(())


def _name(name):
    return _Meta(
        name,
        (),
        {
            "__init__": lambda self, *a, **k: None,
            "__getattr__": lambda self, n: _name(n),
            "__call__": lambda self, *a, **k: _name("result"),
        },
    )


class _Module(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        value = _name(name)
        setattr(self, name, value)
        return value


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, roots):
        self.roots = roots

    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in self.roots:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _Module(spec.name)
        module.__path__ = []
        module.__version__ = "0.0.0+windtunnel.standin"
        return module

    def exec_module(self, module):
        pass


def install(roots=("torch",)):
    """Put the stand-in in front of the import system for `roots` and their submodules."""
    if any(name in sys.modules for name in roots):
        raise RuntimeError(f"{roots} already imported: the stand-in must be installed first")
    sys.meta_path.insert(0, _Finder(set(roots)))
