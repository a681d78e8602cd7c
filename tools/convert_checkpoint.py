#!/usr/bin/env python3
"""Convert a Slow-ResNet checkpoint between stica_slowfast and PySlowFast's ``PTVResNet``:

    # our SSL / classifier checkpoint -> PySlowFast (MODEL_NAME PTVResNet, MODEL.ARCH slow)
    python tools/convert_checkpoint.py --to pyslowfast OUT/checkpoints/checkpoint_epoch_00100.pyth slow_r50_ptv.pyth
    # PySlowFast PTVResNet checkpoint -> ours (TRAIN.CHECKPOINT_FILE_PATH of a slow_r50 model)
    python tools/convert_checkpoint.py --to stica SLOW_8x8_R50.pyth slow_r50_stica.pyth

Prints one JSON object: the converted and dropped key counts and the dropped keys' top-level names
(an SSL method's projector, predictor, momentum target...). See :mod:`stica_slowfast.interop.convert` for the key mapping.
"""

import argparse
import json
import sys

from stica_slowfast.interop.convert import TO_PYSLOWFAST, TO_STICA, convert_checkpoint


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="checkpoint to convert (.pyth with model_state, or a bare state dict)")
    parser.add_argument("dst", help="output .pyth ({'epoch', 'model_state'})")
    parser.add_argument("--to", required=True, choices=(TO_PYSLOWFAST, TO_STICA), help="target layout")
    parser.add_argument("--no-head", dest="with_head", action="store_false",
                        help="leave the linear classifier out (convert the backbone only)")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="skip building the Slow ResNet to verify every key and shape")
    parser.add_argument("--epoch", type=int, default=None,
                        help="0-based epoch to store (default: the source's, -1 when it has none)")
    args = parser.parse_args(argv)
    try:
        result = convert_checkpoint(args.src, args.dst, to=args.to, with_head=args.with_head,
                                    check=args.check, epoch=args.epoch)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({
        "dst": args.dst,
        "to": args.to,
        "converted": len(result.state),
        "dropped": len(result.dropped),
        "dropped_modules": sorted({k.split(".", 1)[0] for k in result.dropped}),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
