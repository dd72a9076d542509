"""Prints models' trainable parameters and multiply-adds next to the published figures.

    python -m nets.summary --model_name=mobilenet_v3_large [--image_size=224] [--num_classes=N]
    python -m nets.summary --all

Multiply-adds are counted from the built graph's static shapes for one image:
Conv2D (H_out*W_out*C_out*kh*kw*C_in), DepthwiseConv2dNative
(H_out*W_out*C_in*multiplier*kh*kw) and MatMul (M*K*N).  Batch norm, activations,
pooling, squeeze-excite gating and residual additions are not counted (the usual
convention of published figures).  Defaults: the model's evaluation size and the
class count of the published figure (1001 for TF-Slim's MobileNets, 1000 otherwise).

Sources count parameters differently: TF-Slim's tables leave out batch-norm
gamma/beta, timm / torchvision / Keras count them; ``PUBLISHED`` records which.
"""
import argparse
import collections
import sys
import warnings

import numpy as np

from nets import nets_factory
from utils.errors import EXIT_USER_ERROR, UserError
from utils.tf_compat import tf

# A published figure: parameters (with or without batch-norm gamma/beta) at
# ``num_classes``, multiply-adds at ``image_size`` (None: no consistent figure).
Published = collections.namedtuple(
    "Published", "params with_batch_norm num_classes macs image_size source")

_SLIM = "TF-Slim research/slim/nets/mobilenet/README.md"
_SLIM_TIMM = ("params: timm results-imagenet.csv (tf_mobilenetv3_*, the TF-Slim checkpoints "
              "ported); MACs: " + _SLIM)
_TPU = "tensorflow/tpu models/official/mnasnet/README.md"
_AUTOML = "google/automl efficientnetv2/README.md (FLOPs there are multiply-adds)"
PUBLISHED = {
    "mobilenet_v2": Published(3.47e6, False, 1001, 300e6, 224, _SLIM),
    "mobilenet_v2_140": Published(6.06e6, False, 1001, 582e6, 224, _SLIM),
    "mobilenet_v2_130": Published(5.34e6, False, 1001, 509e6, 224, _SLIM),
    "mobilenet_v2_075": Published(2.61e6, False, 1001, 209e6, 224, _SLIM),
    "mobilenet_v2_050": Published(1.95e6, False, 1001, 97e6, 224, _SLIM),
    "mobilenet_v2_035": Published(1.66e6, False, 1001, 59e6, 224, _SLIM),
    # TF-Slim's README rounds these to 5.4M / 4.0M / 3.9M parameters.
    "mobilenet_v3_large": Published(5.483032e6, True, 1000, 217e6, 224,
                                    "torchvision MobileNet_V3_Large_Weights (num_params, "
                                    "0.217 GFLOPS); 217M in " + _SLIM),
    "mobilenet_v3_large_075": Published(3.99e6, True, 1000, 155e6, 224, _SLIM_TIMM),
    "mobilenet_v3_large_minimalistic": Published(3.92e6, True, 1000, 209e6, 224,
                                                 _SLIM_TIMM),
    # TF-Slim's README lists the Small models at 66M / 2.9M (1.0) and 65M
    # (minimalistic): figures of an earlier Small, not of its own V3_SMALL table.  The
    # final paper (arXiv 1905.02244v5, Table 3) gives 56M / 2.5M and 44M / 2.0M (0.75).
    "mobilenet_v3_small": Published(2.542856e6, True, 1000, 57e6, 224,
                                    "torchvision MobileNet_V3_Small_Weights "
                                    "(num_params, 0.057 GFLOPS)"),
    "mobilenet_v3_small_075": Published(2.04e6, True, 1000, 44e6, 224,
                                        "params: timm; MACs: paper v5 Table 3 and " + _SLIM),
    "mobilenet_v3_small_minimalistic": Published(2.04e6, True, 1000, None, 224,
                                                 "timm (no consistent MACs published)"),
    "mnasnet_a1": Published(3.89e6, True, 1000, 312e6, 224,
                            "params: timm semnasnet_100 (3.9M in " + _TPU + "); MACs: "
                            + _TPU + " and the paper's Table 1"),
    "mnasnet_b1": Published(4.383312e6, True, 1000, 314e6, 224,
                            "torchvision MNASNet1_0_Weights (num_params, 0.314 GFLOPS)"),
    "efficientnet_v2_s": Published(21.5e6, True, 1000, 8.4e9, 384, _AUTOML),
    "efficientnet_v2_b0": Published(7.1e6, True, 1000, 0.72e9, 224, _AUTOML),
}

Summary = collections.namedtuple(
    "Summary", "params params_without_bn macs macs_by_type image_size num_classes")


def _static(shape):
    dims = shape.as_list() if shape.ndims is not None else None
    if dims is None or any(d is None for d in dims):
        return None
    return dims


MAC_OPS = ("Conv2D", "DepthwiseConv2dNative", "MatMul")


def count_macs(graph, shapes=None):
    """{op type: multiply-adds} over the MAC_OPS of ``graph`` (batch dimension counted
    as given).  ``shapes`` maps tensor names to concrete shapes where the static ones
    are not fully known (a graph built with free sizes, measured by running it)."""
    shapes = shapes or {}

    def shape_of(tensor):
        return _static(tensor.shape) or shapes.get(tensor.name)

    totals = {}
    for operation in graph.get_operations():
        kind = operation.type
        if kind not in MAC_OPS:
            continue
        out = shape_of(operation.outputs[0])
        weights = shape_of(operation.inputs[1])
        if out is None or weights is None:
            continue
        if kind == "Conv2D":
            kh, kw, c_in, _ = weights
            macs = int(np.prod(out)) * kh * kw * c_in
        elif kind == "DepthwiseConv2dNative":
            kh, kw = weights[:2]
            macs = int(np.prod(out)) * kh * kw
        else:
            lhs = shape_of(operation.inputs[0])
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


def summarize(model_name, image_size=None, num_classes=None):
    """A Summary for one image: trainable parameters (with and without batch-norm
    gamma/beta), total and per-op-type multiply-adds."""
    info = nets_factory.get_model_info(model_name)
    image_size = image_size or info.default_eval_image_size
    nets_factory.check_image_size(model_name, image_size)
    if num_classes is None:
        published = PUBLISHED.get(model_name)
        num_classes = published.num_classes if published else 1001
    graph = tf.Graph()
    with graph.as_default():
        images = tf.placeholder(tf.float32, [1, image_size, image_size, 3])
        nets_factory.get_network_fn(model_name, num_classes, is_training=False)(images)
    macs = count_macs(graph)
    return Summary(count_trainable_params(graph), count_trainable_params(graph, False),
                   sum(macs.values()), macs, image_size, num_classes)


def _versus(measured, published):
    return "%.2fM (measured %+.1f%%)" % (published / 1e6,
                                         100.0 * (measured - published) / published)


def describe(model_name, image_size=None, num_classes=None):
    """Lines for one model: what was measured, and the published figures when they
    were given for the same image size and class count."""
    result = summarize(model_name, image_size, num_classes)
    lines = [
        "model %s  image %dx%d  classes %d" % (model_name, result.image_size,
                                                result.image_size, result.num_classes),
        "trainable parameters: %d (%.2fM); without batch-norm gamma/beta: %d (%.2fM)"
        % (result.params, result.params / 1e6, result.params_without_bn,
           result.params_without_bn / 1e6),
        "multiply-adds: %d (%.1fM)  [%s]" % (
            result.macs, result.macs / 1e6, ", ".join(
                "%s %.1fM" % (k, v / 1e6) for k, v in sorted(result.macs_by_type.items())))]
    published = PUBLISHED.get(model_name)
    if published and (published.num_classes, published.image_size) == (
            result.num_classes, result.image_size):
        params = result.params if published.with_batch_norm else result.params_without_bn
        lines.append("published: parameters %s (%s batch-norm gamma/beta), multiply-adds %s; "
                     "source: %s" % (
                         _versus(params, published.params),
                         "with" if published.with_batch_norm else "without",
                         _versus(result.macs, published.macs) if published.macs else "n/a",
                         published.source))
    info = nets_factory.get_model_info(model_name)
    if info.published_top1 is not None:
        lines.append("published top-1: %g%% on %s; source: %s" % (
            info.published_top1, info.published_top1_dataset, info.published_top1_source))
    return lines


def main(argv=None):
    """Prints the summary of the models the command line names."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_name", default="mobilenet_v2",
                        help="one of: " + ", ".join(nets_factory.model_names()))
    parser.add_argument("--all", action="store_true", help="every registered model")
    parser.add_argument("--image_size", type=int, default=None,
                        help="default: the model's evaluation size")
    parser.add_argument("--num_classes", type=int, default=None,
                        help="default: that of the published figure (else 1001)")
    args = parser.parse_args(argv)
    tf.logging.set_verbosity(tf.logging.ERROR)
    warnings.simplefilter("ignore")  # TF-1.x-style layers' deprecation notes
    names = nets_factory.model_names() if args.all else [args.model_name]
    try:
        for i, name in enumerate(names):
            print("\n".join(([""] if i else []) + describe(name, args.image_size,
                                                          args.num_classes)))
    except UserError as err:
        sys.stderr.write("error: %s\n" % err)
        return EXIT_USER_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
