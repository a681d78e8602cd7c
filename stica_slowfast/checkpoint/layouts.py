"""Checkpoints of other code bases, recognised by their key names and renamed into ours (and back into
PySlowFast's).

Each layout holds networks we build, under other names::

    layout                  whose                                       keys (what becomes ours)
    stica                   this package                                backbone.*, audio_backbone.*, head.fc.*,
                                                                        target.* (the momentum encoder)
    pyslowfast_resnet       PySlowFast's native ResNet                  s1.pathway0_stem.* .. s5.*, head.projection.*
                            (MODEL_NAME ResNet, MODEL.ARCH slow)
    pyslowfast_contrastive  PySlowFast's ContrastiveModel: the rho-SSL  backbone.<native ResNet trunk>,
                            model zoo (projects/contrastive_ssl)        backbone_hist.<the momentum copy>
    pyslowfast_ptvresnet    PySlowFast's PTVResNet (MODEL.ARCH slow)    model.blocks.0-4.*, model.blocks.5.proj.*
    pytorchvideo            PyTorchVideo's model zoo / torch.hub        blocks.0-4.*, blocks.5.proj.*
                            (slow_r50)
    gdt                     GDT's (and its STiCA's) audio-visual model  video_network.base.* (R(2+1)D-18),
                            (facebookresearch/GDT, model.GDT)           audio_network.base.* (ResNet-9, less fc)

The native ResNet's trunk is our Slow ResNet tensor for tensor, in the same order and shapes::

    PySlowFast ResNet                           ours
    s1.pathway0_stem.conv / .bn             ->  backbone.blocks.0.conv / .norm
    s{k}.pathway0_res{j}.branch1 / _bn      ->  backbone.blocks.{k-1}.res_blocks.{j}.branch1_conv / _norm
    s{k}.pathway0_res{j}.branch2.{a,b,c}    ->  ...branch2.conv_{a,b,c}
    s{k}.pathway0_res{j}.branch2.{a,b,c}_bn ->  ...branch2.norm_{a,b,c}
    head.projection                         ->  head.fc

GDT's video trunk is torchvision's R(2+1)D-18 layout and its audio trunk torchvision's ResNet layout,
as ours (``r2plus1d_18``, ``resnet9_audio``): only the prefixes change. What has no counterpart here
(projectors, predictors, queues, GDT's ``mlp_v`` / ``mlp_a``, the audio ``fc``, the transformer pooling
of STiCA's own code, which is not ours) is dropped and reported. A key that looks like a trunk's but
fits none of ours (a SlowFast model's second pathway, a non-local block) is an error, never dropped.

:func:`to_our_layout` recognises a state dict's layout (or is told it: ``TRAIN.CHECKPOINT_TYPE`` /
``TEST.CHECKPOINT_TYPE``) and returns it in our names, the online encoder or, on request
(``TRAIN.CHECKPOINT_ENCODER momentum``), the momentum one. :func:`from_our_layout` goes the other way for
PySlowFast's two Slow ResNet classes and PyTorchVideo's Net (``tools/convert_checkpoint.py``). Key names
only: no torch here.
"""

import re
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

__all__ = [
    "AUTO",
    "ENCODERS",
    "LAYOUTS",
    "UNKNOWN",
    "Converted",
    "Layout",
    "LayoutError",
    "describe",
    "detect_layout",
    "from_our_layout",
    "split_state",
    "to_our_layout",
]

#: ``CHECKPOINT_TYPE`` that recognises the layout from the key names (PySlowFast's name for its .pyth
#: files, its default).
AUTO = "pytorch"
#: ``TRAIN.CHECKPOINT_ENCODER`` values: the encoder trained by gradient, or its momentum (EMA) copy.
ENCODERS = ("online", "momentum")
UNKNOWN = "unknown"

OURS_BACKBONE, OURS_AUDIO, OURS_HEAD, OURS_TARGET = "backbone.", "audio_backbone.", "head.fc.", "target."
_HEAD_PARAMS = ("weight", "bias")
# Modules of ours between the backbone and the head that PySlowFast's heads lack.
_FEATURE_TRANSFORMS = ("video_pool.", "feature_norm.")


class LayoutError(ValueError):
    """A state dict that cannot be read (or written) in the layout asked for; one line."""


@dataclass(frozen=True)
class Converted:
    """A state dict renamed from one layout into another.

    Attributes:
        layout: the source's layout (a key of :data:`LAYOUTS`, or ``"unknown"``).
        state: the renamed state; its tensors are the source's own objects.
        dropped: source keys with no counterpart, in source order.
    """

    layout: str
    state: "OrderedDict[str, Any]"
    dropped: Tuple[str, ...]


@dataclass(frozen=True)
class Layout:
    """One code base's checkpoint layout.

    Attributes:
        description: what it is, for messages.
        markers: key prefixes only this layout has (tried in :data:`LAYOUTS` order).
        read_by: the config keys and converter that read it, for messages.
        to_ours: ``(state, encoder) -> (our state, dropped keys)``.
        from_ours: ``(our state, with_head) -> (its state, dropped keys)``; None where we do not write it.
    """

    description: str
    markers: Tuple[str, ...]
    read_by: str
    to_ours: Callable[[Mapping[str, Any], str], Tuple[Dict[str, Any], List[str]]]
    from_ours: Optional[Callable[[Mapping[str, Any], bool], Tuple[Dict[str, Any], List[str]]]] = None


# ------------------------------------------------------------------------------------------------ #
# PySlowFast's native ResNet trunk <-> our Slow ResNet (pytorchvideo's create_resnet)
# ------------------------------------------------------------------------------------------------ #
_NATIVE_PART = {"branch1": "branch1_conv", "branch1_bn": "branch1_norm",
                **{f"branch2.{x}": f"branch2.conv_{x}" for x in "abc"},
                **{f"branch2.{x}_bn": f"branch2.norm_{x}" for x in "abc"}}
_OUR_PART = {ours: native for native, ours in _NATIVE_PART.items()}
_NATIVE_STEM = re.compile(r"^s1\.pathway0_stem\.(conv|bn)\.(.+)$")
_NATIVE_RES = re.compile(r"^s([2-5])\.pathway0_res(\d+)\.(branch1|branch1_bn|branch2\.[abc](?:_bn)?)\.(.+)$")
_NATIVE_ANY = re.compile(r"^s\d")  # every key of a native trunk: s1.*, s1_fuse.*, s2.pathway1_res0.*...
_OUR_STEM = re.compile(r"^blocks\.0\.(conv|norm)\.(.+)$")
_OUR_RES = re.compile(
    r"^blocks\.([1-4])\.res_blocks\.(\d+)\.(branch1_conv|branch1_norm|branch2\.(?:conv|norm)_[abc])\.(.+)$")
_NATIVE_HEAD = "head.projection."


def _native_to_ours_key(key: str) -> str:
    """Our backbone key (without ``backbone.``) of a native trunk key, or "" when it is none."""
    stem = _NATIVE_STEM.match(key)
    if stem:
        return f"blocks.0.{'conv' if stem.group(1) == 'conv' else 'norm'}.{stem.group(2)}"
    res = _NATIVE_RES.match(key)
    if res:
        stage, block, part, rest = res.groups()
        return f"blocks.{int(stage) - 1}.res_blocks.{block}.{_NATIVE_PART[part]}.{rest}"
    return ""


def _ours_to_native_key(key: str) -> str:
    """The native trunk key of one of our Slow ResNet backbone keys (without ``backbone.``), or ""."""
    stem = _OUR_STEM.match(key)
    if stem:
        return f"s1.pathway0_stem.{'conv' if stem.group(1) == 'conv' else 'bn'}.{stem.group(2)}"
    res = _OUR_RES.match(key)
    if res:
        stage, block, part, rest = res.groups()
        return f"s{int(stage) + 1}.pathway0_res{block}.{_OUR_PART[part]}.{rest}"
    return ""


def _native_trunk(state: Mapping[str, Any], prefix: str, head: bool) -> Tuple[Dict[str, Any], List[str]]:
    """``prefix`` + native trunk keys -> ``backbone.*`` (and, with ``head``, ``head.projection`` ->
    ``head.fc``); other keys are dropped, a trunk-like key that fits no Slow ResNet is an error."""
    ours: Dict[str, Any] = OrderedDict()
    dropped: List[str] = []
    for key, value in state.items():
        name = key[len(prefix):] if key.startswith(prefix) else None
        our_key = _native_to_ours_key(name) if name is not None else ""
        if our_key:
            ours[OURS_BACKBONE + our_key] = value
        elif name is not None and _NATIVE_ANY.match(name):
            raise LayoutError(f"{key}: not a key of a one-pathway Slow ResNet (a SlowFast, non-local or "
                              "other PySlowFast ResNet; only MODEL.ARCH slow has a counterpart here)")
        elif head and key.startswith(_NATIVE_HEAD):
            ours[OURS_HEAD + key[len(_NATIVE_HEAD):]] = value
        else:
            dropped.append(key)
    return ours, dropped


def _native_to_ours(state: Mapping[str, Any], encoder: str) -> Tuple[Dict[str, Any], List[str]]:
    _no_momentum_encoder(encoder, "pyslowfast_resnet")
    return _native_trunk(state, "", head=True)


def _contrastive_to_ours(state: Mapping[str, Any], encoder: str) -> Tuple[Dict[str, Any], List[str]]:
    prefix = "backbone_hist." if encoder == "momentum" else "backbone."
    if encoder == "momentum" and not any(k.startswith(prefix) for k in state):
        raise LayoutError("has no momentum encoder (backbone_hist.*): the zoo's BYOL and MoCo models have "
                          "one, SimCLR and SwAV none")
    return _native_trunk(state, prefix, head=False)  # its backbone.head.* is the projector / predictor


def _ours_to_native(state: Mapping[str, Any], with_head: bool) -> Tuple[Dict[str, Any], List[str]]:
    return _from_ours(state, with_head, _ours_to_native_key, _NATIVE_HEAD)


# ------------------------------------------------------------------------------------------------ #
# PySlowFast's PTVResNet and PyTorchVideo's own models <-> ours: the same pytorchvideo Net
# ------------------------------------------------------------------------------------------------ #
_PTV_TRUNK_KEY = re.compile(r"^blocks\.[0-4]\.")  # the stem and the four residual stages
_PTV_EXTRAS = ("detection_head.",)  # PySlowFast's AVA head: not part of the classification network


def _net_to_ours(state: Mapping[str, Any], encoder: str, *, prefix: str,
                 layout: str) -> Tuple[Dict[str, Any], List[str]]:
    """pytorchvideo Net keys under ``prefix`` (``blocks.0-4`` the trunk, ``blocks.5.proj`` the linear
    classifier) -> ours; anything else of the Net is an error."""
    _no_momentum_encoder(encoder, layout)
    head = prefix + "blocks.5.proj."
    ours: Dict[str, Any] = OrderedDict()
    dropped: List[str] = []
    for key, value in state.items():
        if key.startswith(head) and key[len(head):] in _HEAD_PARAMS:
            ours[OURS_HEAD + key[len(head):]] = value
        elif key.startswith(prefix) and _PTV_TRUNK_KEY.match(key[len(prefix):]):
            ours[OURS_BACKBONE + key[len(prefix):]] = value
        elif key.startswith(_PTV_EXTRAS):
            dropped.append(key)
        else:
            raise LayoutError(f"{key}: not a key of {LAYOUTS[layout].description} (expected {prefix}blocks.0 .. "
                              f"{prefix}blocks.4, {prefix}blocks.5.proj{' and detection_head.*' if prefix else ''})")
    return ours, dropped


def _ours_to_net(state: Mapping[str, Any], with_head: bool, *, prefix: str) -> Tuple[Dict[str, Any], List[str]]:
    return _from_ours(state, with_head, lambda name: prefix + name if _PTV_TRUNK_KEY.match(name) else "",
                      prefix + "blocks.5.proj.")


def _from_ours(state: Mapping[str, Any], with_head: bool, trunk: Callable[[str], str],
               head_prefix: str) -> Tuple[Dict[str, Any], List[str]]:
    """Our Slow ResNet classifier / SSL state -> a PySlowFast layout: ``backbone.*`` through ``trunk``
    (our key without ``backbone.`` -> theirs, "" when it has none: an error), ``head.fc.*`` to
    ``head_prefix`` (with ``with_head``), the rest dropped."""
    if with_head and any(k.startswith(OURS_HEAD) for k in state):
        transforms = sorted({k.split(".", 1)[0] for k in state if k.startswith(_FEATURE_TRANSFORMS)})
        if transforms:
            raise LayoutError(f"the classifier head follows {', '.join(transforms)}, which PySlowFast's head "
                              "does not have: its weights would not mean the same there; convert without the head")
    theirs: Dict[str, Any] = OrderedDict()
    dropped: List[str] = []
    for key, value in state.items():
        if key.startswith(OURS_BACKBONE):
            name = trunk(key[len(OURS_BACKBONE):])
            if not name:
                raise LayoutError(f"{key}: not a key of a pytorchvideo Slow ResNet backbone "
                                  "(expected backbone.blocks.0 .. backbone.blocks.4)")
            theirs[name] = value
        elif key.startswith("head."):
            if not key.startswith(OURS_HEAD) or key[len(OURS_HEAD):] not in _HEAD_PARAMS:
                raise LayoutError(f"{key}: unknown head key (expected head.fc.weight / head.fc.bias)")
            if with_head:
                theirs[head_prefix + key[len(OURS_HEAD):]] = value
            else:
                dropped.append(key)
        else:
            dropped.append(key)
    return theirs, dropped


# ------------------------------------------------------------------------------------------------ #
# GDT (facebookresearch/GDT model.GDT) and ours
# ------------------------------------------------------------------------------------------------ #
_GDT_VIDEO, _GDT_AUDIO, _GDT_AUDIO_FC = "video_network.base.", "audio_network.base.", "audio_network.base.fc."


def _gdt_to_ours(state: Mapping[str, Any], encoder: str) -> Tuple[Dict[str, Any], List[str]]:
    _no_momentum_encoder(encoder, "gdt")
    ours: Dict[str, Any] = OrderedDict()
    dropped: List[str] = []
    for key, value in state.items():
        if key.startswith(_GDT_VIDEO):
            ours[OURS_BACKBONE + key[len(_GDT_VIDEO):]] = value
        elif key.startswith(_GDT_AUDIO) and not key.startswith(_GDT_AUDIO_FC):  # its unused 1000-way fc
            ours[OURS_AUDIO + key[len(_GDT_AUDIO):]] = value
        else:
            dropped.append(key)  # mlp_v / mlp_a projections; a STiCA model's pooling (not our module)
    return ours, dropped


# ------------------------------------------------------------------------------------------------ #
# Ours
# ------------------------------------------------------------------------------------------------ #
def split_state(state: Mapping[str, Any], prefix: str) -> Tuple["OrderedDict[str, Any]", List[str]]:
    """``({key without prefix: value} of the keys under prefix, [the other keys])``, in state order."""
    selected: "OrderedDict[str, Any]" = OrderedDict()
    others: List[str] = []
    for key, value in state.items():
        if key.startswith(prefix):
            selected[key[len(prefix):]] = value
        else:
            others.append(key)
    return selected, others


def _ours_to_ours(state: Mapping[str, Any], encoder: str) -> Tuple[Dict[str, Any], List[str]]:
    if encoder == "online":
        return OrderedDict(state), []
    target, others = split_state(state, OURS_TARGET)
    if not target:
        raise LayoutError("has no momentum encoder (target.*): only BYOL and MoCo runs have one")
    return target, others


def _no_momentum_encoder(encoder: str, layout: str) -> None:
    if encoder == "momentum":
        raise LayoutError(f"is {LAYOUTS[layout].description}, which has no momentum encoder: "
                          "CHECKPOINT_ENCODER momentum reads BYOL / MoCo checkpoints only")


_SLOW_R50 = "with MODEL.ARCH slow_r50"
#: The layouts read, by ``CHECKPOINT_TYPE`` name, in the order they are recognised (ours last: its
#: ``backbone.`` prefix is also the ContrastiveModel's).
LAYOUTS: Dict[str, Layout] = OrderedDict([
    ("pyslowfast_contrastive", Layout(
        "PySlowFast's ContrastiveModel (the rho-SSL model zoo, projects/contrastive_ssl)",
        ("backbone.s1.pathway0_stem.", "backbone_hist.s1.pathway0_stem."),
        f"TRAIN.CHECKPOINT_FILE_PATH of a LinearProbe or VideoClassifier {_SLOW_R50} (the momentum encoder "
        "with TRAIN.CHECKPOINT_ENCODER momentum); tools/convert_checkpoint.py --to stica",
        _contrastive_to_ours)),
    ("pyslowfast_resnet", Layout(
        "PySlowFast's native ResNet (MODEL_NAME ResNet, MODEL.ARCH slow)",
        ("s1.pathway0_stem.",),
        f"TRAIN.CHECKPOINT_FILE_PATH or TEST.CHECKPOINT_FILE_PATH of a model {_SLOW_R50}; "
        "tools/convert_checkpoint.py --to stica",
        _native_to_ours, _ours_to_native)),
    ("pyslowfast_ptvresnet", Layout(
        "PySlowFast's PTVResNet (MODEL_NAME PTVResNet, MODEL.ARCH slow)",
        ("model.blocks.",),
        f"TRAIN.CHECKPOINT_FILE_PATH or TEST.CHECKPOINT_FILE_PATH of a model {_SLOW_R50}; "
        "tools/convert_checkpoint.py --to stica",
        partial(_net_to_ours, prefix="model.", layout="pyslowfast_ptvresnet"),
        partial(_ours_to_net, prefix="model."))),
    ("pytorchvideo", Layout(
        "PyTorchVideo's model zoo / torch.hub Net (slow_r50)",
        ("blocks.0.conv.", "blocks.0.norm."),
        f"TRAIN.CHECKPOINT_FILE_PATH or TEST.CHECKPOINT_FILE_PATH of a model {_SLOW_R50}; "
        "tools/convert_checkpoint.py --to stica",
        partial(_net_to_ours, prefix="", layout="pytorchvideo"),
        partial(_ours_to_net, prefix=""))),
    ("gdt", Layout(
        "GDT's audio-visual model (facebookresearch/GDT model.GDT)",
        (_GDT_VIDEO, _GDT_AUDIO),
        "TRAIN.CHECKPOINT_FILE_PATH of a LinearProbe or VideoClassifier with MODEL.ARCH r2plus1d_18 (video), "
        "or of an AudioLinearProbe with STICA.AUDIO.ARCH resnet9_audio (audio); tools/convert_checkpoint.py --to stica",
        _gdt_to_ours)),
    ("stica", Layout(
        "this package's layout",
        (OURS_BACKBONE, OURS_AUDIO, OURS_TARGET),  # every model here has one; head.* alone is anyone's
        "TRAIN.CHECKPOINT_FILE_PATH and TEST.CHECKPOINT_FILE_PATH; tools/convert_checkpoint.py --to "
        "pyslowfast_resnet / pyslowfast_ptvresnet / pytorchvideo writes theirs",
        _ours_to_ours)),
])


def describe(layout: str) -> str:
    """``"<what it is> (read by: <keys and converter>)"``, for messages."""
    if layout not in LAYOUTS:
        return "an unknown layout (read here: " + "; ".join(v.description for v in LAYOUTS.values()) + ")"
    return f"{LAYOUTS[layout].description} (read by: {LAYOUTS[layout].read_by})"


def detect_layout(state: Mapping[str, Any]) -> str:
    """The layout of a model state dict (a ``"module."`` prefix already stripped): a key of
    :data:`LAYOUTS`, or ``"unknown"``."""
    for name, layout in LAYOUTS.items():
        if any(str(k).startswith(layout.markers) for k in state):
            return name
    return UNKNOWN


def to_our_layout(state: Mapping[str, Any], *, layout: str = AUTO, encoder: str = "online") -> Converted:
    """A model state dict in our key names.

    Args:
        state: a checkpoint's model state (a DDP ``"module."`` prefix already stripped).
        layout: :data:`AUTO` to recognise it (an unknown layout is returned as it is: the caller's key
            checks then say what is missing), or a key of :data:`LAYOUTS` it must be.
        encoder: ``"online"``, or ``"momentum"`` for the momentum encoder of a BYOL / MoCo checkpoint
            (ours: ``target.*``; ContrastiveModel: ``backbone_hist.*``).

    Returns:
        The layout seen, the state in our names and the keys dropped.

    Raises:
        LayoutError: the state is recognisably another layout than ``layout``, it has no momentum
            encoder to give, or a trunk key of it fits none of ours.
    """
    if layout != AUTO and layout not in LAYOUTS:
        raise LayoutError(f"unknown checkpoint layout {layout!r} (expected {AUTO!r} or one of {', '.join(LAYOUTS)})")
    if encoder not in ENCODERS:
        raise LayoutError(f"unknown encoder {encoder!r} (expected {' or '.join(ENCODERS)})")
    seen = detect_layout(state)
    if layout != AUTO and seen not in (layout, UNKNOWN):
        raise LayoutError(f"holds {LAYOUTS[seen].description}, not {LAYOUTS[layout].description} "
                          f"(CHECKPOINT_TYPE {layout}); CHECKPOINT_TYPE {AUTO} recognises it")
    name = seen if layout == AUTO else layout
    if name == UNKNOWN:
        if encoder == "momentum":
            raise LayoutError("is an unknown layout: no momentum encoder to read")
        return Converted(UNKNOWN, OrderedDict(state), ())
    ours, dropped = LAYOUTS[name].to_ours(state, encoder)
    if not ours:
        raise LayoutError(f"has no tensor of {LAYOUTS[name].description}")
    return Converted(name, ours, tuple(dropped))


def from_our_layout(state: Mapping[str, Any], layout: str, *, with_head: bool = True) -> Converted:
    """Our Slow ResNet state (a classifier, a linear probe or an SSL method) in a PySlowFast layout.

    Args:
        state: our ``model_state`` (a DDP ``"module."`` prefix already stripped) with a Slow ResNet
            ``backbone`` (``slow_r50``, ``slow_tiny``...).
        layout: ``"pyslowfast_resnet"``, ``"pyslowfast_ptvresnet"`` or ``"pytorchvideo"``.
        with_head: also write the linear classifier ``head.fc.*`` when there is one; False drops it.

    Returns:
        Our layout (``"stica"``), the state in ``layout``'s names, the keys dropped (an SSL method's
        projector, predictor, momentum encoder...).

    Raises:
        LayoutError: ``state`` is not ours, a ``backbone.*`` key is not a Slow ResNet's, the head is
            not a linear layer, or (with ``with_head``) sits behind a ``video_pool`` / ``feature_norm``.
    """
    if layout not in LAYOUTS or LAYOUTS[layout].from_ours is None:
        writable = [k for k, v in LAYOUTS.items() if v.from_ours is not None]
        raise LayoutError(f"cannot write {layout!r} (written: {', '.join(writable)})")
    seen = detect_layout(state)
    if seen != "stica":
        raise LayoutError(f"holds {describe(seen)}, not this package's layout")
    theirs, dropped = LAYOUTS[layout].from_ours(state, with_head)
    if not theirs:
        raise LayoutError("has no backbone.* tensor: no network to write")
    return Converted("stica", theirs, tuple(dropped))
