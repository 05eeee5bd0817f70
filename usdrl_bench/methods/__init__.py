"""Methods: each published self-supervised method as one named unit that says its encoder, objective,
presets and paper.

- :mod:`~usdrl_bench.methods.base`: what a method is (:class:`Method`, :class:`MethodPreset`,
  :func:`register_method`; public as ``usdrl_bench.register_method``), and how its official checkpoints are
  read and written (:class:`OfficialFormat`);
- :mod:`~usdrl_bench.methods.usdrl`: USDRL itself (DSTE + MG-FD, its presets, its paper and official format);
- :mod:`~usdrl_bench.methods.official`: official checkpoints in and out (``load_encoder(path, method=...)``,
  ``export_official``) for any method with a format;
- :mod:`~usdrl_bench.methods.shipped`: the peer methods shipped beside the suite, one module each in the
  ``baselines`` package (MAMP, SkeletonCLR, CMD, VICReg / Barlow Twins, an MLP encoder), written against the
  public API only as any plug-in is.
"""

from usdrl_bench.methods.base import (NON_SHAPING_ARGS, Method, MethodPreset, OfficialFormat, OfficialModel, get_method,
                                      preset_as_dict, register_method)

__all__ = ["Method", "MethodPreset", "OfficialFormat", "OfficialModel", "register_method", "get_method",
           "preset_as_dict", "NON_SHAPING_ARGS"]

# a package imports its own members: USDRL registers when imported
from usdrl_bench.methods import usdrl  # noqa: F401, E402
