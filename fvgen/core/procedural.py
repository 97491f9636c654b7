"""A procedural demo scene, made entirely by fvgen's own code (no downloaded data).

``make_demo_scene`` ray-casts a small textured room corner -- ground plane, back and side walls,
a few rotated boxes and spheres -- with multi-scale solid textures (value-noise fBm, colour
cells, stripes, fine speckle) and Lambertian shading with hard shadows, from ``n_views``
cameras on a forward-facing arc (a phone sweeping about 36 degrees around the table). It writes
``view_00.jpg ...`` (JPEG quality 92) and the ground-truth cameras as ``cameras_opencv.json``
(the schema of the shared datasets, written by :func:`fvgen.core.cameras.write_cameras_opencv_json`).

Regenerate the shipped demo with ``fvgen demo assets/demo``.

Textures are functions of the 3D surface point, so every view sees the same surface pattern and
feature matchers (SIFT, learned matchers) find plenty of correspondences. Everything is
deterministic for a given seed (integer hashing, no global RNG state).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cameras import Camera, look_at, write_cameras_opencv_json

ARC_DEG = 36.0  # total sweep of the camera arc
SUPERSAMPLE = 2  # rays per pixel along each axis


# ----------------------------------------------------------------------------- procedural noise

def _hash(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray, seed: int) -> np.ndarray:
    """Integer lattice hash -> float in [0, 1)."""
    h = (ix.astype(np.uint32) * np.uint32(73856093)) ^ (iy.astype(np.uint32) * np.uint32(19349663)) \
        ^ (iz.astype(np.uint32) * np.uint32(83492791)) ^ np.uint32((seed * 2654435761) & 0xFFFFFFFF)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0x5BD1E995)
    h ^= h >> np.uint32(15)
    h *= np.uint32(0x27D4EB2F)
    h ^= h >> np.uint32(16)
    return (h & np.uint32(0xFFFFFF)).astype(np.float64) / float(0x1000000)


def _value_noise(p: np.ndarray, seed: int) -> np.ndarray:
    """Smooth 3D value noise in [0, 1] at unit lattice spacing; ``p`` is [N, 3]."""
    i = np.floor(p)
    f = p - i
    f = f * f * (3.0 - 2.0 * f)
    i = i.astype(np.int64)
    out = np.zeros(len(p))
    for dx in (0, 1):
        wx = f[:, 0] if dx else 1.0 - f[:, 0]
        for dy in (0, 1):
            wy = f[:, 1] if dy else 1.0 - f[:, 1]
            for dz in (0, 1):
                wz = f[:, 2] if dz else 1.0 - f[:, 2]
                out += wx * wy * wz * _hash(i[:, 0] + dx, i[:, 1] + dy, i[:, 2] + dz, seed)
    return out


def _fbm(p: np.ndarray, seed: int, octaves: int = 5, base: float = 1.0) -> np.ndarray:
    """Fractal sum of value noise, roughly in [0, 1]."""
    total, amp, norm = np.zeros(len(p)), 1.0, 0.0
    for o in range(octaves):
        total += amp * _value_noise(p * base * 2.0 ** o + 17.3 * o, seed + 101 * o)
        norm += amp
        amp *= 0.7
    return total / norm


def _cells(p: np.ndarray, scale: float, seed: int) -> np.ndarray:
    """A random number per cubic cell of size ``1/scale`` (blocky colour patches)."""
    i = np.floor(p * scale).astype(np.int64)
    return _hash(i[:, 0], i[:, 1], i[:, 2], seed)


# ----------------------------------------------------------------------------- scene


@dataclass
class _Material:
    palette: np.ndarray  # [K, 3] colours in [0, 1]
    noise_scale: float  # cycles per metre of the base fBm
    cell_scale: float  # colour patches per metre
    stripe_dir: np.ndarray  # [3] stripes run across this direction
    stripe_freq: float  # stripes per metre (0 = none)
    seed: int

    def shade(self, p: np.ndarray) -> np.ndarray:
        pal = self.palette
        n = _fbm(p, self.seed, octaves=5, base=self.noise_scale)
        n = np.clip((n - 0.5) * 3.0 + 0.5, 0.0, 1.0)
        c = pal[0] * (1.0 - n[:, None]) + pal[1] * n[:, None]
        # colour patches from the rest of the palette
        cell = _cells(p + 0.37, self.cell_scale, self.seed + 7)
        idx = 2 + np.floor(cell * (len(pal) - 2) * 1.6).astype(int)
        patch = idx < len(pal)
        c[patch] = 0.35 * c[patch] + 0.65 * pal[idx[patch]]
        # stripes
        if self.stripe_freq > 0:
            s = np.sin(2 * math.pi * self.stripe_freq * (p @ self.stripe_dir)
                       + 3.0 * _value_noise(p * 1.5, self.seed + 3))
            c *= (0.78 + 0.22 * np.tanh(4.0 * s))[:, None]
        # fine speckle: high-frequency noise for small-scale corners
        sp = 0.6 * _value_noise(p * 11.0, self.seed + 11) + 0.4 * _value_noise(p * 23.0, self.seed + 13)
        c *= (0.5 + 1.0 * sp)[:, None]
        return np.clip(c, 0.0, 1.0)


def _rand_palette(rng: np.random.Generator, k: int) -> np.ndarray:
    hues = rng.uniform(0, 1, k)
    sat = rng.uniform(0.35, 0.9, k)
    val = rng.uniform(0.35, 0.95, k)
    out = []
    for h, s, v in zip(hues, sat, val):
        i = int(h * 6) % 6
        f = h * 6 - int(h * 6)
        p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
        out.append([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])
    return np.asarray(out)


class ProceduralScene:
    """World frame: y up, ground at y = 0, back wall at z = -2.2, side wall at x = 2.8; the
    cameras sit at z > 0 looking towards -z."""

    def __init__(self, seed: int):
        rng = np.random.default_rng(seed)
        # primitives: planes (point, normal), boxes (centre, half size, yaw), spheres (centre, r)
        self.planes = [
            (np.array([0.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])),  # ground
            (np.array([0.0, 0.0, -2.2]), np.array([0.0, 0.0, 1.0])),  # back wall
            (np.array([2.8, 0.0, 0.0]), np.array([-1.0, 0.0, 0.0])),  # side wall (right)
        ]
        jit = lambda s: rng.uniform(-s, s)  # noqa: E731
        self.boxes = [
            (np.array([-0.9 + jit(0.1), 0.35, -0.5 + jit(0.1)]), np.array([0.45, 0.35, 0.35]), 0.35 + jit(0.1)),
            (np.array([0.55 + jit(0.1), 0.55, -1.2 + jit(0.1)]), np.array([0.3, 0.55, 0.3]), -0.5 + jit(0.1)),
            (np.array([1.5 + jit(0.1), 0.2, 0.2 + jit(0.1)]), np.array([0.35, 0.2, 0.5]), 0.2 + jit(0.1)),
            (np.array([-0.9 + jit(0.05), 0.85, -0.5 + jit(0.05)]), np.array([0.2, 0.15, 0.2]), -0.2 + jit(0.1)),
        ]
        self.spheres = [
            (np.array([0.2 + jit(0.1), 0.38, 0.35 + jit(0.1)]), 0.38),
            (np.array([-1.8 + jit(0.1), 0.5, -1.4 + jit(0.1)]), 0.5),
            (np.array([1.25 + jit(0.1), 0.62, -0.25 + jit(0.1)]), 0.22),
        ]
        n_obj = len(self.planes) + len(self.boxes) + len(self.spheres)
        self.materials = []
        for k in range(n_obj):
            d = rng.normal(size=3)
            self.materials.append(_Material(
                palette=_rand_palette(rng, 5),
                noise_scale=rng.uniform(1.5, 4.0) if k >= len(self.planes) else rng.uniform(0.8, 2.0),
                cell_scale=rng.uniform(2.0, 5.0),
                stripe_dir=d / np.linalg.norm(d),
                stripe_freq=rng.choice([0.0, rng.uniform(2.0, 6.0)]),
                seed=int(seed * 1000 + 31 * k + 1),
            ))
        self.light = np.array([0.45, 1.0, 0.7]) / np.linalg.norm([0.45, 1.0, 0.7])

    def intersect(self, o: np.ndarray, d: np.ndarray, any_hit: bool = False):
        """Nearest hit along rays: (t [N], object id [N] (-1 = none), normal [N, 3])."""
        n = len(o)
        t_best = np.full(n, np.inf)
        obj = np.full(n, -1)
        nrm = np.zeros((n, 3))
        eps = 1e-6
        k = 0
        planes = [] if any_hit else self.planes  # planes never shadow this scene
        k = len(self.planes) if any_hit else 0
        for p0, pn in planes:
            den = d @ pn
            with np.errstate(divide="ignore", invalid="ignore"):
                t = ((p0 - o) @ pn) / den
            hit = (den < -1e-9) & (t > eps) & (t < t_best)
            t_best[hit], obj[hit], nrm[hit] = t[hit], k, pn
            k += 1
        for c, s, yaw in self.boxes:
            cy, sy = math.cos(yaw), math.sin(yaw)
            R = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])  # local -> world
            ol = (o - c) @ R
            dl = d @ R
            with np.errstate(divide="ignore", invalid="ignore"):
                inv = 1.0 / np.where(np.abs(dl) < 1e-12, 1e-12, dl)
                t1 = (-s - ol) * inv
                t2 = (s - ol) * inv
            tmin_ax = np.minimum(t1, t2)
            tmax = np.maximum(t1, t2).min(1)
            tmin = tmin_ax.max(1)
            hit = (tmax >= tmin) & (tmin > eps) & (tmin < t_best)
            ax = tmin_ax.argmax(1)
            nl = np.zeros((n, 3))
            nl[np.arange(n), ax] = -np.sign(dl[np.arange(n), ax])
            t_best[hit], obj[hit], nrm[hit] = tmin[hit], k, (nl @ R.T)[hit]
            k += 1
        for c, r in self.spheres:
            oc = o - c
            b = (oc * d).sum(1)
            cc = (oc * oc).sum(1) - r * r
            disc = b * b - cc
            sq = np.sqrt(np.maximum(disc, 0.0))
            t = -b - sq
            hit = (disc > 0) & (t > eps) & (t < t_best)
            t_best[hit], obj[hit] = t[hit], k
            nrm[hit] = (oc[hit] + t[hit, None] * d[hit]) / r
            k += 1
        return t_best, obj, nrm

    def render(self, cam: Camera, ss: int = SUPERSAMPLE) -> np.ndarray:
        w, h = cam.width, cam.height
        offs = (np.arange(ss) + 0.5) / ss - 0.5  # sub-pixel offsets around pixel centres
        u = (np.arange(w)[None, :, None, None] + offs[None, None, None, :])
        v = (np.arange(h)[:, None, None, None] + offs[None, None, :, None])
        u, v = np.broadcast_arrays(u, v)  # [h, w, ss, ss]
        K = cam.K
        x = (u - K[0, 2]) / K[0, 0]
        y = (v - K[1, 2]) / K[1, 1]
        dirs_c = np.stack([x, y, np.ones_like(x)], -1).reshape(-1, 3)
        R = cam.c2w[:3, :3]
        d = dirs_c @ R.T
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        o = np.broadcast_to(cam.c2w[:3, 3], d.shape).copy()

        t, obj, nrm = self.intersect(o, d)
        col = np.full((len(d), 3), 0.8)  # (nothing is missed inside the room, but be safe)
        hitm = obj >= 0
        p = o[hitm] + t[hitm, None] * d[hitm]
        nh = nrm[hitm]
        # shadows towards the sun
        _, sobj, _ = self.intersect(p + 1e-4 * nh, np.broadcast_to(self.light, p.shape).copy(), any_hit=True)
        lit = (sobj < 0).astype(float)
        lam = np.clip(nh @ self.light, 0.0, 1.0) * lit
        # a soft fill light from the camera side, so faces away from the sun keep their texture
        fill = np.clip(nh @ (np.array([-0.3, 0.5, 1.0]) / np.linalg.norm([-0.3, 0.5, 1.0])), 0.0, 1.0)
        shade = 0.32 + 0.62 * lam + 0.26 * fill
        albedo = np.zeros((len(p), 3))
        oh = obj[hitm]
        for k, m in enumerate(self.materials):
            sel = oh == k
            if sel.any():
                albedo[sel] = m.shade(p[sel] + 10.0 * k)
        col[hitm] = albedo * shade[:, None]
        img = col.reshape(h, w, ss * ss, 3).mean(2)
        return np.clip(img, 0.0, 1.0)


# ----------------------------------------------------------------------------- cameras


def demo_cameras(n_views: int = 8, width: int = 480, height: int = 360) -> list[Camera]:
    """``n_views`` cameras on a forward-facing arc (radius 4 m, 36 degrees) around the table."""
    target = np.array([0.0, 0.45, -0.4])
    f = 0.9 * width
    K = [[f, 0, (width - 1) / 2.0], [0, f, (height - 1) / 2.0], [0, 0, 1]]
    cams = []
    for i, a in enumerate(np.linspace(-ARC_DEG / 2, ARC_DEG / 2, n_views)):
        a = math.radians(a)
        frac = i / max(n_views - 1, 1)
        eye = target + np.array([3.6 * math.sin(a), 1.35 + 0.25 * math.sin(math.pi * frac), 3.6 * math.cos(a)])
        look = target + np.array([0.15 * math.sin(a), 0.0, 0.0])  # the phone pans a little
        cams.append(Camera(K, look_at(eye, look, np.array([0.0, 1.0, 0.0])), width, height,
                           name=f"view_{i:02d}.jpg"))
    return cams


def make_demo_scene(out_dir: Path, n_views: int = 8, width: int = 480, height: int = 360,
                    seed: int = 0) -> Path:
    """Render the demo scene into ``out_dir`` (``view_XX.jpg`` + ``cameras_opencv.json``)."""
    from PIL import Image

    if n_views < 2:
        raise ValueError("the demo scene needs at least 2 views")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scene = ProceduralScene(seed)
    cams = demo_cameras(n_views, width, height)
    for cam in cams:
        img = scene.render(cam)
        arr = np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(out_dir / cam.name, quality=92)
    write_cameras_opencv_json(cams, out_dir / "cameras_opencv.json")
    return out_dir
