"""MobileNetV2 1.0 (Sandler et al. 2018) as a plain torch nn.Module, for the PyTorch peer.

Written here because torchvision / timm are not installed beside torch 2.13 (PyPI's
torchvision breaks with it). Same layer configuration as TF-Slim's and Keras's
MobileNetV2 1.0: 32-channel stem, 17 inverted-residual blocks, 1280-channel last conv,
BatchNorm + ReLU6, global average pool, dropout, 1000-way linear head (3.50 M weights).
"""
import torch
from torch import nn

# (expansion t, output channels c, repeats n, first stride s), from the paper's Table 2.
BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
          (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def conv_bn(inputs, outputs, kernel, stride=1, groups=1, relu=True):
    layers = [nn.Conv2d(inputs, outputs, kernel, stride, kernel // 2, groups=groups,
                        bias=False),
              nn.BatchNorm2d(outputs)]
    if relu:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, inputs, outputs, stride, expansion):
        super(InvertedResidual, self).__init__()
        hidden = inputs * expansion
        layers = [conv_bn(inputs, hidden, 1)] if expansion != 1 else []
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden),   # depthwise
                   conv_bn(hidden, outputs, 1, relu=False)]              # linear bottleneck
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and inputs == outputs

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes=1000, dropout=0.2):
        super(MobileNetV2, self).__init__()
        layers = [conv_bn(3, 32, 3, stride=2)]
        channels = 32
        for expansion, outputs, repeats, stride in BLOCKS:
            for index in range(repeats):
                layers.append(InvertedResidual(channels, outputs, stride if index == 0 else 1,
                                               expansion))
                channels = outputs
        layers.append(conv_bn(channels, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, num_classes))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        x = self.features(x)
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.classifier(x)


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())
