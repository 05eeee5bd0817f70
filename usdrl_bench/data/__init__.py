"""Data: what a dataset is, where it is found, and how it is read, prepared, made up and augmented.

The dataset contract (what a reader returns and the suite checks), at the door:

- :class:`SkeletonArrays`: ``(N, C, T, V, M)`` joints with labels, frame counts, metadata and a layout;
- :class:`DataFormatError`: a malformed file, named with its line or sample;
- :func:`load_dataset`: a registered dataset's ``(train, test)``, located and read (:func:`read_dataset`:
  checked: labels in range, finite coordinates, a registered layout with the arrays' joint count);
- where data are (:mod:`~usdrl_bench.data.root`): the data root (:func:`resolve_data_root`: ``--data-root``,
  else ``$USDRL_DATA``, else ``./data``) and a dataset's :class:`Location` under it (:func:`locate_dataset`),
  resolved once when a run is planned; a reader receives a path;
- per-sequence normalisation for any layout (:mod:`~usdrl_bench.data.normalize`).

The rooms: :mod:`~usdrl_bench.data.readers` (one module per on-disk format),
:mod:`~usdrl_bench.data.preparation` (raw releases -> prepared arrays, ``usdrl-bench data prepare``),
:mod:`~usdrl_bench.data.synthetic` (the embedded stand-ins), :mod:`~usdrl_bench.data.augment` (batched
augmentations and the pretraining views). Plug-in datasets register with
:func:`usdrl_bench.register_dataset`.
"""

from usdrl_bench.data.arrays import SkeletonArrays
from usdrl_bench.data.errors import DataFormatError
from usdrl_bench.data.loading import check_arrays, load_dataset, read_dataset
from usdrl_bench.data.root import DATA_ROOT_ENV, Location, locate_dataset, resolve_data_root

__all__ = ["SkeletonArrays", "DataFormatError", "load_dataset", "read_dataset", "check_arrays", "DATA_ROOT_ENV",
           "Location", "locate_dataset", "resolve_data_root"]
