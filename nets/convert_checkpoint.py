"""Renames a checkpoint between google/automl's EfficientNetV2 names and ours.

  python -m nets.convert_checkpoint --from=automl IN OUT
  python -m nets.convert_checkpoint --to=automl [--model_name=efficientnet_v2_s] IN OUT

IN is a checkpoint prefix or folder; OUT the prefix written. Every tensor is copied
bit for bit under its new name (nets/automl_names.py), moving averages and optimizer
slots too, automl's dense head kernel [C, N] reshaped to our 1x1 convolution's
[1, 1, C, N] and back; global_step and tensors of neither naming keep their names.
No command here needs --from=automl (they read automl's names as they are); it is for
tools that want our names, and --to=automl for automl's own tools. --to=automl takes
the network from --model_name, else from the model_spec.json beside IN.
"""
import os

from absl import flags

from nets import automl_names, checkpoint_names
from utils.checkpoints import read_model_spec, resolve_checkpoint, write_tensors
from utils.errors import UserError, exit_on_user_error, run_main
from utils.tf_compat import tf



def define_flags():
    """Defined when run, not on import: the library's other commands define
    --model_name too."""
    flags.DEFINE_enum("from", None, ("automl",), "Read automl's names, write ours.")
    flags.DEFINE_enum("to", None, ("automl",), "Read ours, write automl's names.")
    flags.DEFINE_string("model_name", None, "--to=automl: our network (efficientnet_v2_s, "
                                            "efficientnet_v2_b0); default: "
                                            "model_spec.json's.")


def _automl_name_of(model_name):
    for automl, ours in automl_names.MODELS.items():
        if ours == model_name:
            return automl
    raise UserError("--to=automl converts %s, not %s" % (
        ", ".join(automl_names.MODELS.values()), model_name))


def converted(checkpoint, to_automl, model_name=None):
    """{new name: numpy array} of every tensor of ``checkpoint``."""
    reader = tf.train.load_checkpoint(checkpoint)
    names = list(reader.get_variable_to_shape_map())
    if to_automl:
        if automl_names.automl_model(names):
            raise UserError("%s is in automl's names already" % checkpoint)
        model_name = model_name or read_model_spec(
            os.path.dirname(checkpoint) or ".").get("model_name")
        if not model_name:
            raise UserError("which network is %s? pass --model_name (no model_spec.json "
                            "beside it)" % checkpoint)
        renamed = automl_names.to_automl(names, _automl_name_of(model_name))
        shape_of = automl_names.automl_shape
    else:
        if checkpoint_names.read(checkpoint).automl_model is None:
            raise UserError("%s is not in google/automl's EfficientNetV2 names" % checkpoint)
        renamed = automl_names.from_automl(names)
        shape_of = automl_names.our_shape
    tensors = {}
    for name in names:
        value = reader.get_tensor(name)
        tensors[renamed.get(name, name)] = value.reshape(shape_of(name, value.shape))
    return tensors


@exit_on_user_error
def main(argv):
    """Converts the checkpoint IN to OUT between automl's names and ours."""
    f = flags.FLAGS
    if len(argv) != 3 or bool(getattr(f, "from")) == bool(f.to):  # "from": a keyword
        raise UserError("usage: python -m nets.convert_checkpoint (--from=automl | "
                        "--to=automl) IN OUT")
    checkpoint = resolve_checkpoint(argv[1], "IN")
    output = argv[2]
    if tf.io.gfile.exists(output + ".index"):
        raise UserError("%s.index exists; choose another OUT" % output)
    tensors = converted(checkpoint, bool(f.to), f.model_name)
    write_tensors(output, tensors)
    print("wrote %s: %d tensors of %s in %s names" % (
        output, len(tensors), checkpoint, "automl's" if f.to else "our"))
    return 0


if __name__ == "__main__":
    define_flags()
    run_main(main)
