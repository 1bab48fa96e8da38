"""The demo tier's stimulus world: procedural scenes with known content, their images, labels and captions.

Every scene is a :class:`Scene` record (background and a few objects with category, position, size and colour),
drawn deterministically from ``(seed, index)``: scene 17 of seed 0 is the same whether 20 or 20000 scenes are
made. From one record come the image (any size, drawn with PIL at twice the size and box-filtered), a per-pixel
category label map (for the simulated brain's category-selective voxels), the scene's content labels (the
world's own ground truth, for ROI category hit rates) and five COCO-like captions written from the content.

Categories follow the NSD floc localisers: ``faces``, ``bodies``, ``places``, ``words``, plus ``objects``.
Image coordinates are fractions of the image side: ``x`` left to right, ``y`` top to bottom, in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "CATEGORIES",
    "check_image_size",
    "KINDS",
    "SceneObject",
    "Scene",
    "make_scene",
    "make_scenes",
    "render_scene",
    "render_scenes",
    "scene_captions",
    "content_labels",
]

CATEGORIES = ("faces", "bodies", "places", "words", "objects")
# Object kind -> category.
KINDS = {
    "face": "faces",
    "body": "bodies",
    "building": "places",
    "sign": "words",
    "ball": "objects",
    "cup": "objects",
    "tree": "objects",
    "car": "objects",
}
COLORS = {
    "red": (200, 40, 40),
    "green": (40, 150, 60),
    "blue": (40, 70, 200),
    "yellow": (230, 200, 40),
    "orange": (235, 130, 30),
    "purple": (130, 50, 160),
    "pink": (230, 120, 170),
    "brown": (120, 75, 40),
    "white": (240, 240, 240),
    "black": (25, 25, 25),
    "grey": (128, 128, 128),
}
SKIN = ((241, 194, 160), (224, 172, 130), (198, 134, 94), (141, 85, 54), (92, 56, 38))
WORDS = ("STOP", "OPEN", "CAFE", "EXIT", "SALE", "BOOK", "TAXI", "HOTEL", "BUS", "PARK", "MILK", "NEWS")
BACKGROUNDS = ("field", "street", "room", "beach", "plain")
# Size range (fraction of the image side) per kind: buildings are large, balls and cups small.
_SIZE_RANGE = {
    "face": (0.22, 0.5),
    "body": (0.3, 0.6),
    "building": (0.4, 0.75),
    "sign": (0.25, 0.5),
    "ball": (0.12, 0.28),
    "cup": (0.15, 0.3),
    "tree": (0.3, 0.6),
    "car": (0.3, 0.5),
}
_BACKGROUND_WORDS = {
    "field": ("in a grassy field", "on green grass under a blue sky", "outdoors in a field"),
    "street": ("on a city street", "next to a grey road", "on a street"),
    "room": ("in a room", "inside a room with a wooden floor", "indoors against a wall"),
    "beach": ("on a sandy beach", "by the sea", "on the beach under the sky"),
    "plain": ("on a plain background", "against a flat coloured background", "on a simple backdrop"),
}
_NOUNS = {
    "face": ("face", "human face", "smiling face"),
    "body": ("person", "standing figure", "person standing"),
    "building": ("building", "house", "building with windows"),
    "sign": ("sign", "sign with writing", "word sign"),
    "ball": ("ball", "round ball", "ball"),
    "cup": ("cup", "mug", "cup"),
    "tree": ("tree", "leafy tree", "tree"),
    "car": ("car", "small car", "car"),
}


@dataclass(frozen=True)
class SceneObject:
    """One object in a scene.

    Attributes
    ----------
    kind : str
        One of :data:`KINDS` (``face``, ``body``, ``building``, ``sign``, ``ball``, ``cup``, ``tree``, ``car``).
    x, y : float
        Centre, fractions of the image width/height in [0, 1] (y downwards).
    size : float
        Height (and roughly width) as a fraction of the image side.
    color : str
        Key of the colour palette (the object's main colour, named in captions).
    text : str
        The written word (signs only; empty otherwise).
    """

    kind: str
    x: float
    y: float
    size: float
    color: str
    text: str = ""

    @property
    def category(self) -> str:
        """The object's category, one of :data:`CATEGORIES`."""
        return KINDS[self.kind]


@dataclass(frozen=True)
class Scene:
    """The content of one stimulus: background and objects, drawn in order (later objects occlude earlier).

    Attributes
    ----------
    seed, index : int
        The scene is a pure function of these two numbers (see :func:`make_scene`).
    background : str
        One of ``field``, ``street``, ``room``, ``beach``, ``plain``.
    background_color : str
        Palette key of the backdrop's main colour (used by ``plain`` and ``room``).
    objects : tuple of SceneObject
    """

    seed: int
    index: int
    background: str
    background_color: str
    objects: tuple[SceneObject, ...]

    @property
    def categories(self) -> frozenset[str]:
        """Categories present in the scene."""
        return frozenset(o.category for o in self.objects)


def make_scene(seed: int, index: int) -> Scene:
    """Draw scene ``index`` of the world ``seed``.

    Parameters
    ----------
    seed : int
        World seed.
    index : int
        Scene number (>= 0); scenes are independent of how many are drawn.

    Returns
    -------
    Scene
    """
    if index < 0:
        raise ValueError(f"index: expected a non-negative scene number, got {index}.")
    rng = np.random.default_rng([int(seed), int(index), 0x5C3E])
    background = str(rng.choice(BACKGROUNDS))
    background_color = str(rng.choice(["white", "grey", "yellow", "blue", "pink", "green", "orange"]))
    n_objects = int(rng.choice([1, 2, 2, 3, 3, 4]))
    kinds = list(KINDS)
    # Category-balanced: pick a category first, then a kind within it.
    objects = []
    for _ in range(n_objects):
        category = str(rng.choice(CATEGORIES))
        kind = str(rng.choice([k for k in kinds if KINDS[k] == category]))
        lo, hi = _SIZE_RANGE[kind]
        size = float(rng.uniform(lo, hi))
        half = size / 2
        # A few tries for a place that does not bury an earlier object (the last try is kept regardless).
        for _ in range(8):
            x = float(rng.uniform(half * 0.7, 1 - half * 0.7))
            y = float(rng.uniform(half * 0.8, 1 - half * 0.8))
            if all(np.hypot(x - o.x, y - o.y) > 0.45 * (size + o.size) for o in objects):
                break
        color = str(rng.choice([c for c in COLORS if c != background_color]))
        text = str(rng.choice(WORDS)) if kind == "sign" else ""
        objects.append(SceneObject(kind, x, y, size, color, text))
    # Draw large things first so small ones stay visible.
    objects.sort(key=lambda o: -o.size)
    return Scene(int(seed), int(index), background, background_color, tuple(objects))


def make_scenes(n: int, seed: int = 0, start: int = 0) -> list[Scene]:
    """Scenes ``start .. start + n - 1`` of the world ``seed``."""
    if n < 0:
        raise ValueError(f"n: expected a non-negative number of scenes, got {n}.")
    return [make_scene(seed, start + i) for i in range(n)]


# -- drawing --------------------------------------------------------------------------------------------------

@lru_cache(maxsize=64)
def _font(px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=max(px, 4))


def _draw_background(draw: ImageDraw.ImageDraw, scene: Scene, s: int) -> None:
    bg = scene.background
    if bg == "field":
        draw.rectangle([0, 0, s, s], fill=(135, 190, 235))
        draw.rectangle([0, int(0.55 * s), s, s], fill=(70, 150, 60))
    elif bg == "street":
        draw.rectangle([0, 0, s, s], fill=(170, 200, 225))
        draw.rectangle([0, int(0.6 * s), s, s], fill=(90, 90, 95))
        draw.rectangle([0, int(0.78 * s), s, int(0.8 * s)], fill=(230, 230, 230))
    elif bg == "room":
        draw.rectangle([0, 0, s, s], fill=_shade(COLORS[scene.background_color], 0.85))
        draw.rectangle([0, int(0.7 * s), s, s], fill=(150, 100, 60))
    elif bg == "beach":
        draw.rectangle([0, 0, s, s], fill=(120, 180, 240))
        draw.rectangle([0, int(0.45 * s), s, int(0.62 * s)], fill=(30, 90, 170))
        draw.rectangle([0, int(0.62 * s), s, s], fill=(225, 205, 150))
    else:
        draw.rectangle([0, 0, s, s], fill=COLORS[scene.background_color])


def _shade(rgb: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, c * factor))) for c in rgb)


def _draw_object(draw: ImageDraw.ImageDraw, obj: SceneObject, s: int, skin: tuple[int, int, int]) -> None:
    """Draw ``obj`` on a canvas of side ``s`` pixels with ``draw`` (RGB or a one-value label fill)."""
    cx, cy, h = obj.x * s, obj.y * s, obj.size * s
    col = COLORS[obj.color]
    dark = (20, 20, 20)
    if obj.kind == "face":
        w = 0.8 * h
        draw.ellipse([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], fill=skin, outline=dark, width=max(1, s // 128))
        draw.chord([cx - w / 2, cy - h / 2, cx + w / 2, cy - h * 0.05], 180, 360, fill=col)  # hair
        e = max(1.0, 0.07 * h)
        for dx in (-0.18 * w, 0.18 * w):
            draw.ellipse([cx + dx - e, cy - 0.02 * h - e, cx + dx + e, cy - 0.02 * h + e], fill=dark)
        draw.line([cx, cy + 0.02 * h, cx - 0.04 * w, cy + 0.15 * h], fill=_shade(skin, 0.7), width=max(1, s // 128))
        draw.arc([cx - 0.2 * w, cy + 0.08 * h, cx + 0.2 * w, cy + 0.3 * h], 20, 160, fill=(150, 30, 40),
                 width=max(1, s // 64))
    elif obj.kind == "body":
        r = 0.11 * h
        top = cy - h / 2
        lw = max(2, int(0.07 * h))
        draw.ellipse([cx - r, top, cx + r, top + 2 * r], fill=skin)
        draw.rectangle([cx - 0.15 * h, top + 2.1 * r, cx + 0.15 * h, cy + 0.12 * h], fill=col)  # torso
        draw.line([cx - 0.15 * h, top + 2.4 * r, cx - 0.3 * h, cy + 0.05 * h], fill=col, width=lw)  # arms
        draw.line([cx + 0.15 * h, top + 2.4 * r, cx + 0.3 * h, cy + 0.05 * h], fill=col, width=lw)
        draw.line([cx - 0.08 * h, cy + 0.12 * h, cx - 0.13 * h, cy + h / 2], fill=(40, 40, 90), width=lw)  # legs
        draw.line([cx + 0.08 * h, cy + 0.12 * h, cx + 0.13 * h, cy + h / 2], fill=(40, 40, 90), width=lw)
    elif obj.kind == "building":
        w = 0.75 * h
        left, right, top, bottom = cx - w / 2, cx + w / 2, cy - 0.2 * h, cy + h / 2
        draw.rectangle([left, top, right, bottom], fill=col, outline=dark)
        draw.polygon([(left - 0.05 * w, top), (right + 0.05 * w, top), (cx, cy - h / 2)], fill=(150, 50, 40))
        for row in range(3):
            for column in range(3):
                wx = left + (0.12 + 0.3 * column) * w
                wy = top + (0.08 + 0.22 * row) * (bottom - top)
                draw.rectangle([wx, wy, wx + 0.16 * w, wy + 0.13 * (bottom - top)], fill=(250, 240, 170))
        draw.rectangle([cx - 0.08 * w, bottom - 0.18 * h, cx + 0.08 * w, bottom], fill=(80, 50, 30))
    elif obj.kind == "sign":
        w = 1.0 * h
        hh = 0.5 * h
        draw.rectangle([cx - w / 2, cy - hh / 2, cx + w / 2, cy + hh / 2], fill=(245, 245, 245), outline=col,
                       width=max(1, int(0.06 * h)))
        font = _font(int(0.32 * h * (4 / max(len(obj.text), 4))))
        draw.text((cx, cy), obj.text, fill=dark if obj.color in ("white", "yellow") else col, font=font,
                  anchor="mm")
    elif obj.kind == "ball":
        r = h / 2
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=col, outline=dark)
        draw.arc([cx - r, cy - 0.4 * r, cx + r, cy + 0.4 * r], 0, 180, fill=(250, 250, 250), width=max(1, s // 64))
    elif obj.kind == "cup":
        w = 0.7 * h
        draw.polygon([(cx - w / 2, cy - h / 2), (cx + w / 2, cy - h / 2), (cx + 0.35 * w, cy + h / 2),
                      (cx - 0.35 * w, cy + h / 2)], fill=col, outline=dark)
        draw.arc([cx + 0.3 * w, cy - 0.3 * h, cx + 0.8 * w, cy + 0.2 * h], 270, 90, fill=col,
                 width=max(2, int(0.08 * h)))
    elif obj.kind == "tree":
        draw.rectangle([cx - 0.07 * h, cy, cx + 0.07 * h, cy + h / 2], fill=(100, 65, 35))
        draw.ellipse([cx - 0.35 * h, cy - h / 2, cx + 0.35 * h, cy + 0.15 * h], fill=_shade(COLORS["green"], 0.9))
    elif obj.kind == "car":
        w = 1.3 * h
        body_top, body_bottom = cy - 0.1 * h, cy + 0.25 * h
        draw.rectangle([cx - w / 2, body_top, cx + w / 2, body_bottom], fill=col, outline=dark)
        draw.polygon([(cx - 0.3 * w, body_top), (cx - 0.18 * w, cy - 0.4 * h), (cx + 0.2 * w, cy - 0.4 * h),
                      (cx + 0.32 * w, body_top)], fill=col, outline=dark)
        draw.rectangle([cx - 0.16 * w, cy - 0.33 * h, cx + 0.16 * w, body_top - 0.03 * h], fill=(190, 220, 240))
        r = 0.15 * h
        for wx in (cx - 0.3 * w, cx + 0.3 * w):
            draw.ellipse([wx - r, body_bottom - r, wx + r, body_bottom + r], fill=dark)


def _skin(scene: Scene, k: int) -> tuple[int, int, int]:
    return SKIN[(scene.index * 7 + k * 3 + scene.seed) % len(SKIN)]


def check_image_size(size: int, name: str = "size") -> None:
    """ValueError unless ``size`` is a rendered scene's possible side: at least 8 pixels."""
    if int(size) < 8:
        raise ValueError(f"{name}: expected an image side of at least 8 pixels, got {size}.")


def render_scene(scene: Scene, size: int = 64, labels: bool = False):
    """Draw one scene.

    Parameters
    ----------
    scene : Scene
    size : int, default 64
        Side of the square image in pixels (drawn at twice the size, then box-filtered).
    labels : bool, default False
        Also return the category label map.

    Returns
    -------
    image : ndarray of uint8, shape (size, size, 3)
    label_map : ndarray of uint8, shape (size, size)
        Returned only when ``labels``: 0 background, ``1 + CATEGORIES.index(category)`` where an object is
        visible (later objects overwrite earlier ones, like in the image).
    """
    if not isinstance(scene, Scene):
        raise TypeError(f"scene: expected a Scene (see make_scene), got {type(scene).__name__}.")
    check_image_size(size)
    s = 2 * int(size)
    canvas = Image.new("RGB", (s, s))
    draw = ImageDraw.Draw(canvas)
    _draw_background(draw, scene, s)
    label_img = Image.new("L", (s, s), 0) if labels else None
    label_draw = _LabelDraw(ImageDraw.Draw(label_img)) if labels else None
    for k, obj in enumerate(scene.objects):
        _draw_object(draw, obj, s, _skin(scene, k))
        if label_draw is not None:
            label_draw.value = 1 + CATEGORIES.index(obj.category)
            _draw_object(label_draw, obj, s, _skin(scene, k))
    image = np.asarray(canvas.reduce(2), dtype=np.uint8)
    if not labels:
        return image
    return image, np.asarray(label_img.resize((int(size), int(size)), Image.NEAREST), dtype=np.uint8)


class _LabelDraw:
    """Proxy of ImageDraw that paints every shape with one label value (for the label map)."""

    def __init__(self, draw: ImageDraw.ImageDraw) -> None:
        self._draw = draw
        self.value = 0

    def __getattr__(self, name: str):
        method = getattr(self._draw, name)

        def painted(*args, **kwargs):
            for key in ("fill", "outline"):
                if kwargs.get(key) is not None:
                    kwargs[key] = self.value
            if name == "text":
                # Words: label the text's bounding box, not just the strokes.
                font, anchor = kwargs.get("font"), kwargs.get("anchor")
                box = self._draw.textbbox(args[0], args[1], font=font, anchor=anchor)
                return self._draw.rectangle(box, fill=self.value)
            return method(*args, **kwargs)

        return painted


def render_scenes(n: int, seed: int = 0, size: int = 64, start: int = 0, labels: bool = False):
    """Make and draw scenes ``start .. start + n - 1`` of the world ``seed``.

    Parameters
    ----------
    n : int
        Number of scenes.
    seed : int, default 0
        World seed.
    size : int, default 64
        Image side in pixels.
    start : int, default 0
        Index of the first scene.
    labels : bool, default False
        Also return the category label maps.

    Returns
    -------
    images : ndarray of uint8, shape (n_images, size, size, 3)
    scenes : list of Scene
    captions : list of list of str
        Five captions per scene.
    label_maps : ndarray of uint8, shape (n_images, size, size)
        Only when ``labels`` (see :func:`render_scene`).
    """
    scenes = make_scenes(n, seed, start)
    images = np.zeros((len(scenes), int(size), int(size), 3), np.uint8)
    maps = np.zeros((len(scenes), int(size), int(size)), np.uint8) if labels else None
    for i, scene in enumerate(scenes):
        if labels:
            images[i], maps[i] = render_scene(scene, size, labels=True)
        else:
            images[i] = render_scene(scene, size)
    captions = [scene_captions(scene) for scene in scenes]
    if labels:
        return images, scenes, captions, maps
    return images, scenes, captions


# -- content --------------------------------------------------------------------------------------------------

def content_labels(scenes: Scene | list[Scene]) -> np.ndarray:
    """The world's own content labels: which categories each scene holds.

    Parameters
    ----------
    scenes : Scene or list of Scene

    Returns
    -------
    ndarray of bool, shape (n_images, len(CATEGORIES))
        Column order of :data:`CATEGORIES`.
    """
    if isinstance(scenes, Scene):
        scenes = [scenes]
    out = np.zeros((len(scenes), len(CATEGORIES)), bool)
    for i, scene in enumerate(scenes):
        if not isinstance(scene, Scene):
            raise TypeError(f"scenes[{i}]: expected a Scene, got {type(scene).__name__}.")
        for category in scene.categories:
            out[i, CATEGORIES.index(category)] = True
    return out


def _where(obj: SceneObject) -> str:
    horizontal = "on the left" if obj.x < 0.36 else "on the right" if obj.x > 0.64 else "in the middle"
    if obj.y < 0.33 and horizontal == "in the middle":
        return "at the top"
    if obj.y > 0.67 and horizontal == "in the middle":
        return "at the bottom"
    return horizontal


def _phrase(obj: SceneObject, variant: int, with_color: bool) -> str:
    noun = _NOUNS[obj.kind][variant % 3]
    if obj.kind == "sign":
        return f"a sign that says {obj.text.lower()}" if variant % 2 == 0 else f"a {obj.color} {noun}"
    if obj.kind == "face":
        adjective = f"{obj.color}-haired " if with_color else ""
    elif obj.kind == "body":
        adjective = f"{obj.color}-shirted " if with_color else ""
    elif obj.kind == "tree":
        adjective = ""
    else:
        adjective = f"{obj.color} " if with_color else ""
    article = "an" if (adjective or noun)[0] in "aeio" else "a"
    return f"{article} {adjective}{noun}"


def _join(parts: list[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def scene_captions(scene: Scene) -> list[str]:
    """Five COCO-like captions written from the scene's content.

    Every caption names each object's kind (and, in most, its colour or position) and the setting.

    Parameters
    ----------
    scene : Scene

    Returns
    -------
    list of str
        Five captions.
    """
    objs = scene.objects
    bg = _BACKGROUND_WORDS[scene.background]
    main = objs[-1] if objs else None
    captions = [
        f"{_join([_phrase(o, 0, True) for o in objs])} {bg[0]}.",
        f"A picture of {_join([_phrase(o, 1, False) + ' ' + _where(o) for o in objs])}.",
        f"{_join([_phrase(o, 2, True) for o in reversed(objs)])} {bg[1]}.",
        f"There is {_phrase(main, 0, True)} {_where(main)}"
        + (f" with {_join([_phrase(o, 1, False) for o in objs[:-1]])}" if len(objs) > 1 else "") + f" {bg[2]}.",
        f"A scene {bg[0]} showing {_join([_phrase(o, 1, True) for o in objs])}.",
    ]
    return [c[0].upper() + c[1:] for c in captions]
