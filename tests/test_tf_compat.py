"""utils.tf_compat's import bridges, in a fresh interpreter (imports are per process)."""
import subprocess
import sys

import pytest

from tests.cli_helpers import ROOT

CHECK = """
import sys
from utils.tf_compat import slim, tf
assert "tf_keras" not in sys.modules, "importing tf_compat imported tf_keras"
assert "sklearn.metrics" not in sys.modules
# tf-slim's Keras-layer batch norm still finds tf-keras 2.15's legacy layers by the old
# name, as the very module objects of the new name.
import tf_keras.legacy_tf_layers.normalization as old
import tf_keras.src.legacy_tf_layers.normalization as new
assert old is new and old.__spec__.name == "tf_keras.src.legacy_tf_layers.normalization"
import tf_keras.src.legacy_tf_layers.core as core
import tf_keras.legacy_tf_layers.core
assert sys.modules["tf_keras.legacy_tf_layers.core"] is core
with tf.Graph().as_default():
    images = tf.zeros([2, 4, 4, 3])
    out = slim.batch_norm(images, is_training=True, fused=False)  # the Keras layer path
    assert out.shape.as_list() == [2, 4, 4, 3]
print("ok")
"""


@pytest.mark.slow
def test_slim_imports_without_tf_keras_and_finds_legacy_layers_on_demand():
    out = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
