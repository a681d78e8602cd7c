#!/usr/bin/env python3
"""Convert a checkpoint into this package's layout, or ours into PySlowFast's:

    # a published PySlowFast / rho-SSL zoo / GDT checkpoint -> ours (its layout is recognised)
    python tools/convert_checkpoint.py --to stica BYOL_SlowR50_8x8_T4_epoch_00200.pyth byol_ours.pyth
    python tools/convert_checkpoint.py --to stica --momentum BYOL_SlowR50_8x8_T4_epoch_00200.pyth byol_target.pyth
    # our Slow-R50 checkpoint -> PySlowFast (MODEL_NAME ResNet or PTVResNet, MODEL.ARCH slow) or PyTorchVideo
    python tools/convert_checkpoint.py --to pyslowfast_resnet OUT/checkpoints/checkpoint_epoch_00100.pyth slow_r50.pyth
    python tools/convert_checkpoint.py --to pyslowfast_resnet --momentum OUT/checkpoints/checkpoint_epoch_00100.pyth target.pyth

Our own loaders read every one of those layouts directly (TRAIN/TEST.CHECKPOINT_FILE_PATH); the
conversion is for other code (PySlowFast's loops) and for a file checked once. Prints one JSON object:
the source layout, the converted and dropped key counts and the dropped keys' top-level names (an SSL
method's projector, predictor, momentum target...). See :mod:`stica_slowfast.checkpoint.layouts` for the
key mappings.
"""

import argparse
import json
import sys

from stica_slowfast.checkpoint.layouts import AUTO, LAYOUTS
from stica_slowfast.interop.convert import TARGETS, convert_checkpoint


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="checkpoint to convert (.pyth / .pth with model_state, model or state_dict, "
                                    "or a bare state dict)")
    parser.add_argument("dst", help="output .pyth ({'epoch', 'model_state'})")
    parser.add_argument("--to", required=True, choices=TARGETS, help="target layout")
    parser.add_argument("--from", dest="layout", default=AUTO, choices=(AUTO, *LAYOUTS),
                        help=f"source layout ({AUTO}: recognise it by its key names)")
    parser.add_argument("--momentum", dest="encoder", action="store_const", const="momentum", default="online",
                        help="take a BYOL / MoCo checkpoint's momentum encoder instead of the online one")
    parser.add_argument("--no-head", dest="with_head", action="store_false",
                        help="leave the linear classifier out (convert the backbone only)")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="skip loading the tensors into the networks built for them")
    parser.add_argument("--epoch", type=int, default=None,
                        help="0-based epoch to store (default: the source's, -1 when it has none)")
    args = parser.parse_args(argv)
    try:
        result = convert_checkpoint(args.src, args.dst, to=args.to, with_head=args.with_head, check=args.check,
                                    epoch=args.epoch, layout=args.layout, encoder=args.encoder)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({
        "dst": args.dst,
        "from": result.layout,
        "to": args.to,
        "converted": len(result.state),
        "dropped": len(result.dropped),
        "dropped_modules": sorted({k.split(".", 1)[0] for k in result.dropped}),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
