"""PyTorch peer: MobileNetV2 training throughput on one in-memory random batch.

Runs in .venv-bench (torch 2.13 CPU). Its best honest CPU setting: channels_last
tensors (oneDNN's preferred layout for depthwise convs), all cores for intra-op work,
and, set by the harness in this process's environment as in every benchmark process, an
allocator that keeps freed memory (MALLOC_MMAP_MAX_=0, MALLOC_TRIM_THRESHOLD_ large, or
jemalloc) so each step does not map and unmap its activations again: 1.5-3x the default
speed here.
Same batch, resolution, float32 and SGD momentum 0.9 (weight decay 4e-5) as ours.

  .venv-bench/bin/python -m benchmarks.torch_peer --warmup=10 --steps=40 --window=5
"""
import os
import platform
import time

from benchmarks import measure


def main(argv=None):
    parser = measure.peer_argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--no_channels_last", action="store_true")
    args = parser.parse_args(argv)

    import torch
    from torch.nn import functional
    from benchmarks.torch_mobilenet_v2 import MobileNetV2

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    channels_last = not args.no_channels_last
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = MobileNetV2(args.num_classes).to(memory_format=layout).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9,
                                weight_decay=4e-5)
    images = torch.rand(args.batch_size, 3, args.image_size, args.image_size) * 2 - 1
    images = images.contiguous(memory_format=layout)
    labels = torch.randint(0, args.num_classes, (args.batch_size,))

    ends = []
    start = time.perf_counter()
    for _ in range(args.warmup + args.steps):
        optimizer.zero_grad(set_to_none=True)
        loss = functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        ends.append(time.perf_counter())
        if len(ends) == 1:
            measure.announce_first_step()  # the harness times start-up from this line
    rates = measure.window_rates(start, ends, args.batch_size, args.warmup, args.window)
    result = measure.summarize(rates)
    result.update({
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "channels_last": channels_last, "final_loss": round(loss.item(), 4),
        "python": platform.python_version(),
        "malloc_env": {k: v for k, v in os.environ.items()
                       if k.startswith("MALLOC_") or k == "LD_PRELOAD"},
    })
    print(measure.result_line(result), flush=True)


if __name__ == "__main__":
    main()
