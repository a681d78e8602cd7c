"""Write the synthetic audio-visual dataset (see ``stica_slowfast/synthetic/generate.py``).

    python tools/make_synthetic_dataset.py --out data/synthetic --num-classes 8 --workers 2
"""

import argparse
import os
import sys

try:
    import stica_slowfast  # noqa: F401
except ImportError:  # run from a checkout without installing the package
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from stica_slowfast.synthetic import generate_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output directory (absent, empty or same dataset)")
    parser.add_argument("--num-classes", type=int, default=8)
    parser.add_argument("--train-per-class", type=int, default=24)
    parser.add_argument("--val-per-class", type=int, default=4)
    parser.add_argument("--test-per-class", type=int, default=6)
    parser.add_argument("--width", type=int, default=96, help="pixels, even")
    parser.add_argument("--height", type=int, default=80, help="pixels, even")
    parser.add_argument("--fps", type=float, default=25.0, help="frames/s")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per video")
    parser.add_argument("--audio-rate", type=int, default=22050, help="Hz")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="encoding processes (0 = all cores)")
    args = parser.parse_args()
    summary = generate_dataset(
        args.out,
        num_classes=args.num_classes,
        train_per_class=args.train_per_class,
        val_per_class=args.val_per_class,
        test_per_class=args.test_per_class,
        width=args.width,
        height=args.height,
        fps=args.fps,
        duration=args.duration,
        audio_rate=args.audio_rate,
        seed=args.seed,
        workers=args.workers,
    )
    counts = summary["num_videos"]
    print(
        f"{'generated' if summary['generated'] else 'reused'} {summary['out_dir']}: "
        f"{summary['num_classes']} classes, {counts['train']}/{counts['val']}/{counts['test']} "
        f"train/val/test videos, {summary['size_bytes'] / 2**20:.1f} MiB, {summary['seconds']:.1f} s"
    )


if __name__ == "__main__":
    main()
