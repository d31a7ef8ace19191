"""The search-space description, one owner each: architectures as data (:mod:`.arch`), search spaces
(:mod:`.spaces`), their integer encoding (:mod:`.encoding`), latency units (:mod:`.units`) and analytic
cost with the Mobile Efficiency Score (:mod:`.metrics`). Re-exported flat."""
from nas.space.arch import NUM_STAGES, Arch, ArchError, BlockChoice
from nas.space.metrics import MES, count_macs, count_params
from nas.space.spaces import DEFAULT_SPACE, SPACES, TINY_SPACE, SearchSpace, get_space
from nas.space.units import BlockSpec, arch_units, probe_units, space_units, unit_grid

__all__ = ["NUM_STAGES", "Arch", "ArchError", "BlockChoice", "MES", "count_macs", "count_params", "DEFAULT_SPACE",
           "SPACES", "TINY_SPACE", "SearchSpace", "get_space", "BlockSpec", "arch_units", "probe_units",
           "space_units", "unit_grid"]
