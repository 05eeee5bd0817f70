"""The embedded synthetic skeleton data: stand-ins that show a pipeline runs, without any download.

``generator`` draws labelled sequences with NTU-like nuisances (the ``synthetic`` dataset, 2-D and
untrimmed variants); ``raw`` writes them in the raw release formats, to test preparation end to end.
"""

# a package imports its own members: ``synthetic``, ``synthetic_untrimmed`` and the rehearsal data register here
from usdrl_bench.data.synthetic import generator, releases  # noqa: F401, E402
