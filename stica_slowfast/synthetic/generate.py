"""A synthetic audio-visual classification dataset, written as real mp4 files (h264 + aac).

Each class is a pair of independent recipes, so that the label can be recovered from the video
alone and, separately, from the audio alone, and from nothing else:

* video: a moving object of one SHAPE following one TRAJECTORY (e.g. a disc moving in a circle);
* audio: a tone in one PITCH band played with one RHYTHM and one TIMBRE (e.g. a rising chirp).

Class names spell the recipe, e.g. ``disc_circular_495hz_chirpup`` (``_reed`` / ``_buzz`` is appended
when the timbre is not a pure sine). Class k takes factor values ``k mod n`` of each factor (n values),
so up to 10 classes every class has its own shape, its own trajectory, its own pitch band (up to 6)
and its own rhythm (up to 8). Past the point where these diagonal combinations repeat, the remaining
combinations of the factor grid are used in order.

Everything else is a nuisance drawn per video from a seed derived from (seed, split, label, index),
so the dataset is deterministic for a seed and independent of the number of worker processes:

* video: start phase, speed, direction and position of the motion, object size and orientation; the
  colours (the object's, the background's, a static distractor's) and the background texture. No
  colour is tied to a class, and none is constant within a video either: every hue turns around the
  colour wheel at its own random rate, saturation and brightness drift, and the background texture
  morphs, so that two clips of one video do not match by their colours alone (which would hand
  contrastive objectives an instance shortcut). The object is brighter or darker than the background
  (a random choice per video), so it stays visible in grayscale. Per-frame noise and a slight flicker.
* audio: pitch (a few percent), rhythm rate and phase, loudness, a quieter distractor tone of random
  pitch and rhythm, and coloured noise at a random SNR.

Layout written under ``out_dir``::

    videos/<class_name>/<class_name>_<split>_<index>.mp4
    train.csv val.csv test.csv        PySlowFast Kinetics format: "videos/<class>/<file>.mp4 <label>"
    classInd.txt                      UCF-101 style: "1 <class_name>" (1-based)
    trainlist0N.txt testlist0N.txt    UCF-101 style splits N = 1, 2, 3: "<class>/<file>.mp4 <label + 1>"
                                      and "<class>/<file>.mp4", paths relative to out_dir/videos
    hmdb51_splits/<class_name>_test_split<N>.txt
                                      HMDB-51 style splits N = 1, 2, 3: "<file>.mp4 <id>" for every video
                                      of the class, id 1 = train, 2 = test, 0 = unused (the val.csv videos)
    dataset.json                      parameters, classes and counts
    .complete                         written last; its content is the parameters

The official-style splits partition the train.csv + test.csv videos of each class; split 1 is exactly
train.csv / test.csv, splits 2 and 3 hold out other videos (see :func:`official_split`). To read them
set ``DATA.PATH_PREFIX`` to ``out_dir/videos`` and ``DATA.PATH_TO_DATA_DIR`` to ``out_dir`` (dataset
``ucf101``) or ``out_dir/hmdb51_splits`` (``hmdb51``). HMDB-51 has no class index file: its reader
numbers the classes in sorted name order, which is not the label order of the csv files.

Generation happens in a temporary sibling directory that is renamed to ``out_dir`` once complete,
under an advisory lock (``<out_dir>.lock``), so concurrent callers (e.g. every process of a
distributed demo run) generate once and all return the same dataset.
"""

import contextlib
import functools
import json
import math
import multiprocessing
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from fvcore.common.config import CfgNode

from stica_slowfast.synthetic.av_writer import write_video

try:  # POSIX only; elsewhere concurrent callers still end up with one complete dataset (via rename).
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

# Bump when the files written for a given seed change: an existing dataset of another version is
# refused. 3: UCF-101 splits 2 and 3 and the HMDB-51 split files. 4: no class hue; colours drift
# within each video; x264 on one thread (its output depended on the CPUs the process could use).
# 5: every shape covers the same mean area at a given size, a pulsing one too (the area told the shape).
# 6: x264 without MB-tree (with it, one seed's files changed with the process's earlier allocations).
FORMAT_VERSION = 6
# Mixed into every video's seed; bumped when the per-video random draws should change. Kept apart from
# FORMAT_VERSION so that a format that keeps the draws keeps every video's nuisances: a format-5 video
# differs from its format-4 twin only in the shape's size, and adding index files changes no video.
_VIDEO_SEED_VERSION = 3

SPLITS = ("train", "val", "test")
# Official-style splits written in UCF-101 and HMDB-51 layout, and the folder of the HMDB-51 files.
OFFICIAL_SPLIT_IDS = (1, 2, 3)
HMDB51_SPLIT_DIR = "hmdb51_splits"

# Ordered so that the first few (used when there are few classes) are the easiest to tell apart.
SHAPES = (
    "disc", "square", "triangle", "cross", "ring", "bar",
    "diamond", "star", "xcross", "frame", "halfdisc", "hourglass",
)
TRAJECTORIES = (
    "horizontal", "vertical", "circular", "diagonal", "zigzag",
    "bouncing", "pulsing", "antidiagonal", "figure8", "spiral",
)
# Fundamental of each pitch band in Hz (a fifth apart: a chirp of one band sweeps over the next).
PITCH_BANDS_HZ = (220, 330, 495, 740, 1110, 1665)
RHYTHMS = ("steady", "chirpup", "twotone", "beeps", "tremolo", "chirpdown", "vibrato", "rapid")
# Harmonic amplitudes {harmonic number: amplitude}; harmonics above 0.45 * sample rate are dropped.
TIMBRES = {
    "pure": {1: 1.0},
    "reed": {1: 1.0, 3: 1 / 3, 5: 1 / 5, 7: 1 / 7},
    "buzz": {k: 1.0 / k for k in range(1, 7)},
}
# Sample rates the AAC encoder accepts, from 8 kHz up (the highest tones reach ~3.5 kHz).
AAC_SAMPLE_RATES = (
    8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000,
)

_BASE_MOTION_HZ = 0.5  # trajectory cycles per second before the per-video speed factor
_MIN_SIDE = 16  # smallest frame side in pixels that still draws recognisable shapes
_MARKER = ".complete"
# Rates in turns of the colour wheel per second at which a video's hues drift (either direction): a
# clip of about a second sees its colours shift by a sixth of a turn or more, two clips of one video
# seconds apart see unrelated ones.
_HUE_DRIFT_TURNS_PER_S = (0.12, 0.3)


@dataclass(frozen=True)
class ClassSpec:
    """The recipe of one class.

    Attributes:
        label: 0-based class index.
        name: readable unique name, used as the class folder.
        shape: entry of :data:`SHAPES`.
        trajectory: entry of :data:`TRAJECTORIES`.
        pitch_hz: nominal fundamental of the tone in Hz (one of :data:`PITCH_BANDS_HZ`).
        rhythm: entry of :data:`RHYTHMS`.
        timbre: key of :data:`TIMBRES`.
    """

    label: int
    name: str
    shape: str
    trajectory: str
    pitch_hz: int
    rhythm: str
    timbre: str


# ------------------------------------------------------------------------------------------------ #
# Classes
# ------------------------------------------------------------------------------------------------ #
def max_num_classes() -> int:
    """The largest class count for which every class has a distinct video and a distinct audio recipe."""
    num_visual = len(SHAPES) * len(TRAJECTORIES)
    num_audio = len(PITCH_BANDS_HZ) * len(RHYTHMS) * len(TIMBRES)
    return min(num_visual, num_audio)


def _factor_cells(num: int, sizes: Sequence[int]) -> List[Tuple[int, ...]]:
    """``num`` distinct index tuples into a factor grid of ``sizes``, in a fixed, prefix-stable order.

    First the diagonal ``(k mod n_1, k mod n_2, ...)`` for k = 0, 1, ... while it yields new tuples (so
    the first classes differ in every factor), then the remaining grid cells in lexicographic order.
    """
    cells: List[Tuple[int, ...]] = []
    seen = set()
    for k in range(math.lcm(*sizes)):
        cell = tuple(k % n for n in sizes)
        if len(cells) == num:
            return cells
        cells.append(cell)
        seen.add(cell)
    for cell in np.ndindex(*sizes):
        if len(cells) == num:
            break
        if cell not in seen:
            cells.append(tuple(int(c) for c in cell))
    return cells


def class_specs(num_classes: int) -> List[ClassSpec]:
    """The recipes of classes ``0 .. num_classes - 1`` (a prefix-independent, fixed assignment).

    Args:
        num_classes: number of classes, 1 to :func:`max_num_classes`.

    Returns:
        One :class:`ClassSpec` per label, in label order.
    """
    if not 1 <= num_classes <= max_num_classes():
        raise ValueError(
            f"num_classes must be in [1, {max_num_classes()}], got {num_classes}: the generator has "
            f"{len(SHAPES)} shapes x {len(TRAJECTORIES)} trajectories for the video and "
            f"{len(PITCH_BANDS_HZ)} pitches x {len(RHYTHMS)} rhythms x {len(TIMBRES)} timbres for the "
            f"audio, and every class needs a distinct combination of each"
        )
    visual = _factor_cells(num_classes, (len(SHAPES), len(TRAJECTORIES)))
    audio = _factor_cells(num_classes, (len(PITCH_BANDS_HZ), len(RHYTHMS), len(TIMBRES)))
    timbres = list(TIMBRES)
    specs = []
    for label, ((shape, traj), (band, rhythm_idx, timbre_idx)) in enumerate(zip(visual, audio)):
        rhythm, timbre = RHYTHMS[rhythm_idx], timbres[timbre_idx]
        name = f"{SHAPES[shape]}_{TRAJECTORIES[traj]}_{PITCH_BANDS_HZ[band]}hz_{rhythm}"
        if timbre != "pure":
            name += f"_{timbre}"
        specs.append(ClassSpec(label, name, SHAPES[shape], TRAJECTORIES[traj], PITCH_BANDS_HZ[band], rhythm, timbre))
    return specs


# ------------------------------------------------------------------------------------------------ #
# Video
# ------------------------------------------------------------------------------------------------ #
def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether object-frame points (u right, v up, in units of the object radius) lie in ``shape``."""
    au, av_ = np.abs(u), np.abs(v)
    rho = np.hypot(u, v)
    if shape == "disc":
        return rho <= 1.0
    if shape == "square":
        return np.maximum(au, av_) <= 0.8
    if shape == "triangle":  # equilateral, pointing up, circumradius 1
        return (v >= -0.5) & (math.sqrt(3) * au + v <= 1.0)
    if shape == "cross":
        return ((au <= 0.3) & (av_ <= 1.0)) | ((av_ <= 0.3) & (au <= 1.0))
    if shape == "xcross":  # the cross turned by 45 degrees
        return _shape_mask("cross", (u + v) / math.sqrt(2), (v - u) / math.sqrt(2))
    if shape == "ring":
        return (rho <= 1.0) & (rho >= 0.55)
    if shape == "bar":
        return (au <= 1.0) & (av_ <= 0.3)
    if shape == "diamond":
        return au + av_ <= 1.0
    if shape == "star":  # five points; radius goes linearly from 0.45 (notches) to 1 (points)
        phase = np.mod(np.arctan2(u, v) / (2 * math.pi) * 5 + 0.5, 1.0)  # point at phase 0.5
        return rho <= 0.45 + 0.55 * (1.0 - np.abs(2.0 * phase - 1.0))
    if shape == "frame":
        return (np.maximum(au, av_) <= 0.85) & (np.maximum(au, av_) >= 0.5)
    if shape == "halfdisc":
        return (np.hypot(u, v + 0.4) <= 1.0) & (v >= -0.4)
    if shape == "hourglass":
        return (au <= av_) & (av_ <= 0.9)
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


@functools.lru_cache(maxsize=None)
def _shape_area(shape: str) -> float:
    """Area of ``shape`` in units of the object radius squared (counted on a 600 x 600 grid)."""
    grid = (np.arange(600) + 0.5) / 600 * 3.0 - 1.5  # [-1.5, 1.5]: every shape's reach
    u, v = np.meshgrid(grid, grid)
    return float(_shape_mask(shape, u, v).mean()) * 9.0


def _equal_area_radius(shape: str, radius: float) -> float:
    """The radius at which ``shape`` covers the mean area of all :data:`SHAPES` of radius ``radius``, so
    that an object's size (a per-video nuisance) does not tell its shape."""
    mean_area = sum(_shape_area(s) for s in SHAPES) / len(SHAPES)
    return radius * math.sqrt(mean_area / _shape_area(shape))


def _shape_coverage(
    shape: str, height: int, width: int, cx: float, cy: float, radius: float, angle: float, ss: int = 3
) -> Tuple[Tuple[slice, slice], np.ndarray]:
    """Antialiased coverage in [0, 1] of ``shape`` centred at pixel (cx, cy), on its bounding box.

    Args:
        shape: entry of :data:`SHAPES`.
        height: frame height in pixels.
        width: frame width in pixels.
        cx: centre column in pixels (pixel i spans [i, i + 1)).
        cy: centre row in pixels.
        radius: object radius in pixels.
        angle: rotation in radians (counter-clockwise).
        ss: supersampling factor per axis.

    Returns:
        ((row slice, column slice), coverage of shape (rows, columns)); empty when off-frame.
    """
    reach = 1.5 * radius + 1
    y0, y1 = max(0, int(cy - reach)), min(height, int(math.ceil(cy + reach)))
    x0, x1 = max(0, int(cx - reach)), min(width, int(math.ceil(cx + reach)))
    box = (slice(y0, max(y0, y1)), slice(x0, max(x0, x1)))
    if y1 <= y0 or x1 <= x0:
        return box, np.zeros((0, 0))
    offsets = (np.arange(ss) + 0.5) / ss
    ys = (np.arange(y0, y1)[:, None] + offsets[None, :]).reshape(-1)  # (rows * ss,)
    xs = (np.arange(x0, x1)[:, None] + offsets[None, :]).reshape(-1)  # (cols * ss,)
    dx, dy = (xs[None, :] - cx) / radius, (cy - ys[:, None]) / radius  # image y points down
    cos, sin = math.cos(angle), math.sin(angle)
    inside = _shape_mask(shape, cos * dx + sin * dy, cos * dy - sin * dx).astype(np.float32)
    # (rows * ss, cols * ss) -> (rows, cols): mean over each pixel's ss x ss samples
    coverage = inside.reshape(y1 - y0, ss, x1 - x0, ss).mean(axis=(1, 3))
    return box, coverage


def _triangle_wave(phase: np.ndarray) -> np.ndarray:
    """0 -> 1 -> 0 once per unit of ``phase``, linear in between."""
    return 1.0 - np.abs(2.0 * np.mod(phase, 1.0) - 1.0)


def _trajectory(
    name: str, t: np.ndarray, rng: np.random.Generator
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Object centre in normalised [0, 1]^2 coordinates (y down) and size factor at times ``t``.

    Args:
        name: entry of :data:`TRAJECTORIES`.
        t: times in seconds, shape (T,).
        rng: source of the per-video speed, phase, direction and position.

    Returns:
        (x, y, scale), each of shape (T,); x and y lie in [0, 1], scale in [0.52, 1.38].
    """
    rate = _BASE_MOTION_HZ * rng.uniform(0.7, 1.4)
    phase = rate * t + rng.uniform()
    phase2 = rng.uniform()
    turn = rng.choice([-1.0, 1.0])  # direction of rotation for circular paths
    ones = np.ones_like(t)
    if name == "horizontal":
        return _triangle_wave(phase), rng.uniform(0.15, 0.85) * ones, ones
    if name == "vertical":
        return rng.uniform(0.15, 0.85) * ones, _triangle_wave(phase), ones
    if name == "diagonal":
        return _triangle_wave(phase), _triangle_wave(phase), ones
    if name == "antidiagonal":
        return _triangle_wave(phase), 1.0 - _triangle_wave(phase), ones
    if name == "circular":
        radius, angle = rng.uniform(0.3, 0.5), 2 * math.pi * phase * turn
        return 0.5 + radius * np.cos(angle), 0.5 + radius * np.sin(angle), ones
    if name == "zigzag":  # sweeps across while going up and down three times as fast
        return _triangle_wave(phase), 0.15 + 0.7 * _triangle_wave(3 * rate * t + phase2), ones
    if name == "bouncing":  # a ball bouncing on the floor (y = 1) while drifting sideways
        hop = np.mod(1.5 * rate * t + phase2, 1.0)
        return _triangle_wave(0.5 * phase), 1.0 - 4.0 * hop * (1.0 - hop), ones
    if name == "pulsing":  # stays put, grows and shrinks; its mean area is that of a still object
        x, y = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7)
        return x * ones, y * ones, (1.0 + 0.45 * np.sin(2 * math.pi * 1.5 * phase)) / math.sqrt(1 + 0.45 ** 2 / 2)
    if name == "figure8":
        angle = 2 * math.pi * phase * turn
        return 0.5 + 0.45 * np.sin(angle), 0.5 + 0.4 * np.sin(2 * angle), ones
    if name == "spiral":  # circles while the radius grows and shrinks
        angle = 2 * math.pi * 1.5 * phase * turn
        radius = 0.08 + 0.42 * _triangle_wave(0.5 * rate * t + phase2)
        return 0.5 + radius * np.cos(angle), 0.5 + radius * np.sin(angle), ones
    raise ValueError(f"unknown trajectory {name!r}; expected one of {TRAJECTORIES}")


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Zero-mean, unit-std noise varying smoothly over ~``cell`` pixels (bilinear upsampling)."""
    grid_h, grid_w = int(height / cell) + 2, int(width / cell) + 2
    coarse = rng.standard_normal((grid_h, grid_w))

    def interp_matrix(n_out: int, n_in: int) -> np.ndarray:
        pos = np.linspace(0, n_in - 1, n_out)
        return np.maximum(0.0, 1.0 - np.abs(pos[:, None] - np.arange(n_in)[None, :]))

    field = interp_matrix(height, grid_h) @ coarse @ interp_matrix(width, grid_w).T  # (H, W)
    return (field - field.mean()) / (field.std() + 1e-8)


def _hsv_to_rgb(hue: np.ndarray, sat: np.ndarray, val: np.ndarray) -> np.ndarray:
    """RGB in 0..255 of hue (turns, any real), saturation and value in [0, 1]; (...,) -> (..., 3)."""
    hue = np.mod(np.asarray(hue, dtype=np.float64), 1.0)[..., None]
    pure = np.clip(np.abs((hue * 6 + np.array([0.0, 4.0, 2.0])) % 6 - 3) - 1, 0, 1)  # fully saturated
    sat, val = np.asarray(sat)[..., None], np.asarray(val)[..., None]
    return 255.0 * val * (1 - sat + sat * pure)


def _drifting_colour(
    rng: np.random.Generator, t: np.ndarray, hue0: float, sat: Tuple[float, float], val: Tuple[float, float]
) -> np.ndarray:
    """RGB colours (T, 3) in 0..255 at times ``t``: the hue turns from ``hue0`` at a random rate and
    direction; saturation and value swing slowly (random period and phase) within their ranges."""
    rate = rng.uniform(*_HUE_DRIFT_TURNS_PER_S) * rng.choice([-1.0, 1.0])

    def swing(lo: float, hi: float) -> np.ndarray:
        wave = 0.5 + 0.5 * np.sin(2 * math.pi * (rng.uniform(0.1, 0.4) * t + rng.uniform()))
        return lo + (hi - lo) * wave

    return _hsv_to_rgb(hue0 + rate * t, swing(*sat), swing(*val))


def _morphing_texture(
    rng: np.random.Generator, t: np.ndarray, height: int, width: int
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A smooth unit-std blotch field that morphs over time: ``cos(a(t)) F1 + sin(a(t)) F2`` with the
    angle a(t) turning at a random rate. Returns (F1 (H, W), F2 (H, W), a (T,))."""
    cell = min(height, width) / rng.uniform(2.0, 5.0)
    fields = [_smooth_noise(rng, height, width, cell) for _ in range(2)]
    angle = rng.uniform(0, 2 * math.pi) + rng.uniform(0.5, 1.5) * rng.choice([-1.0, 1.0]) * t
    return fields[0], fields[1], angle


def render_video(
    spec: ClassSpec, rng: np.random.Generator, *, width: int, height: int, num_frames: int, fps: float
) -> np.ndarray:
    """Draw one video of class ``spec``.

    Args:
        spec: the class recipe (shape and trajectory are used).
        rng: source of every per-video nuisance.
        width: frame width in pixels.
        height: frame height in pixels.
        num_frames: number of frames T.
        fps: frame rate in frames/s (sets the speed of the motion in frames).

    Returns:
        uint8 RGB frames of shape (T, H, W, 3).
    """
    t = np.arange(num_frames) / float(fps)
    xs, ys, scales = _trajectory(spec.trajectory, t, rng)
    size = 0.22 * min(width, height) * rng.uniform(0.75, 1.25)  # the radius of a shape of mean area
    radius = _equal_area_radius(spec.shape, size)
    angle = math.radians(rng.uniform(-20, 20))
    margin = radius * float(scales.max())
    cxs = margin + xs * (width - 2 * margin)
    cys = margin + ys * (height - 2 * margin)

    # Colours: a random hue for the object, the background roughly opposite it, each drifting on its
    # own; the object brighter than the background or darker (a random polarity), so that its
    # outline survives grayscale and hue changes.
    bright, dark = (0.75, 1.0), (0.2, 0.45)
    object_val, background_val = (bright, dark) if rng.uniform() < 0.5 else (dark, bright)
    hue = rng.uniform()
    colours = _drifting_colour(rng, t, hue, (0.5, 1.0), object_val)  # (T, 3)
    background_colours = _drifting_colour(rng, t, hue + 0.5 + rng.uniform(-0.2, 0.2), (0.2, 0.8),
                                          background_val)
    field1, field2, texture_angle = _morphing_texture(rng, t, height, width)
    texture_amp = rng.uniform(6, 24) * rng.uniform(0.5, 1.0, size=3)  # per channel
    grain = rng.uniform(0, 8) * rng.standard_normal((height, width, 1)).astype(np.float32)

    distractor = None
    if rng.uniform() < 0.4:  # a static distractor of a random shape, drawn below the object
        d_shape = SHAPES[rng.integers(len(SHAPES))]
        d_radius = _equal_area_radius(d_shape, size * rng.uniform(0.6, 1.0))
        d_x = rng.uniform(d_radius, width - d_radius)
        d_y = rng.uniform(d_radius, height - d_radius)
        d_angle = math.radians(rng.uniform(-180, 180))
        box, cov = _shape_coverage(d_shape, height, width, d_x, d_y, d_radius, d_angle)
        d_colours = _drifting_colour(rng, t, rng.uniform(), (0.0, 0.6), (0.3, 0.9))
        distractor = (box, cov[..., None], d_colours)

    noise_std = rng.uniform(2.0, 7.0)
    flicker_phase = 2 * math.pi * (rng.uniform(0.2, 1.0) * t + rng.uniform())
    flicker = 1.0 + rng.uniform(0, 0.05) * np.sin(flicker_phase)  # slight global brightness change
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for i in range(num_frames):
        # (H, W, 1) blotches x (3,) amplitude + (3,) base colour + (H, W, 1) grain -> (H, W, 3)
        blotches = math.cos(texture_angle[i]) * field1 + math.sin(texture_angle[i]) * field2
        frame = (background_colours[i] + blotches[..., None] * texture_amp + grain).astype(np.float32)
        if distractor is not None:
            box, cov, d_colours = distractor
            frame[box] += cov * (d_colours[i] - frame[box])
        box, cov = _shape_coverage(
            spec.shape, height, width, cxs[i], cys[i], radius * scales[i], angle
        )
        frame[box] += cov[..., None] * (colours[i] - frame[box])
        frame = frame * flicker[i] + noise_std * rng.standard_normal(frame.shape, dtype=np.float32)
        frames[i] = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
    return frames


# ------------------------------------------------------------------------------------------------ #
# Audio
# ------------------------------------------------------------------------------------------------ #
def _gate(cycle_phase: np.ndarray, duty: float, ramp: float) -> np.ndarray:
    """On for the first ``duty`` of each cycle, with linear ramps of ``ramp`` cycles (no clicks)."""
    frac = np.mod(cycle_phase, 1.0)
    return np.clip(np.minimum(frac, duty - frac) / ramp, 0.0, 1.0)


def _pitch_and_envelope(
    rhythm: str, t: np.ndarray, f0: float, rng: np.random.Generator
) -> Tuple[np.ndarray, np.ndarray]:
    """Instantaneous frequency (Hz) and amplitude envelope in [0, 1] of ``rhythm`` at times ``t``."""
    jitter = rng.uniform(0.85, 1.15)  # per-video rate of the rhythm
    start = rng.uniform()
    ones = np.ones_like(t)
    if rhythm == "steady":
        return f0 * ones, ones
    if rhythm in ("beeps", "rapid"):
        rate, duty = (3.0, 0.5) if rhythm == "beeps" else (8.0, 0.4)
        rate *= jitter
        return f0 * ones, _gate(rate * t + start, duty, ramp=0.008 * rate)
    if rhythm in ("chirpup", "chirpdown"):  # one-octave exponential sweeps, repeated
        period = 0.65 * jitter
        sweep = np.mod(t / period + start, 1.0)
        if rhythm == "chirpdown":
            sweep = 1.0 - sweep
        return f0 * 2.0 ** sweep, _gate(t / period + start, 1.0, ramp=0.03)
    if rhythm == "twotone":  # alternates the fundamental and its fifth
        high = np.mod(2.5 * jitter * t + start, 1.0) >= 0.5
        return np.where(high, 1.5 * f0, f0), ones
    if rhythm == "tremolo":  # deep sinusoidal amplitude modulation
        return f0 * ones, 1.0 - 0.85 * (0.5 + 0.5 * np.sin(2 * math.pi * (5.0 * jitter * t + start)))
    if rhythm == "vibrato":  # +-6 % frequency modulation
        return f0 * (1.0 + 0.06 * np.sin(2 * math.pi * (5.5 * jitter * t + start))), ones
    raise ValueError(f"unknown rhythm {rhythm!r}; expected one of {RHYTHMS}")


def _coloured_noise(rng: np.random.Generator, num_samples: int, slope: float) -> np.ndarray:
    """Unit-RMS noise whose power falls as 1 / f**slope (0 white, 1 pink, 2 brown)."""
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    freqs = np.arange(spectrum.size, dtype=np.float64)
    freqs[0] = 1.0
    noise = np.fft.irfft(spectrum / freqs ** (slope / 2), n=num_samples)
    return noise / (np.sqrt(np.mean(noise ** 2)) + 1e-12)


def _harmonic_tone(
    freq: np.ndarray, harmonics: Dict[int, float], audio_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Sum of harmonics of the instantaneous frequency ``freq`` (Hz, (S,)), scaled to peak <= 1."""
    phase = 2 * math.pi * np.cumsum(freq) / audio_rate + rng.uniform(0, 2 * math.pi)
    tone = sum(
        amp * np.sin(k * phase) * (k * freq < 0.45 * audio_rate)  # drop aliasing harmonics
        for k, amp in harmonics.items()
    )
    return tone / sum(harmonics.values())


def _distractor_tone(t: np.ndarray, audio_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A pure tone of random pitch and rhythm heard during a random stretch of at least 40 %."""
    f0 = math.exp(rng.uniform(math.log(150.0), math.log(min(3000.0, 0.2 * audio_rate))))
    freq, envelope = _pitch_and_envelope(RHYTHMS[rng.integers(len(RHYTHMS))], t, f0, rng)
    length = rng.uniform(0.4, 1.0) * t[-1]
    start = rng.uniform(0.0, t[-1] - length)
    window = np.clip(np.minimum(t - start, start + length - t) / 0.02, 0.0, 1.0)  # 20 ms ramps
    return _harmonic_tone(freq, TIMBRES["pure"], audio_rate, rng) * envelope * window


def synthesize_audio(
    spec: ClassSpec, rng: np.random.Generator, *, num_samples: int, audio_rate: int
) -> np.ndarray:
    """Synthesise the mono soundtrack of one video of class ``spec``.

    Args:
        spec: the class recipe (pitch, rhythm and timbre are used).
        rng: source of every per-video nuisance.
        num_samples: length S of the waveform in samples.
        audio_rate: sample rate in Hz.

    Returns:
        float32 waveform of shape (S,) in [-1, 1].
    """
    t = np.arange(num_samples) / float(audio_rate)
    f0 = spec.pitch_hz * rng.uniform(0.96, 1.04)
    freq, envelope = _pitch_and_envelope(spec.rhythm, t, f0, rng)
    signal = _harmonic_tone(freq, TIMBRES[spec.timbre], audio_rate, rng) * envelope
    if rng.uniform() < 0.6:  # a quieter tone of random pitch and rhythm, as the video's distractor
        signal = signal + rng.uniform(0.25, 0.6) * _distractor_tone(t, audio_rate, rng)
    fade = np.clip(np.minimum(t, t[-1] - t) / 0.01, 0.0, 1.0)  # 10 ms fade in/out
    signal = rng.uniform(0.12, 0.45) * signal * fade
    rms = np.sqrt(np.mean(signal ** 2)) + 1e-8
    snr_db = rng.uniform(3.0, 20.0)
    noise = _coloured_noise(rng, num_samples, slope=rng.uniform(0.0, 1.5)) * rms / 10 ** (snr_db / 20)
    return np.clip(signal + noise, -1.0, 1.0).astype(np.float32)


# ------------------------------------------------------------------------------------------------ #
# Dataset
# ------------------------------------------------------------------------------------------------ #
@dataclass(frozen=True)
class _Job:
    """Everything a worker needs to write one video (picklable)."""

    path: str
    spec: ClassSpec
    entropy: Tuple[int, ...]
    width: int
    height: int
    fps: float
    num_frames: int
    audio_rate: int
    num_samples: int


def _encode_job(job: _Job) -> str:
    """Render, synthesise and encode one video; returns its path."""
    video_seq, audio_seq = np.random.SeedSequence(job.entropy).spawn(2)
    frames = render_video(
        job.spec, np.random.default_rng(video_seq),
        width=job.width, height=job.height, num_frames=job.num_frames, fps=job.fps,
    )
    audio = synthesize_audio(
        job.spec, np.random.default_rng(audio_seq), num_samples=job.num_samples, audio_rate=job.audio_rate
    )
    fps = Fraction(job.fps).limit_denominator(1001)  # av_writer needs a rational for fractional rates
    write_video(job.path, frames, fps=fps, audio=audio, audio_rate=job.audio_rate)
    return job.path


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not float(value).is_integer() or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _validated_params(
    num_classes: int, per_split: Dict[str, int], width: int, height: int, fps: float,
    duration: float, audio_rate: int, seed: int,
) -> Dict[str, object]:
    """Check the generator's parameters and return them as a canonical, JSON-able dict."""
    params: Dict[str, object] = {"format_version": FORMAT_VERSION}
    params["num_classes"] = _check_int("num_classes", num_classes, 1)
    class_specs(params["num_classes"])  # raises a clear error when there are too many classes
    for split, count in per_split.items():
        params[f"{split}_per_class"] = _check_int(f"{split}_per_class", count, 0)
    if sum(per_split.values()) == 0:
        raise ValueError("train_per_class + val_per_class + test_per_class must be > 0")
    for name, side in (("width", width), ("height", height)):
        side = _check_int(name, side, _MIN_SIDE)
        if side % 2:
            raise ValueError(f"{name} must be even (h264 yuv420p), got {side}")
        params[name] = side
    if not fps > 0 or not duration > 0:
        raise ValueError(f"fps and duration must be > 0, got fps={fps!r}, duration={duration!r}")
    params["fps"], params["duration"] = float(fps), float(duration)
    if round(fps * duration) < 2:
        raise ValueError(f"fps * duration must give at least 2 frames, got {fps} * {duration}")
    if audio_rate not in AAC_SAMPLE_RATES:
        raise ValueError(f"audio_rate must be one of {AAC_SAMPLE_RATES} Hz, got {audio_rate!r}")
    params["audio_rate"] = int(audio_rate)
    params["seed"] = _check_int("seed", seed, 0)
    return params


def _file_name(spec: ClassSpec, split: str, index: int) -> str:
    return f"{spec.name}_{split}_{index:04d}.mp4"


def _split_entries(specs: Sequence[ClassSpec], per_class: int, split: str) -> List[Tuple[str, int]]:
    """(path relative to videos/, label) of every video of ``split``, by label then index."""
    return [
        (f"{s.name}/{_file_name(s, split, i)}", s.label) for s in specs for i in range(per_class)
    ]


def _write_text(path: str, lines: Sequence[str]) -> None:
    with open(path, "w", newline="\n") as f:
        f.writelines(line + "\n" for line in lines)


Video = Tuple[str, int]  # (csv split, index in that split) of one video of a class


def official_split(num_train: int, num_test: int, split_id: int) -> Tuple[List[Video], List[Video]]:
    """The (train, test) videos of one class in the official-style split ``split_id``.

    The class's train.csv and test.csv videos form a pool ``train 0 .. n - 1, test 0 .. m - 1``; split
    N holds out the m pool positions that start (N - 1) * m before the first test video, cyclically.
    Split 1 is therefore exactly train.csv / test.csv, and with n >= 2 m the three held-out sets are
    disjoint, as in UCF-101 and HMDB-51. Deterministic; no video is in both or in neither.

    Args:
        num_train: n, the class's train.csv videos.
        num_test: m, the class's test.csv videos.
        split_id: N, 1-based.

    Returns:
        (train videos, test videos), each in pool order.
    """
    pool = [("train", i) for i in range(num_train)] + [("test", i) for i in range(num_test)]
    start = num_train - (split_id - 1) * num_test
    held = {(start + j) % len(pool) for j in range(num_test)}
    return ([v for p, v in enumerate(pool) if p not in held], [v for p, v in enumerate(pool) if p in held])


def _write_index_files(
    root: str, specs: Sequence[ClassSpec], entries: Dict[str, List[Tuple[str, int]]],
    per_class: Dict[str, int],
) -> None:
    """The Kinetics-format CSVs and the UCF-101-style and HMDB-51-style split files."""
    for split in SPLITS:
        lines = [f"videos/{path} {label}" for path, label in entries[split]]
        _write_text(os.path.join(root, f"{split}.csv"), lines)
    _write_text(os.path.join(root, "classInd.txt"), [f"{s.label + 1} {s.name}" for s in specs])
    os.makedirs(os.path.join(root, HMDB51_SPLIT_DIR), exist_ok=True)
    for split_id in OFFICIAL_SPLIT_IDS:
        train, test = official_split(per_class["train"], per_class["test"], split_id)  # same for every class
        ids = {**{video: 1 for video in train}, **{video: 2 for video in test}}  # HMDB-51 ids; 0 = unused
        train_list, test_list = [], []
        for spec in specs:
            train_list += [f"{spec.name}/{_file_name(spec, *video)} {spec.label + 1}" for video in train]
            test_list += [f"{spec.name}/{_file_name(spec, *video)}" for video in test]
            hmdb = [f"{_file_name(spec, split, i)} {ids.get((split, i), 0)}"
                    for split in SPLITS for i in range(per_class[split])]
            _write_text(os.path.join(root, HMDB51_SPLIT_DIR, f"{spec.name}_test_split{split_id}.txt"), hmdb)
        _write_text(os.path.join(root, f"trainlist{split_id:02d}.txt"), train_list)
        _write_text(os.path.join(root, f"testlist{split_id:02d}.txt"), test_list)


def _run_jobs(jobs: Sequence[_Job], workers: int) -> None:
    """Encode ``jobs``, in ``workers`` processes when that is more than one."""
    # Daemonic processes (e.g. data-loader workers) may not have children: encode in-process there.
    if workers <= 1 or len(jobs) <= 1 or multiprocessing.current_process().daemon:
        for job in jobs:
            _encode_job(job)
        return
    workers = min(workers, len(jobs))
    # Workers only run numpy and PyAV, so "fork" is safe and cheap; "spawn" would re-import the package
    # (and with it torch, ~4 s and ~0.7 GB) in every worker, which costs more than it saves on few cores.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        for _ in pool.map(_encode_job, jobs, chunksize=max(1, len(jobs) // (4 * workers))):
            pass


def _build(root: str, params: Dict[str, object], workers: int) -> None:
    """Write the whole dataset into the (empty, private) directory ``root``; the marker goes last."""
    specs = class_specs(params["num_classes"])
    entries = {split: _split_entries(specs, params[f"{split}_per_class"], split) for split in SPLITS}
    num_frames = int(round(params["fps"] * params["duration"]))
    num_samples = int(round(params["audio_rate"] * params["duration"]))
    jobs = []
    for split_id, split in enumerate(SPLITS):
        for index_in_split, (rel, label) in enumerate(entries[split]):
            index = index_in_split % params[f"{split}_per_class"]
            jobs.append(_Job(
                path=os.path.join(root, "videos", rel), spec=specs[label],
                entropy=(params["seed"], _VIDEO_SEED_VERSION, split_id, label, index),
                width=params["width"], height=params["height"], fps=params["fps"],
                num_frames=num_frames, audio_rate=params["audio_rate"], num_samples=num_samples,
            ))
    for spec in specs:
        os.makedirs(os.path.join(root, "videos", spec.name), exist_ok=True)
    _run_jobs(jobs, workers)
    _write_index_files(root, specs, entries, {split: params[f"{split}_per_class"] for split in SPLITS})
    meta = {
        "params": params,
        "num_frames": num_frames,
        "num_audio_samples": num_samples,
        "num_videos": {split: len(entries[split]) for split in SPLITS},
        "classes": [asdict(s) for s in specs],
    }
    _write_text(os.path.join(root, "dataset.json"), [json.dumps(meta, indent=1, sort_keys=True)])
    _write_text(os.path.join(root, _MARKER), [json.dumps(params, sort_keys=True)])


def _read_marker(out_dir: str) -> Optional[Dict[str, object]]:
    try:
        with open(os.path.join(out_dir, _MARKER)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def _check_reusable(out_dir: str, params: Dict[str, object]) -> bool:
    """True if ``out_dir`` holds this dataset; False if it is absent or empty; else a clear error."""
    found = _read_marker(out_dir)
    if found == params:
        return True
    if found is not None:
        diff = {k: (found.get(k), v) for k, v in params.items() if found.get(k) != v}
        raise FileExistsError(
            f"{out_dir} holds a synthetic dataset made with other parameters (existing, requested): "
            f"{diff}; delete it or choose another directory"
        )
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        raise FileExistsError(f"{out_dir} exists, is not empty and is not a complete synthetic dataset")
    return False


@contextlib.contextmanager
def _exclusive_lock(path: str) -> Iterator[None]:
    """Hold an advisory lock on ``path`` (created if needed); a no-op where fcntl is missing."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _summary(out_dir: str, generated: bool, seconds: float) -> Dict[str, object]:
    with open(os.path.join(out_dir, "dataset.json")) as f:
        meta = json.load(f)
    size = sum(
        os.path.getsize(os.path.join(d, name)) for d, _, names in os.walk(out_dir) for name in names
    )
    return {
        "out_dir": out_dir,
        "generated": generated,
        "seconds": round(seconds, 3),
        "size_bytes": size,
        "num_classes": meta["params"]["num_classes"],
        "num_videos": meta["num_videos"],
        "class_names": [c["name"] for c in meta["classes"]],
        "params": meta["params"],
    }


def generate_dataset(
    out_dir: str,
    *,
    num_classes: int,
    train_per_class: int,
    val_per_class: int,
    test_per_class: int,
    width: int,
    height: int,
    fps: float,
    duration: float,
    audio_rate: int,
    seed: int,
    workers: int = 1,
) -> Dict[str, object]:
    """Generate the synthetic dataset into ``out_dir`` unless it is already there.

    Safe to call from several processes at once: one generates (in a temporary sibling directory
    renamed into place when complete), the others wait for it and reuse its result.

    Args:
        out_dir: local directory to create (must be absent, empty, or this very dataset).
        num_classes: number of classes, 1 to :func:`max_num_classes`.
        train_per_class: videos per class in ``train.csv`` / ``trainlist01.txt``.
        val_per_class: videos per class in ``val.csv``.
        test_per_class: videos per class in ``test.csv`` / ``testlist01.txt``.
        width: frame width in pixels (even, >= 16).
        height: frame height in pixels (even, >= 16).
        fps: frame rate in frames/s.
        duration: length of every video in seconds.
        audio_rate: audio sample rate in Hz (an AAC rate >= 8000).
        seed: non-negative seed; the same seed writes the same CSVs and the same video content.
        workers: processes encoding in parallel (0 = one per CPU core); no effect on the content.

    Returns:
        Summary dict: ``out_dir``, ``generated`` (False when reused), ``seconds``, ``size_bytes``,
        ``num_classes``, ``num_videos`` per split, ``class_names`` and ``params``.

    Raises:
        ValueError: for invalid parameters (e.g. more classes than distinct recipes, odd sizes).
        FileExistsError: when ``out_dir`` holds something else (e.g. a dataset of other parameters).
    """
    start = time.time()
    params = _validated_params(
        num_classes, {"train": train_per_class, "val": val_per_class, "test": test_per_class},
        width, height, fps, duration, audio_rate, seed,
    )
    workers = _check_int("workers", workers, 0) or (os.cpu_count() or 1)
    out_dir = os.path.abspath(os.fspath(out_dir)).rstrip(os.sep)
    if _check_reusable(out_dir, params):
        return _summary(out_dir, False, time.time() - start)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    with _exclusive_lock(out_dir + ".lock"):
        if _check_reusable(out_dir, params):  # another process made it while we waited
            return _summary(out_dir, False, time.time() - start)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.tmp-", dir=parent)
        try:
            _build(tmp, params, workers)
            os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
            try:
                os.rename(tmp, out_dir)  # atomic; replaces an empty directory
            except OSError:
                if not _check_reusable(out_dir, params):  # someone without the lock won the race
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
                return _summary(out_dir, False, time.time() - start)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return _summary(out_dir, True, time.time() - start)


def generate_dataset_from_cfg(
    cfg: CfgNode, out_dir: str, *, workers: Optional[int] = None
) -> Dict[str, object]:
    """:func:`generate_dataset` with ``MODEL.NUM_CLASSES`` and ``STICA.SYNTHETIC.*`` of ``cfg``.

    Args:
        cfg: a config with the STICA keys (see ``add_synthetic_config``).
        out_dir: local directory of the dataset.
        workers: encoding processes; None reads ``STICA.SYNTHETIC.WORKERS``.

    Returns:
        The summary of :func:`generate_dataset`.
    """
    syn = cfg.STICA.SYNTHETIC
    return generate_dataset(
        out_dir,
        num_classes=cfg.MODEL.NUM_CLASSES,
        train_per_class=syn.TRAIN_PER_CLASS,
        val_per_class=syn.VAL_PER_CLASS,
        test_per_class=syn.TEST_PER_CLASS,
        width=syn.WIDTH,
        height=syn.HEIGHT,
        fps=syn.FPS,
        duration=syn.DURATION,
        audio_rate=syn.AUDIO_RATE,
        seed=syn.SEED,
        workers=syn.get("WORKERS", 1) if workers is None else workers,
    )
