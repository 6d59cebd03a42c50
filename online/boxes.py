"""Box geometry: vectorized IoU and validity. The samplers live in online/sampling.py.

All boxes are float arrays `[x, y, w, h]` (see online/sequence.py for the convention).
"""
from __future__ import annotations

import numpy as np


def iou(boxes: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """IoU of each row of `boxes` (N,4) with `ref` (4,) or row-wise with `ref` (N,4)."""
    a = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(ref, dtype=np.float64)
    b = b.reshape(-1, 4)
    x1 = np.maximum(a[:, 0], b[:, 0])
    y1 = np.maximum(a[:, 1], b[:, 1])
    x2 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    y2 = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(union > 0, inter / union, 0.0)
    return out


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,M) IoU between every row of `a` and every row of `b`."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(1, -1, 4)
    x1 = np.maximum(a[..., 0], b[..., 0])
    y1 = np.maximum(a[..., 1], b[..., 1])
    x2 = np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2])
    y2 = np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def valid_box(box, image_size=None) -> bool:
    """Finite, positive size, and (when image_size=(W,H) is given) overlapping the image."""
    b = np.asarray(box, dtype=np.float64)
    if b.shape != (4,) or not np.all(np.isfinite(b)) or b[2] <= 0 or b[3] <= 0:
        return False
    if image_size is not None:
        w, h = image_size
        if b[0] >= w or b[1] >= h or b[0] + b[2] <= 0 or b[1] + b[3] <= 0:
            return False
    return True


# ----------------------------------------------------------------------------------------------
# Polygons: the VOT toolkit's region overlap (rotated ground truth, both regions clipped to the image)

def box_polygon(box) -> np.ndarray:
    """The 4 corners (4, 2) of an x, y, w, h box, clockwise in image coordinates from top-left."""
    x, y, w, h = np.asarray(box, dtype=np.float64).reshape(4)
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]])


def as_polygon(region) -> np.ndarray:
    """(N, 2) corners from an x,y,w,h box (4 values), a flat x1,y1,...,xN,yN list (2N >= 6 values)
    or an (N, 2) array."""
    r = np.asarray(region, dtype=np.float64)
    if r.size == 4:
        return box_polygon(r)
    if r.size < 6 or r.size % 2:
        raise ValueError(f"a region is 4 numbers x,y,w,h or at least 3 corners x1,y1,x2,y2,..., got {r.size} values")
    return r.reshape(-1, 2)


def _signed_area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def polygon_area(poly) -> float:
    """Area of a simple polygon (N, 2) by the shoelace formula; 0 for fewer than 3 corners."""
    p = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
    return abs(_signed_area(p)) if len(p) >= 3 else 0.0


def clip_polygon(subject, clip) -> np.ndarray:
    """The part of polygon `subject` (N, 2) inside the CONVEX polygon `clip` (M, 2), either
    orientation (Sutherland-Hodgman, float64). A concave subject is allowed: the result may then
    hold zero-width edges along the clip boundary, which add no area. (0, 2) when nothing is left."""
    out = [tuple(v) for v in np.asarray(subject, dtype=np.float64).reshape(-1, 2)]
    c = np.asarray(clip, dtype=np.float64).reshape(-1, 2)
    orient = np.sign(_signed_area(c)) if len(c) >= 3 else 0.0
    if len(out) < 3 or orient == 0.0 or not np.isfinite(c).all():
        return np.zeros((0, 2))
    for k in range(len(c)):
        (ax, ay), (bx, by) = c[k], c[(k + 1) % len(c)]
        src, out = out, []
        if not src:
            break

        def side(p):  # > 0: inside the half-plane left of a->b (for the clip's orientation)
            return orient * ((bx - ax) * (p[1] - ay) - (by - ay) * (p[0] - ax))
        s = src[-1]
        ds = side(s)
        for e in src:
            de = side(e)
            if (de >= 0) != (ds >= 0):  # the edge s->e crosses the clip line
                t = ds / (ds - de)
                out.append((s[0] + t * (e[0] - s[0]), s[1] + t * (e[1] - s[1])))
            if de >= 0:
                out.append(e)
            s, ds = e, de
    return np.asarray(out, dtype=np.float64).reshape(-1, 2)


def region_overlap(a, b, bounds=None) -> float:
    """Intersection over union of two regions, as the VOT toolkit's region overlap: `a` any simple
    polygon (the ground truth; 4 or 2N values, or (N, 2)), `b` a convex one (the prediction; a box
    or a polygon). With `bounds` = (W, H) both are first clipped to the image [0, W] x [0, H] (the
    toolkit's pixels 0..W-1 x 0..H-1), so parts outside the image count for neither. A non-finite
    region, or an empty union, overlaps nothing: 0.

    The toolkit rasterises both regions to pixel masks; this computes the same quantity on the
    continuous polygons (no rounding to pixels), so the two differ by sub-pixel amounts."""
    pa, pb = as_polygon(a), as_polygon(b)
    if not (np.isfinite(pa).all() and np.isfinite(pb).all()):
        return 0.0
    if bounds is not None:
        w, h = float(bounds[0]), float(bounds[1])
        image = np.array([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]])
        pa, pb = clip_polygon(pa, image), clip_polygon(pb, image)
    area_a, area_b = polygon_area(pa), polygon_area(pb)
    inter = polygon_area(clip_polygon(pa, pb)) if area_a > 0 and area_b > 0 else 0.0
    union = area_a + area_b - inter
    return float(min(max(inter / union, 0.0), 1.0)) if union > 0 else 0.0
