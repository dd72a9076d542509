"""TF-Slim's module path for the block library, which lives in nets/blocks.py (MnasNet
and EfficientNetV2 use it too).

TF-Slim's public names that exist here: ``expand_input_by_factor``,
``expanded_conv``, ``split_conv`` and ``squeeze_excite``; nets/README.md lists the
ones that do not.
"""
from nets.blocks import expand_input_by_factor, expanded_conv, split_conv, squeeze_excite

__all__ = ["expand_input_by_factor", "expanded_conv", "split_conv", "squeeze_excite"]
