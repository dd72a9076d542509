"""The independent side of benchmarks/training_parity.py: a recipe's training steps in
PyTorch, with PyTorch's own optimizer, batch norm, loss and schedule classes, on the
batches and from the starting weights our run used. Runs in .venv-bench (torch and
numpy only; nothing of ours is imported).

  python benchmarks/parity_reference.py WORK

WORK/reference_config.json says what to run (written by training_parity.py):
  batches, start the .npz of the batches (images NHWC, labels; one per step) and of the
                 starting weights under TensorFlow's names
  network        "mobilenet_v2_cifar" or "mobilenet_v2" (LAYOUTS)
  num_classes    the head's classes
  steps          optimizer steps, one per batch
  learning_rate  the peak; schedule "cosine" (per step to 0 at ``decay_steps``) after
                 ``warmup_steps`` of linear warmup from 0
  moving_average_decay, moving_average_warmup   the weights' moving average (None:
                 none; see _moving_average)
  momentum, weight_decay, decayed   SGD's, and the weights it decays (TF names)
  bn_momentum, bn_epsilon           BatchNorm2d's (PyTorch's momentum = 1 - TF's decay)
  label_smoothing                   CrossEntropyLoss's
  padding        "tf_same" (stride-2 layers padded as TensorFlow's SAME: one row and column
                 after) or "symmetric" (PyTorch's padding=1, kuangliu/pytorch-cifar's)
  decay_every_parameter, decay_batch_norm_gammas   decay those too (the source's choice;
                 a planted difference)
  dtype          "float32" (as ours) or "float64": the same steps without float32's rounding,
                 the floor of what two float32 implementations can agree to
Writes WORK/reference.npz: the loss (cross-entropy) and total loss (plus weight decay's L2 term,
as TensorFlow's regularization adds it) at every step, and the final weights and batch-norm
statistics under TensorFlow's names.
"""
import json
import math
import os
import sys

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

# MobileNetV2's table (expansion t, output channels c, repeats n, first stride s) and
# stem stride, as the paper lays it out for ImageNet ("mobilenet_v2") and as
# kuangliu/pytorch-cifar does for 32-px images ("mobilenet_v2_cifar": stem and first
# 24-channel block at stride 1); TF-Slim's names for the blocks: expanded_conv,
# expanded_conv_1, ...
LAYOUTS = {
    "mobilenet_v2": (2, ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                         (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))),
    "mobilenet_v2_cifar": (1, ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2),
                               (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))),
}
SCOPE = "MobilenetV2/"
EMA_SUFFIX = "/ExponentialMovingAverage"


class ConvBn(nn.Module):
    """Conv (no bias), BatchNorm, optional ReLU6; ``name``: its TensorFlow scope."""

    def __init__(self, name, inputs, outputs, kernel, stride, groups, relu, bn, padding):
        super(ConvBn, self).__init__()
        self.name, self.stride, self.kernel, self.relu = name, stride, kernel, relu
        self.tf_same = padding == "tf_same" and stride > 1
        self.conv = nn.Conv2d(inputs, outputs, kernel, stride,
                              0 if self.tf_same else kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(outputs, eps=bn["epsilon"], momentum=bn["momentum"])

    def forward(self, x):
        if self.tf_same:  # SAME at stride 2 on an even size: all padding after
            total = max(self.kernel - self.stride, 0)
            x = F.pad(x, (total // 2, total - total // 2, total // 2, total - total // 2))
        x = self.bn(self.conv(x))
        return F.relu6(x) if self.relu else x


class Block(nn.Module):
    def __init__(self, name, inputs, outputs, stride, expansion, bn, padding):
        super(Block, self).__init__()
        hidden = inputs * expansion
        layers = []
        if expansion != 1:
            layers.append(ConvBn(name + "expand/", inputs, hidden, 1, 1, 1, True, bn, padding))
        layers.append(ConvBn(name + "depthwise/", hidden, hidden, 3, stride, hidden, True, bn,
                             padding))
        layers.append(ConvBn(name + "project/", hidden, outputs, 1, 1, 1, False, bn, padding))
        self.layers = nn.Sequential(*layers)
        self.residual = stride == 1 and inputs == outputs

    def forward(self, x):
        return x + self.layers(x) if self.residual else self.layers(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes, bn, padding, layout="mobilenet_v2_cifar"):
        super(MobileNetV2, self).__init__()
        stem_stride, blocks = LAYOUTS[layout]
        layers = [ConvBn(SCOPE + "Conv/", 3, 32, 3, stem_stride, 1, True, bn, padding)]
        inputs, index = 32, 0
        for expansion, outputs, repeats, stride in blocks:
            for repeat in range(repeats):
                name = SCOPE + "expanded_conv%s/" % ("_%d" % index if index else "")
                layers.append(Block(name, inputs, outputs, stride if repeat == 0 else 1,
                                    expansion, bn, padding))
                inputs, index = outputs, index + 1
        layers.append(ConvBn(SCOPE + "Conv_1/", inputs, 1280, 1, 1, 1, True, bn, padding))
        self.features = nn.Sequential(*layers)
        self.logits = nn.Linear(1280, num_classes)

    def forward(self, x):
        x = self.features(x)
        return self.logits(x.mean(dim=(2, 3)))

    def named_tf_tensors(self):
        """(TensorFlow name, tensor, layout) of every weight and statistic: layout
        "conv" (TF [H, W, in, out] <-> [out, in, H, W]), "depthwise" ([H, W, C, 1] <->
        [C, 1, H, W]), "dense" ([1, 1, in, out] <-> [out, in]) or "vector"."""
        for module in self.modules():
            if isinstance(module, ConvBn):
                depthwise = module.conv.groups > 1
                yield (module.name + ("depthwise_weights" if depthwise else "weights"),
                       module.conv.weight, "depthwise" if depthwise else "conv")
                for tf_name, tensor in (("gamma", module.bn.weight), ("beta", module.bn.bias),
                                        ("moving_mean", module.bn.running_mean),
                                        ("moving_variance", module.bn.running_var)):
                    yield module.name + "BatchNorm/" + tf_name, tensor, "vector"
        yield SCOPE + "Logits/Conv2d_1c_1x1/weights", self.logits.weight, "dense"
        yield SCOPE + "Logits/Conv2d_1c_1x1/biases", self.logits.bias, "vector"


def from_tf(value, layout):
    if layout in ("conv", "depthwise"):
        value = value.transpose(3, 2, 0, 1) if layout == "conv" else value.transpose(2, 3, 0, 1)
    elif layout == "dense":
        value = value[0, 0].T
    return torch.from_numpy(np.ascontiguousarray(value))


def to_tf(tensor, layout):
    value = tensor.detach().numpy()
    if layout == "conv":
        return value.transpose(2, 3, 1, 0)
    if layout == "depthwise":
        return value.transpose(2, 3, 0, 1)
    if layout == "dense":
        return value.T[None, None]
    return value


def _schedule(optimizer, warmup_steps, decay_steps):
    """Linear warmup from 0 over ``warmup_steps`` (LambdaLR: LinearLR cannot start at
    0), then CosineAnnealingLR to 0 over ``decay_steps``."""
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=decay_steps,
                                                        eta_min=0.0)
    if not warmup_steps:
        return cosine
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: step / warmup_steps)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, cosine],
                                                 milestones=[warmup_steps])


def _moving_average(model, decay, warmup):
    """torch.optim.swa_utils.AveragedModel over the weights and batch-norm statistics
    (use_buffers, as TF-Slim averages its model variables), starting at the initial
    weights as TensorFlow's ExponentialMovingAverage does (AveragedModel's first update
    copies: made here, before training, so its count is the global step). ``warmup``:
    TensorFlow's num_updates rule, decay min(decay, (1 + n) / (10 + n)) at step n;
    else the fixed decay. None without a decay."""
    if not decay:
        return None

    def rule(averaged, current, count):
        rate = min(decay, (1.0 + float(count)) / (10.0 + float(count))) if warmup else decay
        return rate * averaged + (1.0 - rate) * current

    average = torch.optim.swa_utils.AveragedModel(model, avg_fn=rule, use_buffers=True)
    average.update_parameters(model)  # the start: a copy; its count becomes 1
    return average


def train(work):
    with open(os.path.join(work, "reference_config.json")) as handle:
        config = json.load(handle)
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    bn = {"momentum": config["bn_momentum"], "epsilon": config["bn_epsilon"]}
    dtype = getattr(torch, config.get("dtype", "float32"))
    model = MobileNetV2(config["num_classes"], bn, config["padding"],
                        config["network"]).to(dtype)
    start = np.load(config["start"])
    tensors = list(model.named_tf_tensors())
    with torch.no_grad():
        for name, tensor, layout in tensors:
            tensor.copy_(from_tf(start[name], layout).to(dtype))
    decayed = set(config["decayed"])
    if config.get("decay_every_parameter"):
        decayed = set(name for name, tensor, _ in tensors if tensor.requires_grad)
    if config.get("decay_batch_norm_gammas"):
        decayed |= set(name for name, _, _ in tensors if name.endswith("/gamma"))
    by_name = dict((name, tensor) for name, tensor, _ in tensors)
    decay_group = [by_name[name] for name in sorted(decayed)]
    other_group = [t for n, t, _ in tensors if n not in decayed and t.requires_grad]
    optimizer = torch.optim.SGD(
        [{"params": decay_group, "weight_decay": config["weight_decay"]},
         {"params": other_group, "weight_decay": 0.0}],
        lr=config["learning_rate"], momentum=config["momentum"])
    schedule = _schedule(optimizer, config.get("warmup_steps", 0), config["decay_steps"])
    average = _moving_average(model, config.get("moving_average_decay"),
                              config.get("moving_average_warmup", True))
    criterion = nn.CrossEntropyLoss(label_smoothing=config["label_smoothing"])
    batches = np.load(config["batches"])
    losses, totals, rates = [], [], []
    model.train()
    for step in range(config["steps"]):
        images = torch.from_numpy(np.ascontiguousarray(
            batches["images"][step].transpose(0, 3, 1, 2))).to(dtype)
        labels = torch.from_numpy(batches["labels"][step].astype(np.int64))
        optimizer.zero_grad()
        loss = criterion(model(images), labels)
        l2 = sum(float((t.detach().double() ** 2).sum()) for t in decay_group) / 2.0
        losses.append(float(loss.detach()))
        totals.append(float(loss.detach()) + config["weight_decay"] * l2)
        rates.append(optimizer.param_groups[0]["lr"])
        loss.backward()
        optimizer.step()
        schedule.step()
        if average is not None:
            average.update_parameters(model)
    final = dict((name, to_tf(tensor, layout)) for name, tensor, layout in tensors)
    if average is not None:
        for name, tensor, layout in average.module.named_tf_tensors():
            final[name + EMA_SUFFIX] = to_tf(tensor, layout)
    np.savez(os.path.join(work, "reference.npz"), loss=np.array(losses),
             total_loss=np.array(totals), learning_rate=np.array(rates), **final)
    print("reference: %d steps, loss %.6f -> %.6f" % (config["steps"], losses[0], losses[-1]))
    if not all(math.isfinite(x) for x in losses):
        raise SystemExit("reference: the loss is not finite")


if __name__ == "__main__":
    train(sys.argv[1])
