#!/usr/bin/env python3
"""Train and/or test a model, PySlowFast-style:

    python tools/run_net.py --cfg configs/demo/supervised_tiny.yaml [KEY VALUE ...]
        [--init_method tcp://HOST:PORT --num_shards N --shard_id I]

A PySlowFast YAML with our keys added works too: when PySlowFast is importable, the keys of its
``get_cfg()`` that ours lacks are accepted (and have no effect here); without it they are unknown keys
(:func:`stica_slowfast.config.load_config`).
"""

from stica_slowfast.engine.entry import main

if __name__ == "__main__":
    main()
