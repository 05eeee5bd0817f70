"""usdrl-bench: benchmarking and evaluation suite for self-supervised skeleton-based action
representation learning, built around USDRL (Weng et al., AAAI 2025).

The Python API (imported on first use, so that ``import usdrl_bench`` stays light):

- :func:`run_protocol` / :func:`run_protocols`: run protocols (a YAML path or a shipped name) and get the
  records as a pandas DataFrame;
- :func:`validate_protocols`: everything a run checks before it loads data (``usdrl-bench validate``);
- :func:`plan_protocols`: what a run would train and cost (models, keys, FLOPs, memory, GPU-hours), and
  ``run_protocols(..., rehearse=True)`` or a :class:`Rehearsal`: a preset at its real shapes with the work cut;
- :func:`list_protocols`: the shipped protocols;
- :func:`load_encoder`, :func:`embed`, :func:`embed_file`: a pretrained encoder (a suite checkpoint, or a method's
  official one with ``method=``) and its features; :func:`load_official` (encoder and objective of an official checkpoint),
  :func:`export_official` (a suite checkpoint in a method's official format).

The extension contract (:mod:`usdrl_bench.extend`): :class:`SkeletonEncoder`, :class:`EncoderConfig`,
:class:`Objective`, :func:`register_encoder`, :func:`register_objective`; datasets: :class:`SkeletonArrays`,
:class:`Layout`, :class:`DataFormatError`, :func:`register_dataset`, :func:`register_layout`, and the per-sequence
normalisation any reader can apply (:func:`normalize_arrays`, :func:`normalize_sequence`, :func:`centre_sequence`,
:func:`align_shoulders`, :func:`scale_sequence`; :class:`Normalization`, a dataset's ``normalize:`` key);
methods: :func:`register_method`, :class:`Method`, :class:`MethodPreset`, :class:`OfficialFormat` and its
helpers; what objectives making their own views
need: :class:`SampleKeys`, :func:`make_views` and the augmentations, :func:`to_stream`, :func:`get_layout`,
:func:`gather_with_grad`, :func:`batch_mean`; declared option ranges for an encoder's configuration, an
objective's or a reader's options: :data:`PositiveInt`, :data:`NonNegativeInt`, :data:`PositiveFloat`,
:data:`NonNegativeFloat`, :data:`Probability`, :data:`Fraction` (:mod:`usdrl_bench.ranges`).
"""

from usdrl_bench._version import __version__

_API = ("run_protocol", "run_protocols", "plan_protocols", "validate_protocols", "Rehearsal", "list_protocols",
        "protocol_path", "load_encoder", "embed", "embed_file", "Embedded", "load_official", "export_official")
_EXTEND = ("SkeletonEncoder", "EncoderConfig", "Objective", "register_encoder", "register_objective",
           "SkeletonArrays", "Layout", "DataFormatError", "register_dataset", "register_layout",
           "normalize_arrays", "normalize_sequence", "centre_sequence", "align_shoulders", "scale_sequence",
           "Normalization",
           "Method", "MethodPreset", "register_method", "SampleKeys", "make_views", "random_crop_resize", "shear",
           "joint_corruption", "random_rotation", "resize_valid", "to_stream", "get_layout", "gather_with_grad",
           "batch_mean", "create_encoder", "OfficialFormat", "OfficialModel", "CheckpointMismatchError",
           "load_renamed", "renamed_state", "shaping_args", "strip_module_prefix",
           "PositiveInt", "NonNegativeInt", "PositiveFloat", "NonNegativeFloat", "Probability", "Fraction")
__all__ = ["__version__", *_API, *_EXTEND]


def __getattr__(name: str):
    if name in _API:
        from usdrl_bench import api

        return getattr(api, name)
    if name in _EXTEND:
        from usdrl_bench import extend

        return getattr(extend, name)
    raise AttributeError(f"module 'usdrl_bench' has no attribute {name!r}")
