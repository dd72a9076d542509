"""TF-Slim's module path for the table interpreter, which lives in nets/builder.py
(every family uses it, not only the MobileNets).

TF-Slim's public names that exist here: ``op`` (``multiplier_transorm=`` /
``multiplier_transform=`` accepted), ``depth_multiplier`` (arg_scope-able),
``safe_arg_scope``, ``mobilenet_base``, ``mobilenet``, ``global_pool`` (our
``blocks.global_average``: no ``pool_op`` argument) and ``training_scope``;
nets/README.md lists the ones that do not.
"""
from nets.blocks import global_average as global_pool
from nets.builder import (depth_multiplier, mobilenet, mobilenet_base, op,
                          safe_arg_scope, training_scope)

__all__ = ["depth_multiplier", "op", "safe_arg_scope", "mobilenet_base", "mobilenet",
           "global_pool", "training_scope"]
