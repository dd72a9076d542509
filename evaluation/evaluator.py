"""Evaluation of one checkpoint on a dataset split, shared by the evaluator command and
train.py --eval_every_n_epochs: restore (moving averages when present), run every image
once, stream running top-1 / top-5, and record results for people and TensorBoard.

Every batch has the configured size: the last one is padded with blank images weighted 0
(data_provider.pad_to_batch), so the graph sees one static input shape on every device
(on the NPU a second shape would compile the whole graph again: tf_adapter's GeOp
rebuilds it when an input shape changes, kernels/geop_npu.cc MaybeUpdateShape) and the
sums count each image of the split exactly once. The session runs where the config's
``device`` says: the host CPU, or the NPU with devices.inference's session config."""
import collections
import json
import os
import time

import numpy as np

from dataloader import data_provider
from devices import inference
from nets import checkpoint_names, nets_factory
from utils.checkpoint_health import DamagedCheckpoint, require_intact
from utils.checkpoints import EMA_SUFFIX, checkpoint_global_step
from utils.errors import UserError
from utils.files import ensure_writable_dir, write_json
from utils.progress import ProgressMeter, format_eta
from utils.tf_compat import tf

RESULTS_FILE = "eval_results.json"
DAMAGED_ADVICE = ("copy it again from where it came from, or evaluate another checkpoint "
                  "(--eval_all_checkpoints, --watch and --ledger skip damaged ones)")


# Evaluator's graph, kept across checkpoints: ``rewind`` restarts the split, ``savers``
# holds one Saver per restore map (raw weights, moving averages).
_KeptGraph = collections.namedtuple(
    "_KeptGraph", "graph session variables batch rewind savers quantization")


def restore_map(model_variables, checkpoint, use_ema):
    """Checkpoint tensor name for each model variable: its moving average when wanted and
    present, else its own; the checkpoint's names are read as ours first
    (nets/checkpoint_names.py: automl's EfficientNetV2 names too). A missing or
    misshapen variable is a UserError. Restore it with ``saver``."""
    names = checkpoint_names.read(checkpoint)
    shapes = names.shapes
    take_ema = checkpoint_names.use_moving_averages(names, use_ema)
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
                            % (names.source(source), list(shapes[source]), want))
        mapping[names.source(source)] = var
    return mapping, take_ema


def saver(mapping):
    """A Saver restoring ``restore_map``'s mapping; it reshapes what another layout
    stores in another shape (automl's dense head), sizes having been checked."""
    return tf.train.Saver(mapping, reshape=True)


class Evaluator(object):
    """Streams running accuracy over a split. The eval graph and its session are built on
    the first evaluate() and kept: each checkpoint is restored into them, so sweeping many
    (--eval_all_checkpoints, --watch, --ledger) builds the network once. close() ends
    the session."""

    def __init__(self, config, logger):
        self.config = config
        self.logger = logger
        self._kept = None  # the kept graph: _KeptGraph
        # Checkpoints read whole already, by (prefix, index mtime): the ledger evaluates
        # each twice (raw and moving-average weights) and need not read it twice.
        self._intact = set()

    def num_images(self):
        total = self.config.dataset.num_samples(self.config.split)
        if self.config.max_num_batches:
            total = min(total, self.config.max_num_batches * self.config.batch_size)
        return total

    def _input_dataset(self):
        c = self.config
        return data_provider.make_input_fn(
            c.dataset, c.split, is_training=False, batch_size=c.batch_size,
            image_size=c.image_size, preprocessing_name=c.preprocessing_name,
            preprocessing_options={"central_fraction": c.central_fraction},
            labels_offset=c.labels_offset, num_classes=c.num_classes,
            num_threads=c.data_threads, pad_final_batch=True)()

    def build_inputs(self):
        """(images float32 [B, S, S, 3], labels int32 [B], weights float32 [B]) over the
        split, one pass, B the batch size throughout: the last batch is padded with
        images of weight 0."""
        return tf.data.make_one_shot_iterator(self._input_dataset()).get_next()

    def session_config(self):
        """The ConfigProto of the evaluation session: on config.device (host or npu, with
        config.precision_mode), devices.inference."""
        return inference.session_config(self.config.device, self.config.precision_mode)

    def _logits(self, images, quantization=None):
        """The network's logits: float, or simulated int8 (``quantization``, as
        CheckpointNames.quantization gives it for a checkpoint with ranges)."""
        c = self.config
        network_fn = nets_factory.get_network_fn(c.model_name, c.num_classes,
                                                 is_training=False, quantize=quantization)
        logits, _ = network_fn(images)
        return tf.cast(logits, tf.float32)

    def build_logits(self, checkpoint=None):
        """(logits float32 [B, classes], labels int32 [B], images, weights) over the
        split, one pass (build_inputs: padding weighs 0); the simulated int8 network when
        ``checkpoint`` holds quantization ranges."""
        images, labels, weights = self.build_inputs()
        quantization = checkpoint_names.read(checkpoint).quantization if checkpoint else None
        return self._logits(images, quantization), labels, images, weights

    def restore(self, sess, checkpoint):
        """Restores the default graph's variables; returns whether EMA weights were used."""
        mapping, used_ema = restore_map(tf.global_variables(), checkpoint,
                                        self.config.use_ema)
        saver(mapping).restore(sess, checkpoint)
        return used_ema

    def evaluate(self, checkpoint, use_ema=None):
        """Evaluates one checkpoint (moving averages per ``use_ema``, default the
        config's); returns its result record (see result_line)."""
        # Read whole first: TensorFlow would fail deep inside the restore otherwise.
        seen = (checkpoint, os.path.getmtime(checkpoint + ".index")
                if os.path.exists(checkpoint + ".index") else None)
        if seen not in self._intact:
            require_intact(checkpoint, advice=DAMAGED_ADVICE)
            self._intact.add(seen)
        quantization = checkpoint_names.read(checkpoint).quantization
        if self._kept is not None and self._kept.quantization != quantization:
            self.close()  # a float checkpoint after a quantized one, or the reverse
        if self._kept is None:
            self._kept = self._build_kept_graph(quantization)
            if quantization is not None and self.logger is not None:
                self.logger.info("%s holds quantization ranges: scoring its simulated int8 "
                                 "graph (batch norm folded, weights%s and activations "
                                 "fake-quantized)" % (checkpoint, " (per channel)"
                                                      if quantization.per_channel else ""))
        kept = self._kept
        mapping, used_ema = restore_map(kept.variables, checkpoint,
                                        use_ema or self.config.use_ema)
        key = tuple(sorted(mapping))
        with kept.graph.as_default():  # TF 2.x is eager outside a graph
            if key not in kept.savers:  # raw and EMA weights: a saver each, built once
                kept.savers[key] = saver(mapping)
            kept.savers[key].restore(kept.session, checkpoint)
            kept.session.run(kept.rewind)
            started = time.time()
            totals = self._run_batches(lambda: kept.session.run(kept.batch))
            seconds = time.time() - started
        source = [("checkpoint", checkpoint),
                  ("global_step", checkpoint_global_step(checkpoint))]
        if quantization is not None:
            source.append(("simulated_int8", True))
        return _result(source, totals, seconds, used_ema, self.config.device,
                       self.config.precision_mode)

    def _build_kept_graph(self, quantization):
        graph = tf.Graph()
        with graph.as_default():
            iterator = tf.data.make_initializable_iterator(self._input_dataset())
            images, labels, weights = iterator.get_next()
            logits = self._logits(images, quantization)
            counted = tf.greater(weights, 0.0)  # the padding weighs 0
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                    logits=logits)
            batch = {
                "top1": tf.reduce_sum(top_k_hits(logits, labels, 1) * weights),
                "top5": tf.reduce_sum(top_k_hits(logits, labels, 5) * weights),
                # where(), not a product: a padded image's loss never reaches the sum.
                "loss": tf.reduce_sum(tf.where(counted, losses, tf.zeros_like(losses))),
                "images": tf.reduce_sum(tf.cast(counted, tf.int32)),
            }
            variables = tf.global_variables()
        session = tf.Session(graph=graph, config=self.session_config())
        return _KeptGraph(graph, session, variables, batch, iterator.initializer, {},
                          quantization)

    def close(self):
        if self._kept is not None:
            self._kept.session.close()
            self._kept = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def evaluate_model(self, model):
        """Evaluates an exported model (export.models.LoadedModel) in its own runtime
        (TFLite, onnxruntime, ...) on the same images, on the host CPU; returns its
        result record."""
        with tf.Graph().as_default():
            inputs = self.build_inputs()
            with tf.Session(config=inference.session_config(inference.HOST)) as sess:
                def run_batch():
                    images, labels, weights = sess.run(inputs)
                    return batch_totals(model.logits(images), labels, weights)
                started = time.time()
                totals = self._run_batches(run_batch)
                seconds = time.time() - started
        return _result([("checkpoint", model.path),
                        ("model_format", model.meta.get("format", model.kind)),
                        ("global_step", model.meta.get("global_step") or 0)],
                       totals, seconds, model.meta.get("ema"), inference.HOST, None)

    def evaluate_model_and_record(self, model):
        """evaluate_model(), then recorded as evaluate_and_record() does."""
        result = self.evaluate_model(model)
        record_result(self.config.eval_dir, result)
        self.logger.info(result_line(result))
        return result

    def evaluate_and_record(self, checkpoint):
        """evaluate(), then the result into eval_results.json, TensorBoard and the log."""
        result = self.evaluate(checkpoint)
        record_result(self.config.eval_dir, result)
        self.logger.info(result_line(result))
        return result

    def evaluate_or_skip(self, checkpoint):
        """evaluate_and_record(), but a damaged checkpoint is skipped: a warning line and
        a "skipped" record in eval_results.json; returns None then. For sweeps over many
        checkpoints (--eval_all_checkpoints, --watch, evaluation while training)."""
        try:
            return self.evaluate_and_record(checkpoint)
        except DamagedCheckpoint as err:
            self.logger.info("warning: skipped %s: damaged (%s)" % (checkpoint, err.problem))
            record_skipped(self.config.eval_dir, checkpoint, err.problem)
            return None

    def _run_batches(self, run_batch):
        """Sums run_batch()'s top1 / top5 / loss / images over the split, with progress."""
        c = self.config
        totals = {"top1": 0.0, "top5": 0.0, "loss": 0.0, "images": 0}
        expected = self.num_images()
        meter = ProgressMeter(expected, 1)
        meter.start(0)
        batches = 0
        while c.max_num_batches is None or batches < c.max_num_batches:
            try:
                values = run_batch()
            except tf.errors.OutOfRangeError:
                break
            batches += 1
            for key in totals:
                totals[key] += np.asarray(values[key]).item()  # -> Python number
            if batches % c.log_every_n_batches == 0:
                ips, eta = meter.update(totals["images"])
                n = float(totals["images"])
                self.logger.info("eval batch:%d images:%d/%d top1:%.4f top5:%.4f ips:%.1f "
                                 "eta:%s" % (batches, totals["images"], expected,
                                             totals["top1"] / n, totals["top5"] / n, ips,
                                             format_eta(eta)))
        return totals


def _result(source, totals, seconds, used_ema, device, precision_mode):
    """The result record: where it came from, the scores, and where it was computed
    (``device``: npu or host; ``precision_mode``: the NPU's, None on the host)."""
    images = max(totals["images"], 1)
    return collections.OrderedDict(source + [
        ("top1", totals["top1"] / images), ("top5", totals["top5"] / images),
        ("images", int(totals["images"])), ("loss", totals["loss"] / images),
        ("ema", used_ema), ("images_per_sec", round(totals["images"] / max(seconds, 1e-9), 1)),
        ("device", device), ("precision_mode", precision_mode),
        ("time", time.strftime("%Y-%m-%dT%H:%M:%S"))])


def batch_totals(logits, labels, weights=None):
    """Summed top-1 / top-5 hits and cross-entropy of a numpy batch, as the graph
    metrics count them (a label tied with the k-th largest logit counts as a hit);
    rows whose ``weights`` are 0 (the padding) are left out."""
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels)
    if weights is not None:
        kept = np.asarray(weights) > 0
        logits, labels = logits[kept], labels[kept]
    own = logits[np.arange(len(labels)), labels]
    k = min(5, logits.shape[1])
    kth = -np.sort(-logits, axis=1)[:, k - 1]
    peak = logits.max(axis=1)
    log_sum = peak + np.log(np.exp(logits - peak[:, None]).sum(axis=1))
    return {"top1": np.sum(own >= peak), "top5": np.sum(own >= kth),
            "loss": np.sum(log_sum - own), "images": len(labels)}


def result_line(result):
    """The one line a finished evaluation prints (see the evaluator's docstring)."""
    source = ("model_file=%s format=%s" % (result["checkpoint"], result["model_format"])
              if "model_format" in result else "checkpoint=%s" % result["checkpoint"])
    if result.get("simulated_int8"):
        source += " (simulated int8)"
    where = "device=%s" % result["device"]
    if result.get("precision_mode"):
        where += " precision_mode=%s" % result["precision_mode"]
    return ("eval result: %s global_step=%d top1=%.4f top5=%.4f images=%d loss=%.4f %s"
            % (source, result["global_step"], result["top1"], result["top5"],
               result["images"], result["loss"], where))


def top_k_hits(logits, labels, k):
    """1.0 where the label is among the k largest logits (k capped at the class count)."""
    k = min(k, int(logits.shape[-1]))
    return tf.cast(tf.nn.in_top_k(tf.cast(logits, tf.float32), labels, k), tf.float32)


def _results_file(eval_dir):
    """eval_results.json's content: results (one per checkpoint), best, skipped."""
    path = os.path.join(eval_dir, RESULTS_FILE)
    if not os.path.exists(path):
        return {"results": [], "skipped": []}
    try:
        with open(path) as handle:
            content = json.load(handle)
        if not isinstance(content["results"], list):
            raise TypeError("its results are no list")
    except (ValueError, KeyError, TypeError) as err:
        raise UserError("%s is unreadable (%s); move it away or pass another --eval_dir"
                        % (path, err))
    content.setdefault("skipped", [])
    return content


def load_results(eval_dir):
    """The records of eval_results.json in eval_dir (empty when there is none)."""
    return _results_file(eval_dir)["results"]


def _write_results(eval_dir, records, skipped):
    records.sort(key=lambda r: r["global_step"])
    content = {"results": records, "skipped": skipped}
    if records:
        content["best"] = max(records, key=lambda r: (r["top1"], r["global_step"]))
    write_json(os.path.join(eval_dir, RESULTS_FILE), content)


def record_skipped(eval_dir, checkpoint, problem):
    """Notes in eval_results.json that ``checkpoint`` was skipped, and why."""
    ensure_writable_dir(eval_dir, "eval_dir")
    content = _results_file(eval_dir)
    skipped = [s for s in content["skipped"] if s["checkpoint"] != checkpoint]
    skipped.append({"checkpoint": checkpoint, "problem": problem,
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
    _write_results(eval_dir, content["results"], skipped)


def record_result(eval_dir, result):
    """Adds ``result`` to eval_results.json (one record per checkpoint, best named)
    and writes TensorBoard scalars at the checkpoint's global step."""
    ensure_writable_dir(eval_dir, "eval_dir")
    content = _results_file(eval_dir)
    source = result["checkpoint"]
    _write_results(eval_dir, [r for r in content["results"] if r["checkpoint"] != source]
                   + [dict(result)],
                   [s for s in content["skipped"] if s["checkpoint"] != source])
    summary = tf.Summary(value=[tf.Summary.Value(tag="eval/" + key, simple_value=result[key])
                                for key in ("top1", "top5", "loss")])
    with tf.Graph().as_default():  # FileWriter refuses to run eagerly on TF 2.x
        writer = tf.summary.FileWriter(eval_dir)
        writer.add_summary(summary, result["global_step"])
        writer.close()
