"""Protocol files: YAML -> validated frozen dataclasses -> cells (encoder x objective x dataset x seed).

By what it does: the model (:mod:`.model`: :class:`Protocol`, its presets, rows and datasets, and the
:class:`Cell` a run expands them to), loading (:mod:`.loading`: :func:`load_protocol`), checking
(:mod:`.checking`: names, options, datasets, each cell's merged settings, the JSON Schema) and expansion
(:mod:`.expansion`: :func:`expand_cells`). The names a caller needs are here.
"""

from usdrl_bench.protocols.spec.checking import check_cells, check_dataset, protocol_json_schema, run_check
from usdrl_bench.protocols.spec.expansion import expand_cells, parse_dataset_override
from usdrl_bench.protocols.spec.loading import apply_overrides, load_protocol, yaml_problem
from usdrl_bench.protocols.spec.model import Cell, DatasetSpec, EnsembleSpec, PresetSpec, Protocol, RowSpec

__all__ = ["Protocol", "PresetSpec", "RowSpec", "DatasetSpec", "EnsembleSpec", "Cell", "load_protocol",
           "apply_overrides", "yaml_problem", "check_cells", "check_dataset", "run_check", "protocol_json_schema",
           "expand_cells", "parse_dataset_override"]
