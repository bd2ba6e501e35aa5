"""Built-in part-annotated shapes: meshes assembled from primitives, each face labelled with its part.

One generator gives both what ACD pretraining needs (a mesh to decompose) and what few-shot part
segmentation needs (per-point part labels, via the face each point is sampled from), so the demo
needs no download. Categories and part ids are ShapeNetPart's (:data:`SHAPENETPART_PARTS`): a
procedural chair's back/seat/leg/arm are global parts 12/13/14/15, exactly as in the real data, so
the same evaluator serves both.

Shapes are y-up and axis-aligned like ShapeNet. Every proportion (sizes, counts, styles: round or
square legs, pedestal or four legs, arms or not, engines or not ...) is drawn from a generator
seeded by ``(GENERATOR_VERSION, seed, split, category, index)``: a shape does not depend on how many
others are drawn, and train and test are disjoint draws.

Primitives are closed convex pieces (boxes, prisms, frusta) and swept tubes with outward-facing
triangles; pieces of one shape overlap a little (no boolean union, which CoACD's manifold
pre-processing handles) rather than share vertices, so each stays its own connected piece: most
pieces are then convex, and their ACD costs no CoACD call (see
:mod:`mmssl.modalities.pointcloud.acd.decompose`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mmssl.modalities.pointcloud.shapenetpart import SHAPENETPART_CATEGORIES, part_id

# Bump when shapes change, so cached ACD results and samples are not reused.
GENERATOR_VERSION = 2
_SPLIT_CODES = {"train": 0, "test": 1, "val": 2}


@dataclass
class PartMesh:
    """A triangle mesh with one global ShapeNetPart part id per face."""

    vertices: np.ndarray  # float32 [V, 3]
    faces: np.ndarray  # int64 [F, 3]
    face_labels: np.ndarray  # int64 [F]
    category: str


# --------------------------------------------------------------------------------------- primitives


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross product of two 3-vectors (``np.cross`` has a large per-call overhead on tiny inputs)."""
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def _orient_convex(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Flip faces of a convex piece whose normal points towards the piece's centroid."""
    centroid = vertices.mean(axis=0)
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    normals = np.cross(b - a, c - a)
    inward = np.einsum("ij,ij->i", normals, (a + b + c) / 3 - centroid) < 0
    faces = faces.copy()
    faces[inward] = faces[inward][:, ::-1]
    return faces


def slab(
    polygon: np.ndarray,
    thickness: float,
    origin=(0.0, 0.0, 0.0),
    u=(1.0, 0.0, 0.0),
    v=(0.0, 0.0, 1.0),
) -> tuple[np.ndarray, np.ndarray]:
    """A prism: the convex 2-D ``polygon [M, 2]`` (in the plane spanned by ``u``, ``v`` through
    ``origin``) extruded by ``thickness`` along ``u x v``, centred on the plane."""
    polygon = np.asarray(polygon, dtype=np.float64)
    o, u, v = (np.asarray(x, dtype=np.float64) for x in (origin, u, v))
    w = _cross(u, v)
    w = w / np.linalg.norm(w)
    base = o + polygon[:, :1] * u + polygon[:, 1:2] * v
    m = len(polygon)
    vertices = np.concatenate([base - 0.5 * thickness * w, base + 0.5 * thickness * w])
    faces = [[0, i, i + 1] for i in range(1, m - 1)] + [[m, m + i + 1, m + i] for i in range(1, m - 1)]
    for i in range(m):
        j = (i + 1) % m
        faces += [[i, j, m + j], [i, m + j, m + i]]
    return vertices, _orient_convex(vertices, np.asarray(faces, dtype=np.int64))


def box(center, size, u=(1.0, 0.0, 0.0), v=(0.0, 0.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """A cuboid: ``size = (extent along u, along u x v, along v)``; default axes give (x, y, z)."""
    sx, sy, sz = size
    rect = np.array([[-sx, -sz], [sx, -sz], [sx, sz], [-sx, sz]]) / 2
    # slab's extrusion axis is u x v; with the defaults that is -y, a symmetric extrusion either way.
    return slab(rect, sy, center, u, v)


def tube(
    path: np.ndarray, radii, segments: int = 16, cap_start: bool = True, cap_end: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """A surface swept by circles of ``radii[k]`` around the polyline ``path [K, 3]``.

    Two points give a cylinder or frustum (a radius of 0 gives a cone's apex). Frames are
    propagated by projection (rotation-minimising up to the polyline's discretisation), so rings
    do not twist. Side triangles wind counter-clockwise seen from outside; caps face along the
    path's end tangents.
    """
    path = np.asarray(path, dtype=np.float64)
    radii = np.broadcast_to(np.asarray(radii, dtype=np.float64), (len(path),))
    k = len(path)
    tangents = np.gradient(path, axis=0)
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    helper = np.array([1.0, 0.0, 0.0]) if abs(tangents[0, 0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    normal = _cross(tangents[0], helper)
    rings = []
    phi = 2 * np.pi * np.arange(segments) / segments
    cos, sin = np.cos(phi)[:, None], np.sin(phi)[:, None]
    for i in range(k):
        normal = normal - normal.dot(tangents[i]) * tangents[i]
        normal /= np.linalg.norm(normal)
        binormal = _cross(tangents[i], normal)
        rings.append(path[i] + radii[i] * (cos * normal + sin * binormal))
    vertices = np.concatenate(rings + [path[:1], path[-1:]])
    s = segments
    j = np.arange(s)
    b0 = (np.arange(k - 1)[:, None] * s + j).ravel()  # ring i, column j
    b1 = (np.arange(k - 1)[:, None] * s + (j + 1) % s).ravel()  # ring i, column j + 1
    faces = [np.stack([b0, b1, b1 + s], 1), np.stack([b0, b1 + s, b0 + s], 1)]
    c0, c1 = k * s, k * s + 1
    if cap_start and radii[0] > 0:
        faces.append(np.stack([np.full(s, c0), (j + 1) % s, j], 1))
    if cap_end and radii[-1] > 0:
        last = (k - 1) * s
        faces.append(np.stack([np.full(s, c1), last + j, last + (j + 1) % s], 1))
    faces = np.concatenate(faces).astype(np.int64)
    a, b, c = (vertices[faces[:, m]] for m in range(3))
    keep = np.linalg.norm(np.cross(b - a, c - a), axis=1) > 1e-12  # drop triangles collapsed at an apex
    return vertices, faces[keep]


def cylinder(p0, p1, r0: float, r1: float | None = None, segments: int = 16, caps: bool = True):
    """A cylinder (or frustum when ``r1`` differs, cone when 0) from ``p0`` to ``p1``."""
    return tube(np.array([p0, p1]), [r0, r0 if r1 is None else r1], segments, caps, caps)


def arc(center, radius: float, start: float, stop: float, plane=((1, 0, 0), (0, 1, 0)), steps: int = 12):
    """Points of a circular arc in the plane spanned by ``plane`` (angles in radians)."""
    t = np.linspace(start, stop, steps)[:, None]
    e1, e2 = (np.asarray(e, dtype=np.float64) for e in plane)
    return np.asarray(center, dtype=np.float64) + radius * (np.cos(t) * e1 + np.sin(t) * e2)


class _Assembly:
    """Collects labelled pieces of one shape."""

    def __init__(self, category: str) -> None:
        self.category = category
        self.pieces: list[tuple[np.ndarray, np.ndarray, int]] = []

    def add(self, part: str, piece: tuple[np.ndarray, np.ndarray]) -> None:
        self.pieces.append((piece[0], piece[1], part_id(self.category, part)))

    def mesh(self) -> PartMesh:
        vertices, faces, labels, offset = [], [], [], 0
        for v, f, label in self.pieces:
            vertices.append(v)
            faces.append(f + offset)
            labels.append(np.full(len(f), label, dtype=np.int64))
            offset += len(v)
        return PartMesh(
            np.concatenate(vertices).astype(np.float32),
            np.concatenate(faces),
            np.concatenate(labels),
            self.category,
        )


# ----------------------------------------------------------------------------------------- shapes


def _legs(a: _Assembly, part: str, xs, zs, y0: float, y1: float, thick: float, round_: bool, splay=0.0):
    for x in xs:
        for z in zs:
            if round_:
                foot = (x * (1 + splay), y0, z * (1 + splay))
                a.add(part, cylinder(foot, (x, y1, z), thick / 2, segments=10))
            else:
                a.add(part, box((x, (y0 + y1) / 2, z), (thick, y1 - y0, thick)))


def make_chair(rng: np.random.Generator) -> PartMesh:
    """Seat, four legs (square or round, sometimes splayed) or a swivel base, a solid or slatted
    back (tilted), and arms on some chairs."""
    a = _Assembly("Chair")
    w, d = rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6)
    h, t = rng.uniform(0.38, 0.5), rng.uniform(0.03, 0.08)
    a.add("seat", box((0, h - t / 2, 0), (w, t, d)))
    lt = rng.uniform(0.03, 0.06)
    if rng.random() < 0.2:  # swivel chair: column + five spokes, all "leg"
        a.add("leg", cylinder((0, 0.08, 0), (0, h - t, 0), rng.uniform(0.025, 0.04)))
        for k in range(5):
            ang = 2 * np.pi * k / 5
            out = np.array([np.cos(ang), 0, np.sin(ang)])
            start = 0.02 * out + (0, 0.06, 0)  # inside the column, not at its axis (no shared vertex)
            a.add("leg", cylinder(start, 0.35 * max(w, d) * out + (0, 0.03, 0), 0.02, segments=8))
    else:
        inset = rng.uniform(0.0, 0.04)
        xs = (-(w / 2 - lt / 2 - inset), w / 2 - lt / 2 - inset)
        zs = (-(d / 2 - lt / 2 - inset), d / 2 - lt / 2 - inset)
        _legs(a, "leg", xs, zs, 0.0, h - t, lt, rng.random() < 0.5, splay=rng.uniform(0, 0.15))
    hb, tb = rng.uniform(0.3, 0.6), rng.uniform(0.025, 0.06)
    tilt = np.deg2rad(rng.uniform(0, 15))
    up = np.array([0.0, np.cos(tilt), -np.sin(tilt)])  # back leans backwards (towards -z)
    base = np.array([0.0, h, -d / 2 + tb / 2])
    if rng.random() < 0.6:
        a.add("back", box(base + up * hb / 2, (w, tb, hb), u=(1, 0, 0), v=up))
    else:  # two posts and two to four rails
        for x in (-(w / 2 - tb / 2), w / 2 - tb / 2):
            a.add("back", box(base + up * hb / 2 + (x, 0, 0), (tb, tb, hb), u=(1, 0, 0), v=up))
        for r in range(int(rng.integers(2, 5))):
            frac = 1 - r * rng.uniform(0.18, 0.25)
            a.add(
                "back", box(base + up * hb * frac - up * tb / 2, (w, tb * 0.8, tb * 1.5), u=(1, 0, 0), v=up)
            )
    if rng.random() < 0.4:
        ha, ta = rng.uniform(0.15, 0.28), rng.uniform(0.03, 0.06)
        for x in (-(w / 2 - ta / 2), w / 2 - ta / 2):
            a.add("arm", box((x, h + ha / 2, d / 2 - ta), (ta, ha, ta)))
            a.add("arm", box((x, h + ha + ta / 2, 0), (ta * 1.4, ta, d)))
    return a.mesh()


def make_table(rng: np.random.Generator) -> PartMesh:
    """A rectangular or round top, four legs or a pedestal, and supports (aprons under the top,
    stretchers between legs) on some tables."""
    a = _Assembly("Table")
    h, t = rng.uniform(0.6, 0.8), rng.uniform(0.025, 0.06)
    round_top = rng.random() < 0.3
    if round_top:
        r = rng.uniform(0.4, 0.65)
        a.add("top", cylinder((0, h - t, 0), (0, h, 0), r, segments=24))
        w = d = 2 * r / np.sqrt(2)
    else:
        w, d = rng.uniform(0.8, 1.6), rng.uniform(0.5, 1.0)
        a.add("top", box((0, h - t / 2, 0), (w, t, d)))
    if round_top and rng.random() < 0.6:  # pedestal and foot disc
        a.add("leg", cylinder((0, 0.02, 0), (0, h - t - 0.01, 0), rng.uniform(0.04, 0.08)))
        a.add("leg", cylinder((0, 0, 0), (0, 0.04, 0), rng.uniform(0.2, 0.3), segments=20))
        if rng.random() < 0.5:
            a.add("support", cylinder((0, h - t - 0.05, 0), (0, h - t + 0.005, 0), rng.uniform(0.12, 0.2)))
        return a.mesh()
    lt, inset = rng.uniform(0.04, 0.08), rng.uniform(0.02, 0.08)
    xs = (-(w / 2 - lt / 2 - inset), w / 2 - lt / 2 - inset)
    zs = (-(d / 2 - lt / 2 - inset), d / 2 - lt / 2 - inset)
    _legs(a, "leg", xs, zs, 0.0, h - t, lt, rng.random() < 0.4)
    if rng.random() < 0.65:  # aprons just under the top
        ah = rng.uniform(0.05, 0.12)
        y = h - t - ah / 2
        for z in zs:
            a.add("support", box((0, y, z), (2 * xs[1], ah, lt * 0.5)))
        for x in xs:
            a.add("support", box((x, y, 0), (lt * 0.5, ah, 2 * zs[1])))
    if rng.random() < 0.35:  # stretchers or a shelf low between the legs
        y = rng.uniform(0.1, 0.25)
        if rng.random() < 0.5:
            a.add("support", box((0, y, 0), (2 * xs[1], 0.025, 2 * zs[1])))
        else:
            for z in zs:
                a.add("support", box((0, y, z), (2 * xs[1], lt * 0.5, lt * 0.5)))
    return a.mesh()


def make_lamp(rng: np.random.Generator) -> PartMesh:
    """Base (disc or block), a straight or bent tube, a canopy where the tube meets the shade, and a
    frustum shade hanging from it (closed: an open shade is a thin surface that CoACD cuts into
    dozens of slivers, at tens of seconds per lamp)."""
    a = _Assembly("Lamp")
    bh = rng.uniform(0.02, 0.06)
    if rng.random() < 0.6:
        a.add("base", cylinder((0, 0, 0), (0, bh, 0), rng.uniform(0.1, 0.18), segments=20))
    else:
        s = rng.uniform(0.15, 0.3)
        a.add("base", box((0, bh / 2, 0), (s, bh, s * rng.uniform(0.7, 1.0))))
    hp, rp = rng.uniform(0.3, 0.6), rng.uniform(0.008, 0.018)
    top = np.array([0.0, bh + hp, 0.0])
    a.add("tube", cylinder((0, bh / 2, 0), top, rp, segments=8))
    if rng.random() < 0.5:  # bent arm, starting just below the pole's end
        reach = rng.uniform(0.1, 0.25)
        end = top + np.array([reach, rng.uniform(-0.05, 0.1), 0.0])
        a.add("tube", cylinder(top - (0, rp, 0), end, rp, segments=8))
        top = end
    ch, cr = rng.uniform(0.02, 0.05), rng.uniform(0.015, 0.035)
    a.add("canopy", cylinder(top - (0, ch / 2, 0), top + (0, ch / 2, 0), cr, segments=10))
    sh = rng.uniform(0.1, 0.22)
    r_top, r_bottom = rng.uniform(0.04, 0.1), rng.uniform(0.11, 0.2)
    shade_top = top - (0, ch / 2 - 0.005, 0)
    a.add("shade", cylinder(shade_top - (0, sh, 0), shade_top, r_bottom, r_top, segments=20))
    return a.mesh()


def make_airplane(rng: np.random.Generator) -> PartMesh:
    """Fuselage (nose cone, barrel, tapered tail), swept wings, tail plane and fin, and zero, two or
    four engine nacelles under the wings."""
    a = _Assembly("Airplane")
    length, r = rng.uniform(1.5, 2.5), rng.uniform(0.07, 0.13)
    zf, zt = length / 2, -length / 2
    nose, tail = rng.uniform(0.1, 0.2) * length, rng.uniform(0.2, 0.3) * length
    ring_z = np.concatenate([zf - nose * (1 - np.cos(np.linspace(0, np.pi / 2, 5))), [zt + tail, zt]])
    ring_r = np.concatenate([r * np.sin(np.linspace(0, np.pi / 2, 5)), [r, r * rng.uniform(0.2, 0.4)]])
    ring_r[0] = 0.0
    a.add("body", tube(np.stack([np.zeros(7), np.zeros(7), ring_z], 1), ring_r, 16))
    span, root = rng.uniform(0.6, 1.1) * length / 2, rng.uniform(0.18, 0.3) * length
    tip = root * rng.uniform(0.25, 0.6)
    sweep, zw = rng.uniform(0.0, 0.5) * span, rng.uniform(-0.05, 0.12) * length
    yw = r * rng.choice([-0.6, 0.0, 0.6])
    wt = rng.uniform(0.015, 0.035)
    for side in (-1, 1):
        x0 = -side * r * 0.5  # root inside the fuselage, past its axis: the two wings share no vertex
        plan = np.array(
            [
                [x0, zw + root / 2],
                [side * span, zw + root / 2 - sweep],
                [side * span, zw + root / 2 - sweep - tip],
                [x0, zw - root / 2],
            ]
        )
        a.add("wing", slab(plan, wt, (0, yw, 0), (1, 0, 0), (0, 0, 1)))
    tspan, tchord = span * rng.uniform(0.25, 0.4), root * rng.uniform(0.4, 0.6)
    ztail = zt + tchord * 0.6
    for side in (-1, 1):
        x0 = -side * r * 0.2
        plan = np.array(
            [
                [x0, ztail + tchord / 2],
                [side * tspan, ztail],
                [side * tspan, ztail - tchord * 0.4],
                [x0, ztail - tchord / 2],
            ]
        )
        a.add("tail", slab(plan, wt * 0.8, (0, r * 0.3, 0), (1, 0, 0), (0, 0, 1)))
    fin_h = tspan * rng.uniform(0.8, 1.3)
    fin = np.array(
        [
            [0, ztail + tchord / 2],
            [fin_h, ztail - tchord * 0.1],
            [fin_h, ztail - tchord * 0.45],
            [0, ztail - tchord / 2],
        ]
    )
    a.add("tail", slab(fin, wt * 0.8, (0, r * 0.5, 0), (0, 1, 0), (0, 0, 1)))
    n_engines = rng.choice([0, 2, 2, 4])
    er, el = r * rng.uniform(0.35, 0.6), root * rng.uniform(0.5, 0.8)
    for k in range(n_engines // 2):
        frac = (k + 1) / (n_engines // 2 + 1)
        for side in (-1, 1):
            x = side * frac * span
            zc = zw + root / 2 - sweep * frac - root * 0.2
            y = yw - wt / 2 - er
            a.add("engine", cylinder((x, y, zc - el / 2), (x, y, zc + el / 2), er, er * 0.85, segments=12))
    return a.mesh()


def make_mug(rng: np.random.Generator) -> PartMesh:
    """A (closed) cylindrical or slightly conical body and a C-shaped handle swept along an arc."""
    a = _Assembly("Mug")
    r, h = rng.uniform(0.3, 0.45), rng.uniform(0.6, 1.0)
    a.add("body", cylinder((0, 0, 0), (0, h, 0), r * rng.uniform(0.8, 1.0), r, segments=24))
    rh, th = h * rng.uniform(0.18, 0.32), rng.uniform(0.03, 0.06)
    yc = h * rng.uniform(0.45, 0.6)
    path = arc((r - rh * 0.1, yc, 0), rh, -0.6 * np.pi, 0.6 * np.pi, plane=((1, 0, 0), (0, 1, 0)), steps=12)
    a.add("handle", tube(path, th, 10))
    return a.mesh()


def make_laptop(rng: np.random.Generator) -> PartMesh:
    """A keyboard block and a screen panel hinged at its back edge, opened 95-135 degrees."""
    a = _Assembly("Laptop")
    w, d, t = rng.uniform(0.6, 0.8), rng.uniform(0.4, 0.55), rng.uniform(0.015, 0.03)
    a.add("keyboard", box((0, t / 2, 0), (w, t, d)))
    ang = np.deg2rad(rng.uniform(95, 135))
    up = np.array([0.0, np.sin(ang), np.cos(ang)])  # from the hinge, tilted back
    hs = d * rng.uniform(0.9, 1.05)
    hinge = np.array([0.0, t, -d / 2])
    a.add("screen", box(hinge + up * hs / 2, (w, t * 0.7, hs), u=(1, 0, 0), v=up))
    return a.mesh()


def make_knife(rng: np.random.Generator) -> PartMesh:
    """A flat tapered blade and a box or round handle, along x."""
    a = _Assembly("Knife")
    bl, bw, ht = rng.uniform(0.5, 0.9), rng.uniform(0.06, 0.12), rng.uniform(0.01, 0.02)
    tip = rng.uniform(0.0, 0.4) * bw
    blade = np.array(
        [[0, -bw / 2], [bl * 0.8, -bw / 2], [bl, tip - bw / 2], [bl, tip - bw / 2 + 0.005], [0, bw / 2]]
    )
    a.add("blade", slab(blade, ht, (0, 0, 0), (1, 0, 0), (0, 1, 0)))
    hl = rng.uniform(0.25, 0.4)
    if rng.random() < 0.5:
        a.add("handle", box((-hl / 2, 0, 0), (hl, bw * 1.1, ht * 3), u=(1, 0, 0), v=(0, 0, 1)))
    else:
        a.add("handle", cylinder((-hl, 0, 0), (0, 0, 0), bw * 0.45, bw * 0.5, segments=12))
    return a.mesh()


def make_guitar(rng: np.random.Generator) -> PartMesh:
    """A body of two overlapping discs (lower and upper bout), a long neck and a head, along y."""
    a = _Assembly("Guitar")
    rl, t = rng.uniform(0.18, 0.25), rng.uniform(0.06, 0.1)
    ru = rl * rng.uniform(0.7, 0.9)
    a.add("body", cylinder((0, rl, -t / 2), (0, rl, t / 2), rl, segments=24))
    a.add("body", cylinder((0, 2 * rl + ru * 0.6, -t / 2), (0, 2 * rl + ru * 0.6, t / 2), ru, segments=24))
    nl, nw = rng.uniform(0.5, 0.7), rng.uniform(0.04, 0.06)
    y0 = 2 * rl + ru * 1.4
    a.add("neck", box((0, y0 + nl / 2, 0), (nw, nl, nw * 0.6), u=(1, 0, 0), v=(0, 1, 0)))
    hl = rng.uniform(0.12, 0.2)
    a.add("head", box((0, y0 + nl + hl / 2, 0), (nw * 1.6, hl, nw * 0.5), u=(1, 0, 0), v=(0, 1, 0)))
    return a.mesh()


def make_rocket(rng: np.random.Generator) -> PartMesh:
    """A cylindrical body, a cone nose and three or four fins at the bottom, along y."""
    a = _Assembly("Rocket")
    r, hb = rng.uniform(0.06, 0.12), rng.uniform(0.6, 1.0)
    a.add("body", cylinder((0, 0, 0), (0, hb, 0), r, segments=16))
    a.add("nose", cylinder((0, hb, 0), (0, hb + rng.uniform(0.15, 0.3), 0), r, 0.0, segments=16))
    fh, fw = rng.uniform(0.15, 0.3), rng.uniform(0.08, 0.18)
    n_fins = int(rng.choice([3, 4]))
    for k in range(n_fins):
        ang = 2 * np.pi * k / n_fins
        out = np.array([np.cos(ang), 0, np.sin(ang)])
        fin = np.array([[r * 0.8, 0], [r + fw, -0.03], [r + fw, fh * 0.4], [r * 0.8, fh]])
        a.add("fin", slab(fin, 0.015, (0, 0, 0), out, (0, 1, 0)))
    return a.mesh()


_MAKERS: dict[str, Callable[[np.random.Generator], PartMesh]] = {
    "Airplane": make_airplane,
    "Chair": make_chair,
    "Guitar": make_guitar,
    "Knife": make_knife,
    "Lamp": make_lamp,
    "Laptop": make_laptop,
    "Mug": make_mug,
    "Rocket": make_rocket,
    "Table": make_table,
}
# Every category the generator can draw, in ShapeNetPart order.
PROCEDURAL_CATEGORIES: tuple[str, ...] = tuple(n for n, _ in SHAPENETPART_CATEGORIES if n in _MAKERS)
# The built-in dataset's default: the five categories of the demo.
DEFAULT_CATEGORIES: tuple[str, ...] = ("Airplane", "Chair", "Lamp", "Mug", "Table")


def shape_rng(seed: int, split: str, category: str, index: int) -> np.random.Generator:
    """The generator of one shape: a function of ``(seed, split, category, index)`` only."""
    cat = [n for n, _ in SHAPENETPART_CATEGORIES].index(category)
    return np.random.default_rng(
        np.random.SeedSequence([GENERATOR_VERSION, int(seed), _SPLIT_CODES[split], cat, int(index)])
    )


def make_shape(category: str, rng: np.random.Generator) -> PartMesh:
    """One random shape of ``category`` (one of :data:`PROCEDURAL_CATEGORIES`)."""
    if category not in _MAKERS:
        raise ValueError(
            f"no procedural generator for '{category}'; choose from {', '.join(PROCEDURAL_CATEGORIES)}"
        )
    return _MAKERS[category](rng)


def procedural_shape(category: str, index: int, split: str = "train", seed: int = 0) -> PartMesh:
    """Shape ``index`` of ``category`` in ``split`` (deterministic)."""
    return make_shape(category, shape_rng(seed, split, category, index))


def procedural_split(
    categories: tuple[str, ...] | list[str], per_category: int, split: str = "train", seed: int = 0
) -> list[PartMesh]:
    """``per_category`` shapes of each category, category-major (all of the first category first)."""
    return [procedural_shape(c, i, split, seed) for c in categories for i in range(per_category)]
