"""Keras peer: tf_keras.applications.MobileNetV2 trained with model.fit on one batch.

The same TensorFlow runtime as ours, driven the way most TF 2 users train: eager Keras,
fit() compiling the step into a tf.function. Its best honest setting on CPU is the
default one: an in-memory tf.data batch repeated (no input cost), float32, SGD momentum
0.9, intra- and inter-op threads = cores like our session. A callback timestamps every
step, and the first one is announced so the harness also times its start-up (launch to
first finished step, tf.function tracing included); windows and warm-up are cut as for
ours (benchmarks.measure).

  .venv/bin/python -m benchmarks.keras_peer --warmup=10 --steps=40 --window=5
"""
import platform
import time

from benchmarks import measure


def main(argv=None):
    parser = measure.peer_argument_parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)

    import logger as logger_lib
    from utils.tf_compat import tf
    import tf_keras

    logger_lib.quiet_tensorflow()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    tf.random.set_random_seed(0)
    size, batch = args.image_size, args.batch_size
    model = tf_keras.applications.MobileNetV2(
        weights=None, classes=args.num_classes, input_shape=(size, size, 3))
    model.compile(optimizer=tf_keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
                  loss=tf_keras.losses.SparseCategoricalCrossentropy())
    images = tf.random.uniform([batch, size, size, 3], -1.0, 1.0)
    labels = tf.random.uniform([batch], 0, args.num_classes, dtype=tf.int32)
    data = tf.data.Dataset.from_tensors((images, labels)).cache().repeat()

    ends = []

    class StepTimes(tf_keras.callbacks.Callback):
        def on_train_batch_end(self, batch_index, logs=None):
            ends.append(time.perf_counter())
            if len(ends) == 1:
                measure.announce_first_step()

    start = [None]

    class Start(tf_keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            start[0] = time.perf_counter()

    history = model.fit(data, epochs=1, steps_per_epoch=args.warmup + args.steps,
                        callbacks=[Start(), StepTimes()], verbose=0)
    rates = measure.window_rates(start[0], ends, batch, args.warmup, args.window)
    result = measure.summarize(rates)
    result.update({
        "tensorflow": tf.__version__, "tf_keras": tf_keras.__version__,
        "parameters": int(model.count_params()), "threads": args.threads,
        "final_loss": round(float(history.history["loss"][-1]), 4),
        "python": platform.python_version(),
    })
    print(measure.result_line(result), flush=True)


if __name__ == "__main__":
    main()
