"""Evaluates a checkpoint on every image of a split; prints and records top-1 / top-5.

  python eval_image_classifier_mobilenet.py --checkpoint_path=result/1p \
      --dataset_dir=DATA --model_name=mobilenet_v2

--checkpoint_path is a checkpoint prefix or a directory (its latest checkpoint). Every
image of the split counts exactly once, the last partial batch included. Weights' moving
averages are used when the checkpoint has them (--use_ema=auto). Each checkpoint ends
with one line

  eval result: checkpoint=<path> global_step=<n> top1=<0.xxxx> top5=<0.xxxx> images=<n> loss=<x.xxxx>

and a record in <eval_dir>/eval_results.json plus TensorBoard scalars at its global step.
"""
import collections
import json
import os
import time

from absl import app, flags

import env as env_lib
import logger as logger_lib
from dataloader import data_provider
from datasets import dataset_factory
from estimator_impl import top_k_hits
from nets import nets_factory
from utils.checkpoints import EMA_SUFFIX, checkpoint_global_step, resolve_checkpoint
from utils.errors import UserError, exit_on_user_error, run_reporting_tf_errors
from utils.files import ensure_writable_dir, write_json
from utils.tf_compat import tf

RESULTS_FILE = "eval_results.json"


def define_eval_flags():
    env_lib.define_data_flags()
    flags.DEFINE_string("checkpoint_path", None, "Checkpoint prefix, or a directory (latest).")
    flags.DEFINE_string("eval_dir", None,
                        "Where eval_results.json and summaries go (default: "
                        "<checkpoint dir>/eval).")
    flags.DEFINE_string("split", "validation", "Dataset split to evaluate.")
    flags.DEFINE_integer("eval_image_size", None, "Eval resolution (default: the model's).")
    flags.DEFINE_float("central_fraction", 0.875, "Central crop kept before resizing.")
    flags.DEFINE_integer("max_num_batches", None, "Evaluate only this many batches.")
    flags.DEFINE_enum("use_ema", "auto", ("auto", "true", "false"),
                      "Use the weights' moving averages (auto: when the checkpoint has them).")
    flags.DEFINE_integer("log_every_n_batches", 10, "Batches between progress lines.")


EvalConfig = collections.namedtuple(
    "EvalConfig", "dataset split model_name num_classes labels_offset image_size "
                  "preprocessing_name central_fraction batch_size max_num_batches use_ema "
                  "log_every_n_batches eval_dir data_threads")


def config_from_flags(f):
    if not f.checkpoint_path:
        raise UserError("--checkpoint_path is required (a checkpoint prefix or directory)")
    if not f.dataset_dir:
        raise UserError("--dataset_dir is required (a folder of TFRecord shards)")
    for name in ("batch_size", "max_num_batches", "log_every_n_batches", "eval_image_size"):
        value = getattr(f, name)
        if value is not None and value <= 0:
            raise UserError("--%s=%s must be positive" % (name, value))
    if not 0.0 < f.central_fraction <= 1.0:
        raise UserError("--central_fraction=%s must be in (0, 1]" % f.central_fraction)
    model = nets_factory.get_model_info(f.model_name)
    dataset = dataset_factory.get_dataset(f.dataset_name, f.dataset_dir)
    if f.split not in dataset.splits:
        raise UserError("--split=%s: the dataset has %s" % (f.split, ", ".join(dataset.splits)))
    image_size = f.eval_image_size or model.default_image_size
    nets_factory.check_image_size(f.model_name, image_size)
    eval_dir = f.eval_dir or os.path.join(checkpoint_dir(f.checkpoint_path), "eval")
    return EvalConfig(
        dataset=dataset, split=f.split, model_name=f.model_name,
        num_classes=f.num_classes or dataset.num_classes - f.labels_offset,
        labels_offset=f.labels_offset, image_size=image_size,
        preprocessing_name=f.preprocessing_name or model.preprocessing_name,
        central_fraction=f.central_fraction, batch_size=f.batch_size,
        max_num_batches=f.max_num_batches, use_ema=f.use_ema,
        log_every_n_batches=f.log_every_n_batches, eval_dir=eval_dir,
        data_threads=f.data_threads)


def checkpoint_dir(path):
    return path if os.path.isdir(path) else os.path.dirname(path) or "."


def restore_map(model_variables, checkpoint, use_ema):
    """Checkpoint name for each model variable: its moving average when wanted and
    present, else its own name. A missing or misshapen variable is a UserError."""
    shapes = tf.train.load_checkpoint(checkpoint).get_variable_to_shape_map()
    has_ema = any(name.endswith(EMA_SUFFIX) for name in shapes)
    if use_ema == "true" and not has_ema:
        raise UserError("--use_ema=true but %s holds no moving averages" % checkpoint)
    take_ema = has_ema and use_ema != "false"
    mapping = {}
    for var in model_variables:
        name = var.op.name
        source = name + EMA_SUFFIX if take_ema and name + EMA_SUFFIX in shapes else name
        if source not in shapes:
            raise UserError("checkpoint %s has no variable %s; check --model_name=%s"
                            % (checkpoint, name, name.split("/")[0]))
        want = var.shape.as_list()
        if list(shapes[source]) != want:
            raise UserError("checkpoint variable %s has shape %s but the model expects %s; "
                            "check --num_classes / --labels_offset / --model_name"
                            % (source, list(shapes[source]), want))
        mapping[source] = var
    return mapping, take_ema


class Evaluator(object):
    """Builds the eval graph once per checkpoint and streams running accuracy."""

    def __init__(self, config, logger):
        self.config = config
        self.logger = logger

    def num_images(self):
        total = self.config.dataset.num_samples(self.config.split)
        if self.config.max_num_batches:
            total = min(total, self.config.max_num_batches * self.config.batch_size)
        return total

    def evaluate(self, checkpoint):
        c = self.config
        with tf.Graph().as_default():
            input_fn = data_provider.make_input_fn(
                c.dataset, c.split, is_training=False, batch_size=c.batch_size,
                image_size=c.image_size, preprocessing_name=c.preprocessing_name,
                preprocessing_options={"central_fraction": c.central_fraction},
                labels_offset=c.labels_offset, num_classes=c.num_classes,
                num_threads=c.data_threads)
            images, labels = tf.data.make_one_shot_iterator(input_fn()).get_next()
            network_fn = nets_factory.get_network_fn(c.model_name, c.num_classes,
                                                     is_training=False)
            logits, _ = network_fn(images)
            logits = tf.cast(logits, tf.float32)
            batch = {
                "top1": tf.reduce_sum(top_k_hits(logits, labels, 1)),
                "top5": tf.reduce_sum(top_k_hits(logits, labels, 5)),
                "loss": tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=labels, logits=logits)),
                "images": tf.shape(labels)[0],
            }
            mapping, used_ema = restore_map(tf.global_variables(), checkpoint, c.use_ema)
            saver = tf.train.Saver(mapping)
            with tf.Session() as sess:
                saver.restore(sess, checkpoint)
                totals = self._run_batches(sess, batch)
        step = checkpoint_global_step(checkpoint)
        images = max(totals["images"], 1)
        return collections.OrderedDict([
            ("checkpoint", checkpoint), ("global_step", step),
            ("top1", totals["top1"] / images), ("top5", totals["top5"] / images),
            ("images", totals["images"]), ("loss", totals["loss"] / images),
            ("ema", used_ema), ("time", time.strftime("%Y-%m-%dT%H:%M:%S"))])

    def _run_batches(self, sess, batch):
        c = self.config
        totals = {"top1": 0.0, "top5": 0.0, "loss": 0.0, "images": 0}
        expected = self.num_images()
        meter = logger_lib.ProgressMeter(expected, 1)
        meter.start(0)
        batches = 0
        while c.max_num_batches is None or batches < c.max_num_batches:
            try:
                values = sess.run(batch)
            except tf.errors.OutOfRangeError:
                break
            batches += 1
            for key in totals:
                totals[key] += values[key].item()  # numpy scalar -> Python number
            if batches % c.log_every_n_batches == 0:
                ips, eta = meter.update(totals["images"])
                n = float(totals["images"])
                self.logger.info("eval batch:%d images:%d/%d top1:%.4f top5:%.4f ips:%.1f "
                                 "eta:%s" % (batches, totals["images"], expected,
                                             totals["top1"] / n, totals["top5"] / n, ips,
                                             logger_lib.format_eta(eta)))
        return totals


def result_line(result):
    return ("eval result: checkpoint=%s global_step=%d top1=%.4f top5=%.4f images=%d "
            "loss=%.4f" % (result["checkpoint"], result["global_step"], result["top1"],
                           result["top5"], result["images"], result["loss"]))


def record_result(eval_dir, result):
    """Adds ``result`` to eval_results.json (one record per checkpoint, best named)
    and writes TensorBoard scalars at the checkpoint's global step."""
    path = os.path.join(eval_dir, RESULTS_FILE)
    records = []
    if os.path.exists(path):
        with open(path) as handle:
            records = json.load(handle).get("results", [])
    records = [r for r in records if r["checkpoint"] != result["checkpoint"]]
    records.append(dict(result))
    records.sort(key=lambda r: r["global_step"])
    best = max(records, key=lambda r: (r["top1"], r["global_step"]))
    write_json(path, {"results": records, "best": best})
    summary = tf.Summary(value=[tf.Summary.Value(tag="eval/" + key, simple_value=result[key])
                                for key in ("top1", "top5", "loss")])
    with tf.Graph().as_default():  # FileWriter refuses to run eagerly on TF 2.x
        writer = tf.summary.FileWriter(eval_dir)
        writer.add_summary(summary, result["global_step"])
        writer.close()


@exit_on_user_error
def main(argv):
    if len(argv) > 1:
        raise UserError("unexpected arguments %s; flags look like --name=value"
                        % " ".join(argv[1:]))
    logger_lib.quiet_tensorflow(flags.FLAGS.verbose)
    config = config_from_flags(flags.FLAGS)
    checkpoint = resolve_checkpoint(flags.FLAGS.checkpoint_path)
    ensure_writable_dir(config.eval_dir, "eval_dir")
    log = logger_lib.get_logger(os.path.join(config.eval_dir, "eval_log.log"))
    log.info("evaluating %s on %d %s images of %s at %d px"
             % (checkpoint, Evaluator(config, log).num_images(), config.split,
                config.dataset.dataset_dir, config.image_size))
    result = run_reporting_tf_errors(Evaluator(config, log).evaluate, checkpoint)
    record_result(config.eval_dir, result)
    log.info(result_line(result))
    return 0


define_eval_flags()

if __name__ == "__main__":
    app.run(main)
