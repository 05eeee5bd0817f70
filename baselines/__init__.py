"""Extra encoders and objectives that register themselves: examples of the extension path.

Name a module here in a protocol's ``plugins:`` (``plugins: [baselines.mlp_encoder]``) or pass it to
``usdrl-bench list --plugin baselines.mlp_encoder``.
"""
