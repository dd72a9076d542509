"""Exporting trained checkpoints (SavedModel, frozen graph, TFLite, ONNX) and loading any
exported model back for prediction and evaluation. See export_model.py and predict.py."""
