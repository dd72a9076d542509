"""Quantization-aware training that TF 1.15's ``tf.contrib.quantize`` would recognise.

``rewrite`` folds batch norm into the convolutions and inserts fake-quantization ops into
a network already built in the graph (the rule TF-Slim's ``train_image_classifier.py
--quantize_delay`` used), ``fake_quant`` holds the range variables under contrib's names,
and ``ranges`` reads a checkpoint to tell whether it was trained so.
"""
