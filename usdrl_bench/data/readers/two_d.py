"""2-D skeletons (the journal extension's transferred settings): pyskl's HRNet keypoints of NTU RGB+D, and a
2-D projection of the embedded synthetic skeletons as their stand-in.

**pyskl 2-D pickles** (``ntu60_hrnet.pkl`` / ``ntu120_hrnet.pkl``; FACTS-foundation §4): a dict ``{split,
annotations}``; ``split`` maps ``<protocol>_<train|val>`` (``xsub``, ``xview``, ``xset``) to ``frame_dir``
names; each annotation has ``frame_dir``, ``label`` (0-based), ``img_shape`` ``(height, width)``,
``total_frames``, ``keypoint`` ``(M, T, 17, 2)`` in pixels (x, y) and ``keypoint_score`` ``(M, T, 17)``.
Read as ``(3, T, 17, 2)``: x and y centred on the body and in units of its torso (``normalization: body``,
the default; :func:`normalise_2d`), or x divided by the width and y by the height, for every joint
(``normalization: image``), and a third channel ``padding: score`` (the keypoint score) or ``zero``
(zeros), "2-D padded to 3-D" as the FSM feeders do. The FSM feeders divide *joints* 0 and 1 by the height
and width instead of the x and y axes of every joint (their ``keypoint[:, :, 0] /= h``), leaving 15 joints
in pixels: not inherited. Divided by the image size only, a sequence differs from another by a few percent
of the input (every coordinate near 0.5, the score 1): a fine-tuned encoder then predicts one class (README,
"2-D fine-tuning"), which is why ``body`` is the default. One body is padded
with a zero second body; more than two keep the two with the highest mean score. Sequences keep their
length (zero-padded to the longest). The layout is ``coco17`` (:data:`usdrl_bench.skeleton.COCO17`); the
encoders size themselves from the data (17 joints x 2 bodies = 34 spatial tokens, 3 channels).

**synthetic_2d**: :func:`~usdrl_bench.data.synthetic.generator.generate_synthetic`'s 3-D skeletons mapped onto the
COCO-17 joints (the head's joints placed around the NTU head joint), seen by a pinhole camera (focal length
1000 px, 1920 x 1080 image, 3.5 m in front of the subject) and normalised like the pyskl data, score 1 for
every tracked joint.
"""

from __future__ import annotations

import functools

import logging
from pathlib import Path
from typing import Iterator, Literal

import numpy as np

from usdrl_bench.data.arrays import SkeletonArrays
from usdrl_bench.data.errors import DataFormatError
from usdrl_bench.data.readers.formats import _CHUNK, _cache_dir, _convert
from usdrl_bench.data.readers.formats import _meta as meta
from usdrl_bench.data.readers.formats import read_pyskl
from usdrl_bench.data.root import DATA_ROOT_ENV
from usdrl_bench.data.synthetic.generator import load_synthetic
from usdrl_bench.data.registration import register_dataset

log = logging.getLogger(__name__)

Padding = Literal["score", "zero"]
PADDINGS = ("score", "zero")
Normalization = Literal["body", "image"]
NORMALIZATIONS = ("body", "image")
#: COCO-17 joints (0-based) of the shoulders and hips: the body's centre and unit of length
_SHOULDERS, _HIPS = (5, 6), (11, 12)
NUM_JOINTS = 17
NUM_BODIES = 2

#: NTU-25 joint (0-based) standing in for each COCO-17 joint in the synthetic projection, and an offset in
#: metres (x: to the subject's left, y: up, z: towards the camera) for the face joints around the head
_FROM_NTU25 = (
    (3, (0.0, 0.0, 0.10)),     # nose
    (3, (0.035, 0.04, 0.08)),  # left eye
    (3, (-0.035, 0.04, 0.08)),  # right eye
    (3, (0.08, 0.0, 0.0)),     # left ear
    (3, (-0.08, 0.0, 0.0)),    # right ear
    (4, None), (8, None), (5, None), (9, None), (6, None), (10, None),  # shoulders, elbows, wrists
    (12, None), (16, None), (13, None), (17, None), (14, None), (18, None),  # hips, knees, ankles
)


def normalise_2d(keypoint: np.ndarray, score: np.ndarray | None, img_shape: tuple[int, int],
                 padding: Padding = "score", num_bodies: int = NUM_BODIES,
                 normalization: Normalization = "body") -> np.ndarray:
    """``(M, T, V, 2)`` pixels (and ``(M, T, V)`` scores) -> ``(3, T, V, num_bodies)`` float32, third channel
    the score or zeros; bodies padded with zeros or, beyond ``num_bodies``, the highest-scoring kept.

    ``normalization``:

    * ``image``: x / width and y / height for every joint (what the FSM feeders mean to do; see the module
      docstring). Every coordinate sits near 0.5 and a body spans a few hundredths of the frame, so the
      sequences differ from one another by a few percent of the input: fine-tuning from it predicts one class
      (README, "2-D fine-tuning").
    * ``body`` (default): the 3-D pipelines' centring carried to 2-D: the mid-hip of the first body in the
      first frame it appears in is the origin (the AGCN / UmURL preparation centres on the spine joint of
      the first frame), and the unit is that body's torso (mid-shoulder to mid-hip, median over its frames),
      so the coordinates do not depend on the image size or the camera distance. A degenerate torso (every
      frame's shoulders on its hips) falls back to the image height. Frames without a body stay zero.

    Raises:
        ValueError: bad shapes, a non-positive image size, an unknown padding or normalization.
    """
    kp = np.asarray(keypoint, dtype=np.float32)
    if kp.ndim != 4 or kp.shape[3] != 2:
        raise ValueError(f"keypoint must be (M, T, V, 2), got shape {kp.shape}")
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}")
    h, w = (float(v) for v in img_shape)
    if not (h > 0 and w > 0):
        raise ValueError(f"img_shape must be (height, width) > 0, got {img_shape!r}")
    sc = np.ones(kp.shape[:3], np.float32) if score is None else np.asarray(score, dtype=np.float32)
    if sc.shape != kp.shape[:3]:
        raise ValueError(f"keypoint_score must be (M, T, V) = {kp.shape[:3]}, got shape {sc.shape}")
    if kp.shape[0] > num_bodies:  # the bodies the pose estimator was surest of
        keep = np.sort(np.argsort(-sc.mean(axis=(1, 2)), kind="stable")[:num_bodies])
        kp, sc = kp[keep], sc[keep]
    m, t, v, _ = kp.shape
    out = np.zeros((3, t, v, num_bodies), np.float32)
    if normalization == "body":
        xy = body_normalised(kp, h)
        out[0, :, :, :m], out[1, :, :, :m] = xy[..., 0].transpose(1, 2, 0), xy[..., 1].transpose(1, 2, 0)
    else:
        out[0, :, :, :m] = (kp[..., 0] / w).transpose(1, 2, 0)
        out[1, :, :, :m] = (kp[..., 1] / h).transpose(1, 2, 0)
    if padding == "score":
        out[2, :, :, :m] = sc.transpose(1, 2, 0)
    return out


def body_normalised(kp: np.ndarray, height: float) -> np.ndarray:
    """``(M, T, V, 2)`` COCO-17 pixels -> the same in units of the first body's torso, centred on its mid-hip
    in the first frame it appears in (see :func:`normalise_2d`, ``body``); frames without a body (all-zero
    keypoints) stay zero, and so does a sequence without any body."""
    present = np.any(kp != 0, axis=(2, 3))  # (M, T)
    if not present.any():
        return np.zeros_like(kp)
    body = int(np.argmax(present.any(axis=1)))  # the first body that appears at all
    frames = np.flatnonzero(present[body])
    hips = kp[body, :, list(_HIPS)].mean(axis=0)  # (T, 2)
    shoulders = kp[body, :, list(_SHOULDERS)].mean(axis=0)
    centre = hips[frames[0]]
    torso = float(np.median(np.linalg.norm(shoulders[frames] - hips[frames], axis=-1)))
    unit = torso if torso > 1e-6 * height else height
    return np.where(present[..., None, None], (kp - centre) / unit, 0.0).astype(np.float32)


def _meta(names: list[str]) -> "np.ndarray":
    return meta(names)


@register_dataset("pyskl_2d", description="pyskl 2-D HRNet keypoints (ntu60_hrnet.pkl / ntu120_hrnet.pkl), COCO-17",
                  splits=("xsub", "xview", "xset"), default_split="xsub")
def load_pyskl_2d(path: str | Path, split: str = "xsub", *, padding: Padding = "score", num_classes: int | None = None,
                  max_frames: int | None = None, cache_dir: str | Path | None = None,
                  normalization: Normalization = "body") -> tuple[SkeletonArrays, SkeletonArrays]:
    """(train, test) of a pyskl 2-D pickle (module docstring): ``split["<split>_train"]`` and ``"<split>_val"``.

    Args:
        path: the pickle (read through the restricted unpickler: no code runs).
        split: ``xsub``, ``xview`` or ``xset``.
        padding: the third channel: ``score`` or ``zero``.
        normalization: ``body`` (centred on the body, torso units) or ``image`` (x / width, y / height);
            see :func:`normalise_2d`.
        num_classes: default the largest label + 1.
        max_frames: T of the arrays (default: the longest sequence).
        cache_dir: where the converted arrays are kept (default beside the suite's cache).

    Raises:
        FileNotFoundError: no such file.
        DataFormatError: missing keys, an unknown split, names without an annotation, keypoints that are
            not ``(M, T, 17, 2)``, a bad ``img_shape``, a label outside the classes; each names the sample.
    """
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}")
    path = Path(path)
    annotations, by_name, parts = read_pyskl(path, split, ("frame_dir", "label", "keypoint", "img_shape"))
    for i, a in enumerate(annotations):
        kp = np.asarray(a["keypoint"])
        if kp.ndim != 4 or kp.shape[2:] != (NUM_JOINTS, 2):
            raise DataFormatError(path, f"annotation {i} ({a['frame_dir']}): keypoint shape {kp.shape}, expected "
                                        f"(M, T, {NUM_JOINTS}, 2) (2-D COCO-17; 3-D files are read by 'pyskl')")
    used = [by_name[n] for names in parts.values() for n in names]
    if not used:
        raise DataFormatError(path, f"split {split!r} has no samples")
    T = max_frames or max(np.asarray(a["keypoint"]).shape[1] for a in used)
    k = num_classes or (max(int(a["label"]) for a in used) + 1)
    for names in parts.values():
        for n in names:
            if not 0 <= int(by_name[n]["label"]) < k:
                raise DataFormatError(path, f"sample {n}: label {by_name[n]['label']} outside [0, {k})")
    coordinates = "centred on the body, torso units" if normalization == "body" else "x / width and y / height"
    assumed = (f"{path.name}: 2-D keypoints (COCO-17), {coordinates}, third channel {padding}, "
               f"padded to T={T}, M={NUM_BODIES}; labels 0-based ({k} classes)")
    log.info("pyskl_2d: %s", assumed)
    cache = _cache_dir(path, {"format": "pyskl_2d", "split": split, "T": T, "padding": padding,
                              "normalization": normalization}, cache_dir)
    if not (cache / "done").is_file():
        def chunks(names: list[str]) -> Iterator[tuple[int, np.ndarray]]:
            for start in range(0, len(names), _CHUNK):
                block = np.zeros((min(_CHUNK, len(names) - start), 3, T, NUM_JOINTS, NUM_BODIES), dtype=np.float32)
                for j, n in enumerate(names[start:start + _CHUNK]):
                    a = by_name[n]
                    try:
                        x = normalise_2d(a["keypoint"], a.get("keypoint_score"), tuple(a["img_shape"]), padding,
                                         normalization=normalization)
                    except (ValueError, TypeError) as exc:
                        raise DataFormatError(path, f"sample {n}: {exc}") from None
                    t = min(x.shape[1], T)
                    block[j, :, :t] = x[:, :t]
                yield start, block

        _convert(cache, {part: (len(names), (3, T, NUM_JOINTS, NUM_BODIES), chunks(names)) for part, names in parts.items()})
    out = []
    for part, names in parts.items():
        frames = np.array([min(int(by_name[n].get("total_frames", np.asarray(by_name[n]["keypoint"]).shape[1])), T)
                           for n in names], dtype=np.int64)
        labels = np.array([int(by_name[n]["label"]) for n in names], dtype=np.int64)
        out.append(SkeletonArrays(data=np.load(cache / f"{part}_data_joint.npy", mmap_mode="r"), labels=labels,
                                  num_frames=np.maximum(frames, 1), meta=_meta(names), names=names, num_classes=k,
                                  layout="coco17", source=str(path), extra={"split": split, "assumed": assumed}))
    return out[0], out[1]


def project_to_coco17(joints: np.ndarray, *, focal: float = 1000.0, size: tuple[int, int] = (1080, 1920),
                      distance: float = 3.5) -> tuple[np.ndarray, np.ndarray]:
    """NTU-25 3-D joints ``(3, T, 25, M)`` (metres, body-centred) -> COCO-17 pixel keypoints ``(M, T, 17, 2)``
    and scores ``(M, T, 17)`` (1 where the source joint was tracked, 0 where it was all zeros: its keypoint
    is then the projection of that guess, as a pose estimator gives one for every joint; frames without the
    body are zero), seen by a pinhole camera ``distance`` metres in front (image ``size`` = (height, width), y up in the world,
    down in the image)."""
    c, t, v, m = joints.shape
    if c != 3 or v != 25:
        raise ValueError(f"expected NTU-25 joints (3, T, 25, M), got shape {joints.shape}")
    world = np.zeros((3, t, NUM_JOINTS, m), np.float32)
    tracked = np.zeros((t, NUM_JOINTS, m), bool)
    for j, (src, offset) in enumerate(_FROM_NTU25):
        world[:, :, j] = joints[:, :, src]
        tracked[:, j] = np.any(joints[:, :, src] != 0, axis=0)
        if offset is not None:
            world[:, :, j] += np.asarray(offset, np.float32)[:, None, None]
    h, w = size
    z = distance - world[2]  # the camera looks along -z from +distance
    u = focal * world[0] / z + w / 2
    vv = -focal * world[1] / z + h / 2
    kp = np.stack([u, vv], axis=-1).transpose(2, 0, 1, 3)  # (M, T, 17, 2)
    score = tracked.transpose(2, 0, 1).astype(np.float32)
    absent = ~np.any(joints != 0, axis=(0, 2)).T  # (M, T): no body in the frame
    kp[absent] = 0.0  # an untracked joint of a present body keeps its guess (score 0), as a pose estimator's
    return kp.astype(np.float32), score


@register_dataset("synthetic_2d", description="the synthetic skeletons projected to 2-D COCO-17 keypoints (the 2-D stand-in)",
                  splits=("xsub", "xview", "xset"), files=False, default_split="xsub")
def load_synthetic_2d(path: str | None = None, split: str = "xsub", *, padding: Padding = "score",
                      normalization: Normalization = "body", **options) -> tuple[SkeletonArrays, SkeletonArrays]:
    """(train, test) of :func:`~usdrl_bench.data.synthetic.generator.load_synthetic` (same samples, splits and
    options) as 2-D COCO-17 keypoints normalised like the pyskl data (module docstring; ``normalization``
    as :func:`normalise_2d`)."""
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}")
    out = []
    for arrays in load_synthetic(path, split, **options):
        data = np.zeros((len(arrays), 3, arrays.data.shape[2], NUM_JOINTS, NUM_BODIES), np.float32)
        for i in range(len(arrays)):
            kp, score = project_to_coco17(np.asarray(arrays.data[i], np.float32))
            data[i] = normalise_2d(kp, score, (1080, 1920), padding, normalization=normalization)
            data[i, :, int(arrays.num_frames[i]):] = 0.0
        out.append(SkeletonArrays(data=data, labels=arrays.labels, num_frames=arrays.num_frames, meta=arrays.meta,
                                  names=arrays.names, num_classes=arrays.num_classes, layout="coco17",
                                  class_names=arrays.class_names, source=f"synthetic_2d({arrays.source})",
                                  extra={**arrays.extra, "assumed": f"2-D projection, {normalization} normalization, "
                                                                    f"third channel {padding}"}))
    return out[0], out[1]


#: the pyskl 2-D files of NTU RGB+D under ``<data root>/NTU-2D`` (downloaded as released by pyskl)
NTU_2D_FOLDER = "NTU-2D"
NTU_2D = {"ntu60_2d_xsub": ("ntu60_hrnet.pkl", "xsub", 60), "ntu60_2d_xview": ("ntu60_hrnet.pkl", "xview", 60),
          "ntu120_2d_xsub": ("ntu120_hrnet.pkl", "xsub", 120), "ntu120_2d_xset": ("ntu120_hrnet.pkl", "xset", 120)}
PYSKL_URL = "https://download.openmmlab.com/mmaction/pyskl/data/nturgbd/"


def locate_ntu_2d(name: str, root: Path) -> Path:
    """The pyskl file of named dataset ``name`` (:data:`NTU_2D`) under the data root ``root``.

    Raises:
        FileNotFoundError: it is not there; the message says what to download and where to put it.
    """
    pkl = root / NTU_2D_FOLDER / NTU_2D[name][0]
    if not pkl.is_file():
        raise FileNotFoundError(f"dataset {name} not found: expected {pkl}. Download {PYSKL_URL}{pkl.name} into "
                                f"{pkl.parent}; the data root is --data-root or ${DATA_ROOT_ENV} (now {root})")
    return pkl


def _register_ntu_2d(name: str, file: str, protocol: str, num_classes: int) -> None:
    @register_dataset(name, description=f"{name}: pyskl 2-D HRNet keypoints ({NTU_2D_FOLDER}/{file} under the data root)",
                      splits=(protocol,), default_split=protocol,
                      locate=functools.partial(locate_ntu_2d, name))
    def load(path: str, split: str = protocol, *, padding: Padding = "score",
             normalization: Normalization = "body") -> tuple[SkeletonArrays, SkeletonArrays]:
        if split != protocol:
            raise KeyError(f"Unknown split {split!r} for {name}; available: {protocol}")
        return load_pyskl_2d(path, protocol, padding=padding, num_classes=num_classes, normalization=normalization)

    load.__doc__ = f"(train, test) of {name}: :func:`load_pyskl_2d` of ``<data root>/{NTU_2D_FOLDER}/{file}``, {protocol}."


for _name, (_file, _split, _k) in NTU_2D.items():
    _register_ntu_2d(_name, _file, _split, _k)
