"""Prints a model's trainable parameter count and multiply-adds.

    python -m nets.summary --model_name=mobilenet_v2 [--image_size=224] [--num_classes=1001]

Multiply-adds are counted from the built graph's static shapes for one image:
Conv2D (H_out*W_out*C_out*kh*kw*C_in), DepthwiseConv2dNative
(H_out*W_out*C_in*multiplier*kh*kw) and MatMul (M*K*N).  Batch norm, activations,
pooling and residual additions are not counted (the usual convention of published
figures).
"""
import argparse
import sys
import warnings

import numpy as np

from utils.errors import UserError, EXIT_USER_ERROR
from utils.tf_compat import tf
from nets import nets_factory


def _static(shape):
    dims = shape.as_list() if shape.ndims is not None else None
    if dims is None or any(d is None for d in dims):
        return None
    return dims


def count_macs(graph):
    """{op type: multiply-adds} over the Conv2D / depthwise / MatMul ops of ``graph``
    (static shapes only; batch dimension counted as given)."""
    totals = {}
    for operation in graph.get_operations():
        kind = operation.type
        if kind not in ("Conv2D", "DepthwiseConv2dNative", "MatMul"):
            continue
        out = _static(operation.outputs[0].shape)
        weights = _static(operation.inputs[1].shape)
        if out is None or weights is None:
            continue
        if kind == "Conv2D":
            kh, kw, c_in, _ = weights
            macs = int(np.prod(out)) * kh * kw * c_in
        elif kind == "DepthwiseConv2dNative":
            kh, kw = weights[:2]
            macs = int(np.prod(out)) * kh * kw
        else:
            lhs = _static(operation.inputs[0].shape)
            if lhs is None:
                continue
            macs = int(np.prod(out)) * (lhs[0] if operation.get_attr("transpose_a")
                                        else lhs[1])
        totals[kind] = totals.get(kind, 0) + macs
    return totals


def count_trainable_params(graph, include_batch_norm=True):
    """Trainable parameters; ``include_batch_norm=False`` leaves out batch-norm
    gamma/beta, the convention of TF-Slim's published MobileNet tables (3.47M for
    mobilenet_v2 1.0 at 1001 classes, against 3.51M with them)."""
    with graph.as_default():
        return int(sum(np.prod(v.get_shape().as_list())
                       for v in tf.trainable_variables()
                       if include_batch_norm or "/BatchNorm/" not in v.op.name))


def summarize(model_name, image_size=None, num_classes=1001):
    """(trainable parameters, the same without batch-norm gamma/beta, total
    multiply-adds, per-op-type MACs) for one image."""
    info = nets_factory.get_model_info(model_name)
    image_size = image_size or info.default_image_size
    nets_factory.check_image_size(model_name, image_size)
    graph = tf.Graph()
    with graph.as_default():
        images = tf.placeholder(tf.float32, [1, image_size, image_size, 3])
        nets_factory.get_network_fn(model_name, num_classes, is_training=False)(images)
    macs = count_macs(graph)
    return (count_trainable_params(graph), count_trainable_params(graph, False),
            sum(macs.values()), macs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_name", default="mobilenet_v2",
                        help="one of: " + ", ".join(nets_factory.model_names()))
    parser.add_argument("--image_size", type=int, default=None)
    parser.add_argument("--num_classes", type=int, default=1001)
    args = parser.parse_args(argv)
    tf.logging.set_verbosity(tf.logging.ERROR)
    warnings.simplefilter("ignore")  # TF-1.x-style layers' deprecation notes
    try:
        params, params_no_bn, total, macs = summarize(args.model_name, args.image_size,
                                        args.num_classes)
    except UserError as err:
        sys.stderr.write("error: %s\n" % err)
        return EXIT_USER_ERROR
    size = args.image_size or nets_factory.get_model_info(args.model_name).default_image_size
    print("model %s  image %dx%d  classes %d" % (args.model_name, size, size,
                                                 args.num_classes))
    print("trainable parameters: %d (%.2fM); without batch-norm gamma/beta: %d (%.2fM)"
          % (params, params / 1e6, params_no_bn, params_no_bn / 1e6))
    print("multiply-adds: %d (%.1fM)  [%s]" % (
        total, total / 1e6,
        ", ".join("%s %.1fM" % (k, v / 1e6) for k, v in sorted(macs.items()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
