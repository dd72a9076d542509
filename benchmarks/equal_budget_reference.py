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
epoch over 200). The layer table is ours (TF-Slim's): main.py's network also has 1x1
projection shortcuts on the four stride-1 blocks that change width.
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
from parity_reference import MobileNetV2  # the script beside this one (sys.path[0])
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
    args = parser.parse_args()
    as_ours = _choices(args.as_ours)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.RandomState(args.seed)
    data = np.load(args.data)
    train_images, train_labels = data["train_images"], data["train_labels"].astype(np.int64)
    test_images, test_labels = data["test_images"], data["test_labels"]
    model = MobileNetV2(10, {"momentum": 0.1,
                             "epsilon": 1e-3 if "epsilon" in as_ours else 1e-5},
                        "tf_same" if "padding" in as_ours else "symmetric")
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
              "as_ours": as_ours,
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
