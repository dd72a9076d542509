"""The PyTorch side of benchmarks/equal_budget.py (issue 34): MobileNetV2-CIFAR trained
the way kuangliu/pytorch-cifar's main.py trains it, on the images our run trains on, with
its own initialisation and data augmentation. Runs in .venv-bench (torch and numpy; the
network is parity_reference's, nothing of ours is imported).

  python benchmarks/equal_budget_reference.py DATA.npz OUT.json --epochs=3 --seed=0

DATA.npz: train_images / test_images uint8 [N, 32, 32, 3], train_labels / test_labels.
As main.py: PyTorch's default initialisation, RandomCrop(32, padding=4) and
RandomHorizontalFlip, per-channel normalisation with its means and deviations, batch
128 reshuffled every epoch, SGD 0.1, momentum 0.9, weight decay 5e-4 on every parameter,
BatchNorm2d's defaults (momentum 0.1, epsilon 1e-5), padding 1 on every side. The cosine
is per step to 0 at the last step, as our recipe's (main.py steps CosineAnnealingLR per
epoch over 200). The network is ours (TF-Slim's blocks, ReLU6); --network=source builds
kuangliu's instead (models/mobilenetv2.py: ReLU, a 1x1 expansion in the first block too,
1x1 projection shortcuts on the four stride-1 blocks that change width).
--as_ours=CHOICES (comma-separated, or "all") trains with our recipe's choices instead,
to find which of them parts the two at equal budget: init (TF-Slim's truncated normal,
stddev 0.09, on every kernel), inputs (scaled to [-1, 1]), decay (on the conv and head
kernels only), epsilon (batch norm's 1e-3), padding (TensorFlow's SAME).
Writes OUT.json: top-1 on the test images after every epoch, the loss per epoch, seconds.
"""
import argparse
import json
import time

import numpy as np
from parity_reference import LAYOUTS, MobileNetV2  # beside this script (sys.path[0])
import torch
from torch import nn

MEAN = (0.4914, 0.4822, 0.4465)  # main.py's transforms.Normalize
STD = (0.2023, 0.1994, 0.2010)
OUR_CHOICES = ("init", "inputs", "decay", "epsilon", "padding")
SLIM_STDDEV = 0.09  # TF-Slim's training_scope


def _normalize(images, our_inputs=False):
    """uint8 NHWC -> float NCHW as ToTensor then Normalize (ours: 2 x - 1)."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    if our_inputs:
        return x * 2.0 - 1.0
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


class SourceBlock(nn.Module):
    """A block of kuangliu's models/mobilenetv2.py: a 1x1 expansion even at expansion 1,
    ReLU (not ReLU6), and a 1x1 conv + batch norm shortcut where a stride-1 block changes
    the width (our table, TF-Slim's, has no shortcut there)."""

    def __init__(self, inputs, outputs, expansion, stride, bn):
        super(SourceBlock, self).__init__()
        hidden = inputs * expansion

        def conv_bn(cin, cout, kernel, stride=1, groups=1):
            return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2,
                                           groups=groups, bias=False),
                                 nn.BatchNorm2d(cout, eps=bn["epsilon"],
                                                momentum=bn["momentum"]))
        self.expand = conv_bn(inputs, hidden, 1)
        self.depthwise = conv_bn(hidden, hidden, 3, stride, hidden)
        self.project = conv_bn(hidden, outputs, 1)
        self.stride = stride
        self.shortcut = (conv_bn(inputs, outputs, 1) if stride == 1 and inputs != outputs
                         else nn.Identity())

    def forward(self, x):
        out = self.project(torch.relu(self.depthwise(torch.relu(self.expand(x)))))
        return out + self.shortcut(x) if self.stride == 1 else out


class SourceMobileNetV2(nn.Module):
    """kuangliu's MobileNetV2 for CIFAR: our layer table (LAYOUTS) with its blocks."""

    def __init__(self, num_classes, bn):
        super(SourceMobileNetV2, self).__init__()
        stem_stride, table = LAYOUTS["mobilenet_v2_cifar"]
        layers = [nn.Conv2d(3, 32, 3, stem_stride, 1, bias=False),
                  nn.BatchNorm2d(32, eps=bn["epsilon"], momentum=bn["momentum"]), nn.ReLU()]
        inputs = 32
        for expansion, outputs, repeats, stride in table:
            for repeat in range(repeats):
                layers.append(SourceBlock(inputs, outputs, expansion,
                                          stride if repeat == 0 else 1, bn))
                inputs = outputs
        layers += [nn.Conv2d(inputs, 1280, 1, bias=False),
                   nn.BatchNorm2d(1280, eps=bn["epsilon"], momentum=bn["momentum"]), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.logits = nn.Linear(1280, num_classes)

    def forward(self, x):
        return self.logits(self.features(x).mean(dim=(2, 3)))


def _network(name, as_ours):
    bn = {"momentum": 0.1, "epsilon": 1e-3 if "epsilon" in as_ours else 1e-5}
    if name == "source":
        if "padding" in as_ours:
            raise SystemExit("--as_ours=padding: TF-SAME padding is for --network=ours")
        return SourceMobileNetV2(10, bn)
    return MobileNetV2(10, bn, "tf_same" if "padding" in as_ours else "symmetric")


def _slim_init(model):
    """TF-Slim's: every conv (depthwise too) and the head's kernel from a normal truncated
    at 2 standard deviations, as tf.truncated_normal_initializer draws; biases 0."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(module.weight, std=SLIM_STDDEV, a=-2 * SLIM_STDDEV,
                                  b=2 * SLIM_STDDEV)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def _parameter_groups(model, weight_decay, ours):
    """Decay on every parameter (torch.optim's), or, as ours, on the kernels TF-Slim's
    regularizer covers: every conv but the depthwise ones, and the head's."""
    if not ours:
        return [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    decayed = [m.weight for m in model.modules()
               if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1)]
    chosen = set(id(p) for p in decayed)
    return [{"params": decayed, "weight_decay": weight_decay},
            {"params": [p for p in model.parameters() if id(p) not in chosen],
             "weight_decay": 0.0}]


def _choices(text):
    chosen = list(OUR_CHOICES) if text == "all" else [c for c in text.split(",") if c]
    unknown = sorted(set(chosen) - set(OUR_CHOICES))
    if unknown:
        raise SystemExit("--as_ours: no choice %s (have: all, %s)"
                         % (", ".join(unknown), ", ".join(OUR_CHOICES)))
    return chosen


def _augment(images, rng):
    """RandomCrop(32, padding=4) and RandomHorizontalFlip of a uint8 NHWC batch."""
    n, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)))
    out = np.empty_like(images)
    tops, lefts, flips = rng.randint(0, 9, n), rng.randint(0, 9, n), rng.rand(n) < 0.5
    for i in range(n):
        crop = padded[i, tops[i]:tops[i] + h, lefts[i]:lefts[i] + w]
        out[i] = crop[:, ::-1] if flips[i] else crop
    return out


def _top1(model, images, labels, our_inputs):
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(images), 500):
            logits = model(_normalize(images[start:start + 500], our_inputs))
            correct += int((logits.argmax(1).numpy() == labels[start:start + 500]).sum())
    model.train()
    return 100.0 * correct / len(images)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data")
    parser.add_argument("out")
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--learning_rate", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--as_ours", default="", help="our recipe's choices instead of "
                        "the source's: all, or some of " + ",".join(OUR_CHOICES))
    parser.add_argument("--network", choices=("ours", "source"), default="ours",
                        help="ours: our layer table as TF-Slim builds it; source: as "
                             "kuangliu's models/mobilenetv2.py builds it (SourceBlock)")
    args = parser.parse_args()
    as_ours = _choices(args.as_ours)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.RandomState(args.seed)
    data = np.load(args.data)
    train_images, train_labels = data["train_images"], data["train_labels"].astype(np.int64)
    test_images, test_labels = data["test_images"], data["test_labels"]
    model = _network(args.network, as_ours)
    if "init" in as_ours:
        _slim_init(model)
    our_inputs = "inputs" in as_ours
    optimizer = torch.optim.SGD(_parameter_groups(model, 5e-4, "decay" in as_ours),
                                lr=args.learning_rate, momentum=0.9)
    steps_per_epoch = len(train_images) // args.batch_size  # drop the remainder, as ours
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=steps_per_epoch * args.epochs, eta_min=0.0)
    criterion = nn.CrossEntropyLoss()
    record = {"seed": args.seed, "epochs": args.epochs, "train_images": len(train_images),
              "as_ours": as_ours, "network": args.network,
              "steps_per_epoch": steps_per_epoch, "top1": [], "loss": [], "seconds": []}
    started = time.time()
    model.train()
    for epoch in range(args.epochs):
        order = rng.permutation(len(train_images))
        losses = []
        for step in range(steps_per_epoch):
            batch = order[step * args.batch_size:(step + 1) * args.batch_size]
            images = _normalize(_augment(train_images[batch], rng), our_inputs)
            labels = torch.from_numpy(train_labels[batch])
            optimizer.zero_grad()
            loss = criterion(model(images), labels)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
            if step % 50 == 0:
                print("epoch %d step %d/%d loss %.4f (%.0f s)" % (
                    epoch + 1, step, steps_per_epoch, losses[-1], time.time() - started),
                    flush=True)
        record["loss"].append(float(np.mean(losses)))
        record["top1"].append(_top1(model, test_images, test_labels, our_inputs))
        record["seconds"].append(round(time.time() - started, 1))
        print("epoch %d: loss %.4f, top-1 %.2f%%" % (epoch + 1, record["loss"][-1],
                                                   record["top1"][-1]), flush=True)
    with open(args.out, "w") as handle:
        json.dump(record, handle, indent=1)


if __name__ == "__main__":
    main()
