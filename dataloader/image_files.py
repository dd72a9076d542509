"""Image files on disk, for prediction: finding them, checking that they are images, and
batches preprocessed exactly as evaluation preprocesses the TFRecords' images."""
import os

from dataloader import preprocessing
from utils.errors import UserError
from utils.tf_compat import do_not_convert, tf

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
# What the preprocessing decodes; anything else is refused before TensorFlow sees it.
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")


def list_image_files(paths):
    """The image files named by ``paths`` (files, or folders searched recursively for
    .jpg/.jpeg/.png), in the order given, each folder's files sorted."""
    found = []
    for path in paths:
        if os.path.isdir(path):
            inside = sorted(
                os.path.join(folder, name)
                for folder, _, names in os.walk(path) for name in names
                if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."))
            if not inside:
                raise UserError("no .jpg/.jpeg/.png images in the folder %s" % path)
            found.extend(inside)
        elif os.path.isfile(path):
            found.append(path)
        else:
            raise UserError("no such file or folder: %s" % path)
    for path in found:
        check_image_file(path)
    return found


def check_image_file(path):
    """UserError unless ``path`` starts like a JPEG or PNG file."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except (IOError, OSError) as err:
        raise UserError("cannot read %s (%s)" % (path, err.strerror or err))
    if not any(head.startswith(signature) for signature in _SIGNATURES):
        raise UserError("%s is not a JPEG or PNG image; pass image files or folders of them"
                        % path)


def image_batches(paths, image_size, batch_size, central_fraction=0.875,
                  preprocessing_name="inception"):
    """Yields (paths, float32 [b, S, S, 3]) batches of the files, preprocessed as for
    evaluation (central crop, resize, scale to [-1, 1])."""
    preprocess = preprocessing.get_preprocessing(
        preprocessing_name, {"central_fraction": central_fraction})

    @do_not_convert  # plain TF ops: nothing for autograph to convert
    def load(path):
        return preprocess(tf.io.read_file(path), image_size, image_size, False)

    with tf.Graph().as_default():
        images = tf.data.Dataset.from_tensor_slices(list(paths)).map(load).batch(batch_size)
        next_batch = tf.data.make_one_shot_iterator(images).get_next()
        with tf.Session() as sess:
            for start in range(0, len(paths), batch_size):
                chunk = paths[start:start + batch_size]
                try:
                    yield chunk, sess.run(next_batch)
                except tf.errors.InvalidArgumentError as err:
                    raise UserError("cannot decode an image among %s ... %s (%s); remove "
                                    "damaged files" % (chunk[0], chunk[-1],
                                                       err.message.splitlines()[0]))
