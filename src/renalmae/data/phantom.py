"""Synthetic renal ultrasound phantom: seeded B-mode-like kidney images with lesion masks, in 3 classes.

Each image is a transverse view of one fetal kidney inside a curved-array fan: an oval, bean-shaped
kidney (bright capsule, hypoechoic parenchyma with darker pyramids, echogenic central sinus) in
textured abdominal tissue, with an abdominal wall at the top and a vertebra whose acoustic shadow
runs down the image. The classes differ the way they do on a scanner:

- `normal`: no lesion; the mask is empty. At higher difficulty some normal kidneys show a thin,
  physiological slit of pelvic fluid (not a lesion, not in the mask), as real ones do.
- `utd` (urinary tract dilation): an anechoic dilated renal pelvis in the sinus, sometimes with
  dilated calyces joined to it; the mask covers the dilated collecting system.
- `mcdk` (multicystic dysplastic kidney): an enlarged, echogenic kidney holding 2-6 cysts of varying
  size that do not touch each other; the mask is the union of the cysts (>= 2 connected components).

Physics, kept simple and vectorised: scatterers of reflectivity R are blurred by an anisotropic
point-spread function (fully developed Rayleigh speckle), attenuated along depth by the tissue
above them (so fluid gives posterior enhancement and bone an acoustic shadow), partly compensated by
a time-gain curve (depth-dependent gain), plus electronic noise, then log-compressed to 8 bits with a
random dynamic range and overall gain.

`difficulty` d in [0, 1] (params `phantom.difficulty`, default 0.6) makes the task harder. The knob
bites late (powers of d), so the default is moderate and 1.0 very hard:

- lesion size shrinks: pelvis and cyst radii x (1 - 0.45 d^2), i.e. x 0.84 at the default;
- lesion contrast shrinks: the fluid echo rises as -28 + 20 d^3 dB, from anechoic to -8 dB, next to
  the parenchyma's -7 dB;
- speckle grows: its grain widens from 0.5 to 1.1 pixels (at 64 px; x sqrt(size / 64) elsewhere),
  the scanner's speckle smoothing weakens, and electronic noise rises from -30 to -12 dB;
- confounders: a thin physiological pelvic slit appears in 50 d^3 % of normal kidneys.

Measured with the small CNN of tests/unit/data/test_phantom.py (300 training images at 32 px, normal
vs anomaly, AUC on 200 others): about 0.98 after 3 epochs at d = 0 and about 0.5 after 1 epoch at
the default, where 8 epochs give 0.5-0.8 depending on the network (a 4-layer CNN at 64 px: 0.68).

Simulated patients: images come in groups of 1-3 (`groups`) sharing one kidney (class, shape and
lesions) seen in different poses, so a split that ignores groups leaks. In `unlabelled` mode (pools
for pretraining) the classes are drawn with the same fractions but labels are None and masks are
empty (a pool carries no annotation).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import numpy as np
from scipy import ndimage

from renalmae.errors import DataError

CLASSES = ("normal", "utd", "mcdk")
URI_SYNTAX = "phantom://renal?n=<images>&seed=<int>[&unlabelled=true|false]"

_MAX_CYSTS = 6
_MAX_CALYCES = 4
_GROUP_SIZE_PROBABILITIES = (0.4, 0.35, 0.25)  # 1, 2 or 3 images per simulated patient
_CHUNK = 64  # images rendered at once: bounds memory at large image sizes

# Reflectivity (linear power, tissue = 1) of each structure.
_PARENCHYMA = 0.2
_PYRAMID = 0.08
_SINUS = 4.0
_CAPSULE = 3.0
_WALL = 3.0
_BONE = 12.0


@dataclass(frozen=True)
class PhantomImages:
    """Generated images with their lesion masks, labels (None when unlabelled), ids and patient groups."""

    images: np.ndarray  # uint8 [n, S, S]
    masks: np.ndarray  # uint8 [n, S, S], values 0/1
    labels: list[str | None]
    ids: list[str]
    groups: list[str]


@dataclass(frozen=True)
class PhantomSpec:
    """What a `phantom://renal?...` URI asks for."""

    n: int
    seed: int
    unlabelled: bool = False


def parse_phantom_uri(uri: str) -> PhantomSpec:
    """Parse `phantom://renal?n=400&seed=0[&unlabelled=true]`; raise DataError naming the URI otherwise."""

    def refuse(reason: str) -> DataError:
        return DataError(f"bad phantom URI '{uri}': {reason}; expected {URI_SYNTAX}")

    parts = urlsplit(uri)
    if parts.scheme != "phantom" or parts.netloc != "renal" or parts.path not in ("", "/") or parts.fragment:
        raise refuse("it must start with phantom://renal? and have no path or #fragment")
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise refuse("the query is not key=value pairs joined by &") from None
    query: dict[str, str] = {}
    for key, value in pairs:
        if key in query:
            raise refuse(f"key '{key}' is given twice")
        query[key] = value
    unknown = sorted(set(query) - {"n", "seed", "unlabelled"})
    if unknown:
        raise refuse(f"unknown key(s) {unknown}")
    for key in ("n", "seed"):
        if key not in query:
            raise refuse(f"'{key}' is missing")
    n, seed = _integer(query["n"]), _integer(query["seed"])
    if n is None or n < 1:
        raise refuse(f"n must be a positive integer (got '{query['n']}')")
    if seed is None or seed < 0:
        raise refuse(f"seed must be a non-negative integer (got '{query['seed']}')")
    flag = query.get("unlabelled", "false").lower()
    if flag not in ("true", "false", "1", "0"):
        raise refuse(f"unlabelled must be true or false (got '{query['unlabelled']}')")
    return PhantomSpec(n=n, seed=seed, unlabelled=flag in ("true", "1"))


def _integer(text: str) -> int | None:
    return int(text) if re.fullmatch(r"[0-9]+", text) else None


def generate_phantom(
    n: int,
    seed: int,
    image_size: int,
    difficulty: float,
    class_fractions: Sequence[float] = (0.67, 0.27, 0.06),
    unlabelled: bool = False,
) -> PhantomImages:
    """Generate `n` phantom images of `image_size`^2 pixels, the same for the same arguments."""
    if n < 1 or image_size < 16:
        raise ValueError(f"need n >= 1 and image_size >= 16 (got n={n}, image_size={image_size})")
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"difficulty must be in [0, 1] (got {difficulty})")
    fractions = np.asarray(class_fractions, dtype=float)
    if fractions.shape != (3,) or (fractions < 0).any() or abs(fractions.sum() - 1.0) > 1e-6:
        raise ValueError(
            f"class_fractions must be 3 non-negative numbers summing to 1 (got {class_fractions})"
        )
    rng = np.random.default_rng([seed, int(unlabelled)])
    classes, group_index = _draw_patients(n, fractions, rng)
    layout = _draw_layout(classes, group_index, image_size, difficulty, rng)
    images = np.empty((n, image_size, image_size), dtype=np.uint8)
    masks = np.empty((n, image_size, image_size), dtype=np.uint8)
    for start in range(0, n, _CHUNK):
        chunk = slice(start, min(start + _CHUNK, n))
        images[chunk], masks[chunk] = _render({k: v[chunk] for k, v in layout.items()}, image_size, rng)
    prefix = f"phantom-pool-{seed}" if unlabelled else f"phantom-{seed}"
    if unlabelled:
        masks[:] = 0
    return PhantomImages(
        images=images,
        masks=masks,
        labels=[None if unlabelled else CLASSES[c] for c in classes],
        ids=[f"{prefix}-{index:05d}" for index in range(n)],
        groups=[f"{prefix}-patient-{g:05d}" for g in group_index],
    )


def _draw_patients(n: int, fractions: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Class and patient index per image: exact class counts (largest remainder), 1-3 images per patient."""
    exact = fractions * n
    counts = np.floor(exact).astype(int)
    counts[np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]] += 1
    classes, groups = [], []
    for class_index, count in enumerate(counts):
        remaining = count
        while remaining > 0:
            size = min(remaining, 1 + rng.choice(3, p=_GROUP_SIZE_PROBABILITIES))
            classes += [class_index] * size
            groups += [len(set(groups))] * size
            remaining -= size
    order = rng.permutation(n)
    classes_arr, groups_arr = np.asarray(classes)[order], np.asarray(groups)[order]
    # number patients in order of first appearance so ids read naturally
    _, first = np.unique(groups_arr, return_index=True)
    renumber = np.empty(len(first), dtype=int)
    renumber[np.argsort(first)] = np.arange(len(first))
    return classes_arr, renumber[groups_arr]


def _draw_layout(
    classes: np.ndarray, group_index: np.ndarray, size: int, difficulty: float, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Per-image geometry and acquisition settings: anatomy per patient, pose and gain per image."""
    n, n_groups = len(classes), int(group_index.max()) + 1
    group_class = np.zeros(n_groups, dtype=int)
    group_class[group_index] = classes
    # the knob bites late, so the default 0.6 is moderate and 1.0 very hard
    lesion_scale = 1.0 - 0.45 * difficulty**2
    hard = difficulty**3
    pixel = 1.0 / size
    min_radius = 1.0 * pixel / 0.85  # >= 1 pixel after the smallest pose scale
    gap = max(0.02, 2.5 * pixel / 0.85)  # cysts stay >= 2 pixels apart: separate components

    # anatomy, per patient
    mcdk = group_class == 2
    a = rng.uniform(0.19, 0.25, n_groups) * np.where(mcdk, 1.3, 1.0)
    b = a * rng.uniform(0.62, 0.8, n_groups)
    sinus_a, sinus_b = a * rng.uniform(0.45, 0.6, n_groups), b * rng.uniform(0.3, 0.42, n_groups)
    anatomy = {
        "a": a,
        "b": b,
        "sinus_a": sinus_a,
        "sinus_b": sinus_b,
        "sinus_level": np.where(mcdk, 0.8, _SINUS) * rng.uniform(0.7, 1.3, n_groups),
        "parenchyma": np.where(mcdk, 2.2, _PARENCHYMA) * rng.uniform(0.8, 1.25, n_groups),
        "pyramids": rng.integers(5, 9, n_groups).astype(float),
        "pyramid_phase": rng.uniform(0, 2 * np.pi, n_groups),
        "spine_side": rng.choice([-1.0, 1.0], n_groups),
        "pelvis_a": np.zeros(n_groups),
        "pelvis_b": np.zeros(n_groups),
        "calyx_u": np.zeros((n_groups, _MAX_CALYCES)),
        "calyx_v": np.zeros((n_groups, _MAX_CALYCES)),
        "calyx_r": np.zeros((n_groups, _MAX_CALYCES)),
        "cyst_u": np.zeros((n_groups, _MAX_CYSTS)),
        "cyst_v": np.zeros((n_groups, _MAX_CYSTS)),
        "cyst_r": np.zeros((n_groups, _MAX_CYSTS)),
        "slit_a": np.zeros(n_groups),
        "slit_b": np.zeros(n_groups),
    }
    for g in range(n_groups):
        if group_class[g] == 1:
            grade = rng.uniform(0.55, 1.0) * lesion_scale
            pelvis_a = max(sinus_a[g] * grade * 1.1, min_radius)
            pelvis_b = max(sinus_b[g] * grade * 1.5, min_radius)
            anatomy["pelvis_a"][g], anatomy["pelvis_b"][g] = pelvis_a, pelvis_b
            calyces = rng.integers(0, _MAX_CALYCES + 1) if grade > 0.45 else 0
            angles = rng.uniform(-1.2, 1.2, calyces) + np.pi
            radius = max(0.45 * pelvis_b, min_radius)
            anatomy["calyx_u"][g, :calyces] = np.cos(angles) * (pelvis_a + 0.5 * radius)
            anatomy["calyx_v"][g, :calyces] = np.sin(angles) * (pelvis_b + 0.5 * radius)
            anatomy["calyx_r"][g, :calyces] = radius
        elif group_class[g] == 2:
            cysts = _place_cysts(a[g], b[g], lesion_scale, min_radius, gap, rng)
            anatomy["cyst_u"][g, : len(cysts)], anatomy["cyst_v"][g, : len(cysts)] = cysts[:, 0], cysts[:, 1]
            anatomy["cyst_r"][g, : len(cysts)] = cysts[:, 2]
        elif rng.uniform() < 0.5 * hard:
            anatomy["slit_a"][g] = sinus_a[g] * rng.uniform(0.3, 0.8)
            anatomy["slit_b"][g] = max(sinus_b[g] * rng.uniform(0.1, 0.35), min_radius)

    layout = {key: value[group_index] for key, value in anatomy.items()}
    # pose and acquisition, per image
    layout.update(
        cx=rng.uniform(0.36, 0.64, n),
        cy=rng.uniform(0.42, 0.6, n),
        theta=rng.uniform(-np.pi, np.pi, n_groups)[group_index] + rng.uniform(-0.5, 0.5, n),
        scale=rng.uniform(0.85, 1.15, n),
        attenuation=rng.uniform(1.5, 3.0, n),
        tgc=rng.uniform(0.5, 0.9, n),
        dynamic_range=rng.uniform(34.0, 44.0, n),
        gain_db=rng.uniform(-3.0, 3.0, n),
        wall_depth=rng.uniform(0.05, 0.14, n),
        grain=np.full(n, (0.5 + 0.6 * hard) * np.sqrt(size / 64.0)),
        smoothing=np.full(n, (0.6 - 0.3 * difficulty) * np.sqrt(size / 64.0)),
        noise_db=np.full(n, -30.0 + 18.0 * hard) + rng.uniform(-3.0, 3.0, n),
        fluid_db=np.full(n, -28.0 + 20.0 * hard) + rng.uniform(-2.0, 2.0, n),
    )
    return layout


def _place_cysts(
    a: float, b: float, lesion_scale: float, min_radius: float, gap: float, rng: np.random.Generator
) -> np.ndarray:
    """2-6 non-touching cysts (u, v, r) inside the kidney ellipse, in kidney coordinates."""
    wanted = int(rng.integers(2, _MAX_CYSTS + 1))
    cysts: list[tuple[float, float, float]] = []
    for attempt in range(8 * _MAX_CYSTS):
        if len(cysts) == wanted or (len(cysts) >= 2 and attempt >= 2 * _MAX_CYSTS):
            break
        shrink = 0.8 ** (attempt // _MAX_CYSTS)
        radius = max(rng.uniform(0.15, 0.4) * b * lesion_scale * shrink, min_radius)
        u, v = rng.uniform(-a, a, 60), rng.uniform(-b, b, 60)
        inside = (u / max(a - radius, 1e-6)) ** 2 + (v / max(b - radius, 1e-6)) ** 2 < 0.9
        apart = np.ones(60, dtype=bool)
        for cu, cv, cr in cysts:
            apart &= np.hypot(u - cu, v - cv) > radius + cr + gap
        fits = np.flatnonzero(inside & apart)
        if fits.size:
            cysts.append((u[fits[0]], v[fits[0]], radius))
    if len(cysts) < 2:
        # a kidney too few pixels wide for two separate cysts inside it: two cysts side by side
        cysts = [(-(min_radius + gap / 2), 0.0, min_radius), (min_radius + gap / 2, 0.0, min_radius)]
    return np.asarray(cysts)


def _render(p: dict[str, np.ndarray], size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Render a chunk of images from their layout: reflectivity → speckle → attenuation → log compression."""
    m = len(p["a"])

    def col(name: str) -> np.ndarray:
        return p[name].astype(np.float32)[:, None, None]

    coords = (np.arange(size, dtype=np.float32) + 0.5) / size
    y, x = coords[None, :, None], coords[None, None, :]
    dx, dy = x - col("cx"), y - col("cy")
    cos, sin, scale = np.cos(col("theta")), np.sin(col("theta")), col("scale")
    u, v = (cos * dx + sin * dy) / scale, (-sin * dx + cos * dy) / scale
    a, b = col("a"), col("b")

    radial = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    hilum = (u - 0.95 * a) ** 2 + v**2 < (0.45 * b) ** 2
    kidney = (radial < 1.0) & ~hilum
    capsule = (radial >= 1.0) & (radial < 1.0 + 1.6 / (size * a)) & ~hilum
    sinus_u = u - 0.25 * a
    sinus = kidney & ((sinus_u / col("sinus_a")) ** 2 + (v / col("sinus_b")) ** 2 < 1.0)
    angle = np.arctan2(v / b, u / a)
    pyramid = kidney & ~sinus & (radial > 0.45) & (radial < 0.85)
    pyramid &= np.cos(col("pyramids") * angle + col("pyramid_phase")) > 0.35

    pelvis = (sinus_u / np.maximum(col("pelvis_a"), 1e-6)) ** 2 + (
        v / np.maximum(col("pelvis_b"), 1e-6)
    ) ** 2 < 1
    lesion = pelvis & (col("pelvis_a") > 0)
    for k in range(_MAX_CALYCES):
        cu, cv, cr = (
            p[name][:, k].astype(np.float32)[:, None, None] for name in ("calyx_u", "calyx_v", "calyx_r")
        )
        lesion |= (sinus_u - cu) ** 2 + (v - cv) ** 2 < cr**2
    lesion &= kidney
    for k in range(_MAX_CYSTS):
        cu, cv, cr = (
            p[name][:, k].astype(np.float32)[:, None, None] for name in ("cyst_u", "cyst_v", "cyst_r")
        )
        lesion |= (u - cu) ** 2 + (v - cv) ** 2 < cr**2
    slit = (sinus_u / np.maximum(col("slit_a"), 1e-6)) ** 2 + (v / np.maximum(col("slit_b"), 1e-6)) ** 2 < 1
    fluid = lesion | (slit & (col("slit_a") > 0) & kidney)

    spine_x = col("cx") - col("spine_side") * 0.3
    spine = (x - spine_x) ** 2 + (y - col("cy") - 0.08) ** 2 < (0.055 * scale) ** 2
    spine &= (x - spine_x) ** 2 + (y - col("cy") - 0.08) ** 2 > (0.03 * scale) ** 2
    wall = np.abs(y - col("wall_depth")) < 0.025

    texture = np.exp(0.35 * _smooth_noise(rng, m, 8, size))
    reflectivity = texture
    reflectivity = np.where(wall, _WALL * texture, reflectivity)
    reflectivity = np.where(kidney, col("parenchyma") * texture, reflectivity)
    reflectivity = np.where(pyramid, _PYRAMID, reflectivity)
    sinus_texture = np.exp(0.8 * _smooth_noise(rng, m, max(size // 6, 8), size))
    reflectivity = np.where(sinus, col("sinus_level") * sinus_texture, reflectivity)
    reflectivity = np.where(capsule, _CAPSULE, reflectivity)
    reflectivity = np.where(fluid, 10.0 ** (col("fluid_db") / 10.0), reflectivity)
    reflectivity = np.where(spine, _BONE, reflectivity)

    fan = _fan(size)
    attenuating = np.where(fluid, 0.15, 1.0) + np.where(spine, 25.0, 0.0)
    path = np.cumsum(attenuating, axis=1, dtype=np.float32) / size
    depth_gain = np.exp(-col("attenuation") * (path - col("tgc") * y))

    # Rayleigh speckle: complex Gaussian scatterers weighted by sqrt(reflectivity), blurred by the PSF
    grain = float(p["grain"][0])
    sigma = (0, grain, 1.7 * grain)
    amplitude = np.sqrt(reflectivity).astype(np.float32)
    real = ndimage.gaussian_filter(amplitude * rng.standard_normal((m, size, size), dtype=np.float32), sigma)
    imag = ndimage.gaussian_filter(amplitude * rng.standard_normal((m, size, size), dtype=np.float32), sigma)
    power = (real**2 + imag**2) / (2.0 * _psf_energy(sigma)) * depth_gain
    noise = rng.standard_normal((2, m, size, size), dtype=np.float32)
    power += 10.0 ** (col("noise_db") / 10.0) * 0.5 * (noise[0] ** 2 + noise[1] ** 2)

    decibels = 10.0 * np.log10(power + 1e-12) - col("gain_db") - 14.0
    # the scanner's speckle reduction, weaker at higher difficulty
    decibels = ndimage.gaussian_filter(decibels, (0, float(p["smoothing"][0]), float(p["smoothing"][0])))
    grey = np.clip((decibels + col("dynamic_range")) / col("dynamic_range"), 0.0, 1.0) * 255.0
    images = np.where(fan, grey, 0.0).round().astype(np.uint8)
    masks = (lesion & fan).astype(np.uint8)
    return images, masks


def _psf_energy(sigma: tuple[float, float, float]) -> float:
    """Sum of squared PSF weights: the variance a unit white-noise field keeps after the blur."""
    impulse = np.zeros((1, 41, 41), dtype=np.float64)
    impulse[0, 20, 20] = 1.0
    return float((ndimage.gaussian_filter(impulse, sigma) ** 2).sum())


def _smooth_noise(rng: np.random.Generator, m: int, coarse: int, size: int) -> np.ndarray:
    """Unit-variance low-frequency noise: a coarse Gaussian grid upsampled bilinearly to `size`."""
    grid = rng.standard_normal((m, coarse, coarse)).astype(np.float32)
    positions = (np.arange(size) + 0.5) * coarse / size - 0.5
    interpolate = np.stack([np.interp(positions, np.arange(coarse), row) for row in np.eye(coarse)], axis=1)
    interpolate = interpolate.astype(np.float32)
    return interpolate @ grid @ interpolate.T


def _fan(size: int) -> np.ndarray:
    """The curved-array field of view: a 80-degree sector whose apex sits above the image."""
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size
    y, x = coords[:, None] + 0.25, coords[None, :] - 0.5
    radius, angle = np.hypot(x, y), np.arctan2(x, y)
    return (np.abs(angle) < np.deg2rad(40.0)) & (radius > 0.27) & (radius < 1.3)
