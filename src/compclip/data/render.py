"""Draw a shapes-world scene as a small RGB image (PIL only, no randomness: the scene fixes the pixels)."""

from __future__ import annotations

import math

from PIL import Image, ImageDraw

from compclip.data.world import Scene, SceneObject
from compclip.errors import UserError

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (255, 140, 0),
    "yellow": (240, 225, 40),
    "lime": (150, 240, 60),
    "green": (20, 140, 40),
    "cyan": (40, 215, 225),
    "blue": (40, 70, 235),
    "purple": (135, 45, 200),
    "pink": (255, 135, 195),
    "brown": (130, 80, 30),
    "white": (250, 250, 250),
    "gray": (140, 140, 140),
}
BACKGROUND = (45, 45, 55)
SIZE_FRACTION = {"small": 0.32, "large": 0.46}  # object radius as a fraction of a grid cell
SHAPES = ("square", "circle", "triangle", "diamond", "star", "cross", "heart", "arrow")


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "square":
        r *= 0.85
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "triangle":
        return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r * 0.75, cy), (cx, cy + r), (cx - r * 0.75, cy)]
    if shape == "star":
        pts = []
        for k in range(10):
            a = -math.pi / 2 + k * math.pi / 5
            rr = r if k % 2 == 0 else r * 0.45
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        return pts
    if shape == "cross":
        t = r * 0.38
        return [(cx - t, cy - r), (cx + t, cy - r), (cx + t, cy - t), (cx + r, cy - t), (cx + r, cy + t),
                (cx + t, cy + t), (cx + t, cy + r), (cx - t, cy + r), (cx - t, cy + t), (cx - r, cy + t),
                (cx - r, cy - t), (cx - t, cy - t)]
    if shape == "heart":
        pts = []
        for k in range(24):
            t = 2 * math.pi * k / 24
            x = 16 * math.sin(t) ** 3
            y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
            pts.append((cx + r * x / 17, cy - r * (y + 2) / 17))
        return pts
    if shape == "arrow":
        t = r * 0.3
        return [(cx, cy - r), (cx + r * 0.8, cy - r * 0.1), (cx + t, cy - r * 0.1), (cx + t, cy + r),
                (cx - t, cy + r), (cx - t, cy - r * 0.1), (cx - r * 0.8, cy - r * 0.1)]
    raise UserError(f"unknown shape {shape!r}; known: {SHAPES}")


def object_box(obj: SceneObject, image_size: int, grid: int) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the object's bounding box in pixels, as COCO and Visual Genome store boxes."""
    cell = image_size / grid
    r = cell * SIZE_FRACTION[obj.size]
    cx, cy = (obj.col + 0.5) * cell, (obj.row + 0.5) * cell
    x0, y0 = max(0, math.floor(cx - r)), max(0, math.floor(cy - r))
    x1, y1 = min(image_size, math.ceil(cx + r)), min(image_size, math.ceil(cy + r))
    return x0, y0, x1 - x0, y1 - y0


def _draw_object(draw: ImageDraw.ImageDraw, mask_draw: ImageDraw.ImageDraw, obj: SceneObject,
                 image_size: int, grid: int) -> None:
    cell = image_size / grid
    r = cell * SIZE_FRACTION[obj.size]
    cx, cy = (obj.col + 0.5) * cell, (obj.row + 0.5) * cell
    color = COLORS[obj.color]
    outline_width = max(1, round(r / 3.5))
    if obj.shape == "circle":
        box = (cx - r, cy - r, cx + r, cy + r)
        fill = None if obj.pattern == "hollow" else color
        draw.ellipse(box, fill=fill, outline=color, width=outline_width)
        mask_draw.ellipse(box, fill=255)
    else:
        pts = _polygon(obj.shape, cx, cy, r)
        if obj.pattern == "hollow":
            draw.line(pts + [pts[0]], fill=color, width=outline_width, joint="curve")
        else:
            draw.polygon(pts, fill=color)
        mask_draw.polygon(pts, fill=255)


def render_scene(scene: Scene, image_size: int, grid: int) -> Image.Image:
    img = Image.new("RGB", (image_size, image_size), BACKGROUND)
    for obj in scene.objects:
        layer = Image.new("RGB", img.size, BACKGROUND)
        mask = Image.new("L", img.size, 0)
        _draw_object(ImageDraw.Draw(layer), ImageDraw.Draw(mask), obj, image_size, grid)
        if obj.pattern == "striped":
            # Background-coloured diagonal stripes across the filled shape.
            stripes = ImageDraw.Draw(layer)
            step = max(3, image_size // 16)
            for k in range(-image_size, 2 * image_size, step):
                stripes.line([(k, 0), (k + image_size, image_size)], fill=BACKGROUND, width=max(1, step // 3))
        if obj.pattern == "hollow":
            mask = Image.eval(layer.convert("L"), lambda v: 255 if v > 60 else 0)
        img.paste(layer, (0, 0), mask)
    return img
