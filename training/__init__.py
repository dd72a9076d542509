"""What a training run is made of, beside the network and the device.

optimization  learning-rate schedules, optimizers, the classification loss
finetune      warm starts from another checkpoint, trainable and frozen scopes
resilience    signals, divergence and loss-scale guards, finite-weight saves
graph_cache   the training graph of an earlier run, imported instead of rebuilt
preflight     every check train.py can make before building a graph
"""
