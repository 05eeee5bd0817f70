"""Reading dataset pickles without running code: a restricted unpickler.

Several skeleton releases ship pickles (AGCN ``*_label.pkl``, pyskl / mmaction2 annotations, the USDRL code's
PKU-MMD files). ``pickle.load`` runs whatever a pickle names, so a dataset file from anywhere could execute
code. :func:`load_pickle` admits only what these files hold: Python containers, numbers, strings and bytes,
and numpy arrays, scalars and dtypes (reconstructed by numpy, no user code); anything else is refused with
a :class:`~usdrl_bench.data.errors.DataFormatError` naming the file and the object it asked for.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from usdrl_bench.data.errors import DataFormatError

__all__ = ["load_pickle", "ALLOWED"]

_BUILTINS = ("list", "tuple", "dict", "set", "frozenset", "str", "bytes", "bytearray", "int", "float", "bool",
             "complex", "slice", "range")
_NUMPY = ("_reconstruct", "scalar")
#: (module, name) pairs a dataset pickle may reference
ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {("builtins", n) for n in _BUILTINS} | {("__builtin__", n) for n in _BUILTINS}  # Python 2 pickles
    | {("collections", "OrderedDict"), ("collections", "defaultdict"), ("copy_reg", "_reconstructor"),
       ("numpy", "ndarray"), ("numpy", "dtype")}
    | {(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray") for n in _NUMPY}
)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, path: Path, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED or (module == "numpy.dtypes" and name.endswith("DType")):
            return super().find_class(module, name)
        raise DataFormatError(self.path, f"refusing to load {module}.{name}: a dataset pickle may hold only "
                                         "containers, numbers, strings and numpy arrays (loading a pickle can run "
                                         "code; convert the file to .npy/.json if it is yours)")


def load_pickle(path: str | Path) -> Any:
    """Unpickle ``path`` with the restricted unpickler (Python 3 pickles; Python 2 ones as latin-1).

    Raises:
        FileNotFoundError: no such file.
        DataFormatError: the pickle references anything outside :data:`ALLOWED`, or is not a readable pickle.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pickle not found: {path}")
    data = path.read_bytes()
    try:
        try:
            return _RestrictedUnpickler(io.BytesIO(data), path).load()
        except UnicodeDecodeError:
            return _RestrictedUnpickler(io.BytesIO(data), path, encoding="latin1").load()
    except DataFormatError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DataFormatError(path, f"not a readable pickle ({type(exc).__name__}: {exc})") from None
