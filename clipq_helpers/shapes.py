"""The shapes world: procedural images of coloured shapes with Chinese captions.

Everything is generated deterministically from integer seeds, so the course needs no
download. A scene is one object (colour, size, shape, position) or two objects and a
spatial relation. Images are ``uint8`` arrays of shape ``(H, W, 3)``.

Splits (see :func:`make_split`):

* ``train``: an endless stream of scenes whose colour-shape pairs are *seen*;
* ``calibration``: 512 training-distribution scenes for quantization calibration;
* ``eval``: the hard retrieval benchmark (single and two-object scenes, near-duplicate
  captions);
* ``zeroshot``: single-object scenes of the *held-out* colour-shape compositions,
  never shown in training;
* ``seen``: single-object scenes of the seen compositions (the same test on known pairs).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

# name, RGB.  Saturated colours; backgrounds are desaturated so objects stay visible.
COLORS: dict[str, tuple[int, int, int]] = {
    "红色": (220, 40, 40),
    "橙色": (245, 140, 20),
    "黄色": (235, 215, 40),
    "绿色": (40, 165, 60),
    "青色": (30, 200, 210),
    "蓝色": (40, 80, 225),
    "紫色": (145, 55, 205),
    "粉色": (250, 135, 195),
}
SHAPES: tuple[str, ...] = ("圆形", "正方形", "三角形", "菱形", "星形", "十字形", "六边形", "圆环")
SIZES: dict[str, float] = {"大": 13.0, "小": 8.0}
# position name -> (column, row) on a 3x3 grid
POSITIONS: dict[str, tuple[int, int]] = {
    "左上角": (0, 0),
    "上方": (1, 0),
    "右上角": (2, 0),
    "左边": (0, 1),
    "中间": (1, 1),
    "右边": (2, 1),
    "左下角": (0, 2),
    "下方": (1, 2),
    "右下角": (2, 2),
}
RELATIONS: tuple[str, ...] = ("左边", "右边", "上方", "下方")
COLOR_NAMES = tuple(COLORS)
SIZE_NAMES = tuple(SIZES)
POSITION_NAMES = tuple(POSITIONS)

#: Colour-shape pairs never seen in training ("diagonal" hold-out: one per colour).
HELD_OUT: frozenset[tuple[str, str]] = frozenset(
    (c, SHAPES[(3 * i + 2) % len(SHAPES)]) for i, c in enumerate(COLOR_NAMES)
)

IMAGE_SIZE = 64
_SPLIT_SEEDS = {"train": 1, "calibration": 2, "eval": 3, "zeroshot": 4, "seen": 5}
_SUPERSAMPLE = 2


@dataclass(frozen=True)
class Obj:
    """One object: colour name, shape name, size name and centre in pixels."""

    color: str
    shape: str
    size: str
    cx: float
    cy: float


@dataclass(frozen=True)
class Scene:
    """A scene: one or two objects; ``relation`` says where objects[0] is relative to objects[1]."""

    objects: tuple[Obj, ...]
    position: str | None = None  # single-object scenes: grid position name
    relation: str | None = None  # two-object scenes: one of RELATIONS
    bg_seed: int = 0


# ----------------------------------------------------------------------------- captions

_SINGLE_TEMPLATES = (
    "一个{c}的{s}{h}在{p}",
    "{p}有一个{c}的{s}{h}",
    "{s}{c}{h}位于{p}",
    "图中{p}是一个{s}的{c}{h}",
    "一个{s}的{c}{h}，在图片的{p}",
)
_PAIR_TEMPLATES = (
    "{c1}{h1}在{c2}{h2}的{r}",
    "{c2}{h2}的{r}有一个{c1}{h1}",
    "一个{c1}的{h1}在一个{c2}的{h2}的{r}",
)


def caption(scene: Scene, style: int = 0) -> str:
    """Chinese caption of ``scene`` in phrasing ``style`` (any int; taken modulo the template count)."""
    if scene.relation is None:
        o = scene.objects[0]
        t = _SINGLE_TEMPLATES[style % len(_SINGLE_TEMPLATES)]
        return t.format(c=o.color, s=o.size, h=o.shape, p=scene.position)
    a, b = scene.objects
    t = _PAIR_TEMPLATES[style % len(_PAIR_TEMPLATES)]
    return t.format(c1=a.color, h1=a.shape, c2=b.color, h2=b.shape, r=scene.relation)


def describe(color: str, shape: str, size: str, position: str, style: int = 0) -> str:
    """Caption of a single-object scene given by its attributes (phrasing ``style``)."""
    t = _SINGLE_TEMPLATES[style % len(_SINGLE_TEMPLATES)]
    return t.format(c=color, s=size, h=shape, p=position)


def prompt(color: str, shape: str, template: str = "一张{}的图片") -> str:
    """Zero-shot class prompt, e.g. ``prompt("红色", "圆形") == "一张红色圆形的图片"``."""
    return template.format(color + shape)


def all_characters() -> list[str]:
    """Every character any caption or prompt of this module can contain (sorted)."""
    words = [*COLORS, *SHAPES, *SIZES, *POSITIONS, *RELATIONS]
    texts = (
        words
        + list(_SINGLE_TEMPLATES)
        + list(_PAIR_TEMPLATES)
        + ["一张{}的图片", "一幅{}的画", "这是一个{}"]
    )
    chars = {ch for t in texts for ch in t if ch not in "{}" and not ch.isascii()}
    return sorted(chars)


# ----------------------------------------------------------------------------- sampling

_CELL = IMAGE_SIZE / 3


def _single(rng: np.random.Generator, color: str, shape: str, size: str, position: str) -> Scene:
    col, row = POSITIONS[position]
    jitter = rng.uniform(-3.0, 3.0, size=2)
    r = SIZES[size] + 1.0  # keep the whole object inside the image
    cx = float(np.clip((col + 0.5) * _CELL + jitter[0], r, IMAGE_SIZE - r))
    cy = float(np.clip((row + 0.5) * _CELL + jitter[1], r, IMAGE_SIZE - r))
    return Scene(
        (Obj(color, shape, size, cx, cy),), position=position, bg_seed=int(rng.integers(2**31))
    )


def _pair(rng: np.random.Generator, a: tuple[str, str], b: tuple[str, str], relation: str) -> Scene:
    """Objects a (colour, shape) and b placed so that ``a`` is ``relation`` of ``b``."""
    gap = rng.uniform(26.0, 34.0)
    along = rng.uniform(-4.0, 4.0)
    mid = rng.uniform(26.0, 38.0, size=2)
    dx, dy = {
        "左边": (-gap, along),
        "右边": (gap, along),
        "上方": (along, -gap),
        "下方": (along, gap),
    }[relation]
    pa = (mid[0] + dx / 2, mid[1] + dy / 2)
    pb = (mid[0] - dx / 2, mid[1] - dy / 2)
    oa = Obj(a[0], a[1], "小", *pa)
    ob = Obj(b[0], b[1], "小", *pb)
    return Scene((oa, ob), relation=relation, bg_seed=int(rng.integers(2**31)))


def _pick_pair(rng: np.random.Generator, held_out: bool) -> tuple[str, str]:
    while True:
        c = COLOR_NAMES[rng.integers(len(COLOR_NAMES))]
        h = SHAPES[rng.integers(len(SHAPES))]
        if ((c, h) in HELD_OUT) == held_out:
            return c, h


def random_scene(rng: np.random.Generator, p_pair: float = 0.35, held_out: bool = False) -> Scene:
    """One random scene; ``held_out`` chooses held-out colour-shape pairs instead of seen ones."""
    if rng.random() < p_pair:
        a = _pick_pair(rng, held_out)
        while True:
            b = _pick_pair(rng, held_out)
            if b != a:
                break
        return _pair(rng, a, b, RELATIONS[rng.integers(len(RELATIONS))])
    c, h = _pick_pair(rng, held_out)
    s = SIZE_NAMES[rng.integers(len(SIZE_NAMES))]
    p = POSITION_NAMES[rng.integers(len(POSITION_NAMES))]
    return _single(rng, c, h, s, p)


def _variant(rng: np.random.Generator, base: Scene) -> Scene:
    """A near-duplicate of ``base``: one attribute changed (hard negative)."""
    if base.relation is None:
        o = base.objects[0]
        attrs = {"color": o.color, "shape": o.shape, "size": o.size, "position": base.position}
        key = ("color", "shape", "shape", "size", "position", "position")[rng.integers(6)]
        pool = {
            "color": COLOR_NAMES,
            "shape": SHAPES,
            "size": SIZE_NAMES,
            "position": POSITION_NAMES,
        }[key]
        attrs[key] = pool[rng.integers(len(pool))]
        if (attrs["color"], attrs["shape"]) in HELD_OUT:
            attrs["shape"] = (
                o.shape if (attrs["color"], o.shape) not in HELD_OUT else _pick_pair(rng, False)[1]
            )
            if (attrs["color"], attrs["shape"]) in HELD_OUT:
                attrs["color"] = o.color
        return _single(rng, attrs["color"], attrs["shape"], attrs["size"], attrs["position"])
    a, b = base.objects
    pa, pb, rel = (a.color, a.shape), (b.color, b.shape), base.relation
    k = rng.integers(5)
    if k == 0:  # swap the two objects (same words, other order)
        pa, pb = pb, pa
    elif k == 1:  # other relation
        rel = RELATIONS[rng.integers(len(RELATIONS))]
    elif k == 2:
        pa = _pick_pair(rng, False)
    elif k == 3:
        pb = _pick_pair(rng, False)
    else:  # same colours, other shapes or vice versa
        pa = (pa[0], SHAPES[rng.integers(len(SHAPES))])
        if pa in HELD_OUT:
            pa = (a.color, a.shape)
    if pa == pb:
        pb = (b.color, b.shape) if (b.color, b.shape) != pa else _pick_pair(rng, False)
    return _pair(rng, pa, pb, rel)


def scene_key(scene: Scene) -> tuple:
    """Hashable description of what a caption can say about ``scene`` (ignores jitter)."""
    if scene.relation is None:
        o = scene.objects[0]
        return (o.color, o.shape, o.size, scene.position)
    a, b = scene.objects
    rel = scene.relation
    if rel in ("右边", "下方"):  # "a right of b" says the same as "b left of a"
        a, b, rel = b, a, {"右边": "左边", "下方": "上方"}[rel]
    return (a.color, a.shape, b.color, b.shape, rel)


def hard_negative_group(rng: np.random.Generator, group_size: int = 8) -> list[Scene]:
    """``group_size`` distinct scenes: a random base and near-duplicates differing in one attribute."""
    base = random_scene(rng)
    group, keys = [base], {scene_key(base)}
    tries = 0
    while len(group) < group_size:
        v = _variant(rng, group[rng.integers(len(group))])
        tries += 1
        if scene_key(v) not in keys or tries > 200:
            if scene_key(v) in keys:
                v = random_scene(rng)
                if scene_key(v) in keys:
                    continue
            group.append(v)
            keys.add(scene_key(v))
    return group


# ----------------------------------------------------------------------------- rendering

_S = IMAGE_SIZE * _SUPERSAMPLE
_YY, _XX = np.mgrid[0:_S, 0:_S].astype(np.float32) / _SUPERSAMPLE + 0.5 / _SUPERSAMPLE


def _mask(shape: str, cx: float, cy: float, r: float) -> np.ndarray:
    """Boolean supersampled mask (S, S) of one shape with circumradius ~r at (cx, cy)."""
    dx, dy = _XX - cx, _YY - cy
    if shape == "圆形":
        return dx * dx + dy * dy <= r * r
    if shape == "圆环":
        d2 = dx * dx + dy * dy
        return (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)
    if shape == "正方形":
        return np.maximum(np.abs(dx), np.abs(dy)) <= 0.82 * r
    if shape == "菱形":
        return np.abs(dx) + np.abs(dy) <= 1.05 * r
    if shape == "十字形":
        a, b = np.abs(dx), np.abs(dy)
        return ((a <= 0.33 * r) & (b <= r)) | ((b <= 0.33 * r) & (a <= r))
    if shape == "三角形":  # pointing up, vertices (0, -r), (+-0.866 r, 0.5 r)
        return (dy <= 0.5 * r) & (np.abs(dx) <= (dy + r) / 1.732)
    if shape == "六边形":
        a, b = np.abs(dx), np.abs(dy)
        return (b <= 0.866 * r) & (0.866 * a + 0.5 * b <= 0.866 * r)
    if shape == "星形":
        ang = np.arctan2(dy, dx) + np.pi / 2
        rad = np.sqrt(dx * dx + dy * dy)
        k = np.cos(5 * ang) * 0.5 + 0.5  # 1 at the five tips
        return rad <= r * (0.45 + 0.6 * k**2)
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def _background(seed: int) -> np.ndarray:
    """Desaturated textured background, float32 (S, S, 3) in 0..255."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(70, 185)
    tint = rng.normal(0, 10, size=3)
    ang = rng.uniform(0, 2 * np.pi)
    grad = (np.cos(ang) * (_XX - _S / 4) + np.sin(ang) * (_YY - _S / 4)) / (IMAGE_SIZE / 2)
    img = base + tint[None, None, :] + rng.uniform(10, 35) * grad[..., None]
    return img.astype(np.float32)


def render(scene: Scene) -> np.ndarray:
    """Render ``scene`` to a ``uint8`` RGB image of shape (IMAGE_SIZE, IMAGE_SIZE, 3)."""
    img = _background(scene.bg_seed)
    rng = np.random.default_rng(scene.bg_seed + 1)
    for o in scene.objects:
        m = _mask(o.shape, o.cx, o.cy, SIZES[o.size])
        col = np.clip(np.asarray(COLORS[o.color], np.float32) + rng.normal(0, 8, size=3), 0, 255)
        img[m] = col
    img = img.reshape(IMAGE_SIZE, _SUPERSAMPLE, IMAGE_SIZE, _SUPERSAMPLE, 3).mean(axis=(1, 3))
    img += rng.normal(0, 4.0, size=img.shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def render_many(scenes: list[Scene]) -> np.ndarray:
    """Render scenes to a ``uint8`` array (N, H, W, 3)."""
    out = np.empty((len(scenes), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    for i, s in enumerate(scenes):
        out[i] = render(s)
    return out


# ----------------------------------------------------------------------------- splits


@dataclass(frozen=True)
class Split:
    """A materialised split: images (N, H, W, 3) uint8, captions, scenes."""

    name: str
    images: np.ndarray
    captions: list[str]
    scenes: list[Scene]

    def __len__(self) -> int:
        return len(self.captions)


SPLIT_SIZES = {"calibration": 512, "eval": 1000, "zeroshot": 400, "seen": 400}


def split_scenes(name: str, n: int | None = None, seed: int = 0) -> list[Scene]:
    """Scenes of split ``name`` ('train', 'calibration', 'eval' or 'zeroshot'), deterministic in ``seed``."""
    if name not in _SPLIT_SEEDS:
        raise ValueError(f"unknown split {name!r}; expected one of {sorted(_SPLIT_SEEDS)}")
    if n is None:
        if name == "train":
            raise ValueError("the train split is endless: pass n")
        n = SPLIT_SIZES[name]
    rng = np.random.default_rng([_SPLIT_SEEDS[name], seed])
    if name in ("zeroshot", "seen"):
        pairs = (
            sorted(HELD_OUT)
            if name == "zeroshot"
            else sorted((c, h) for c in COLOR_NAMES for h in SHAPES if (c, h) not in HELD_OUT)
        )
        out = []
        for i in range(n):
            c, h = pairs[i % len(pairs)]
            out.append(
                _single(rng, c, h, SIZE_NAMES[rng.integers(2)], POSITION_NAMES[rng.integers(9)])
            )
        return out
    if name == "eval":
        # hard benchmark: groups of near-duplicates, every scene distinct
        out, keys = [], set()
        while len(out) < n:
            for s in hard_negative_group(rng, 8):
                if scene_key(s) not in keys and len(out) < n:
                    out.append(s)
                    keys.add(scene_key(s))
        return out
    return [random_scene(rng) for _ in range(n)]


def make_split(name: str, n: int | None = None, seed: int = 0) -> Split:
    """Materialise split ``name``: images, captions (canonical phrasing 0) and scenes."""
    scenes = split_scenes(name, n, seed)
    return Split(name, render_many(scenes), [caption(s, 0) for s in scenes], scenes)


PROMPT_TEMPLATES = ("一张{}的图片", "一幅{}的画", "这是一个{}")


def train_batch(
    rng: np.random.Generator, batch_size: int = 128, group_size: int = 8, p_prompt: float = 0.0
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """A training batch of hard-negative groups.

    Args:
        p_prompt: probability that a single-object scene is captioned by a short class prompt
            ("一张红色圆形的图片", no size or position) instead of a full caption.
    Returns:
        images (B, H, W, 3) uint8; captions (B,) in random phrasings; ``match`` bool (B, B) with
        ``match[i, j]`` true when caption i is a true description of image j (the diagonal, plus
        other images of the same colour and shape for a short prompt).
    """
    if batch_size % group_size:
        raise ValueError(f"batch_size {batch_size} must be a multiple of group_size {group_size}")
    scenes: list[Scene] = []
    keys: set = set()
    while len(scenes) < batch_size:
        for s in hard_negative_group(rng, group_size):
            if scene_key(s) not in keys and len(scenes) < batch_size:
                scenes.append(s)
                keys.add(scene_key(s))
    caps, says = [], []
    for s in scenes:
        if s.relation is None and rng.random() < p_prompt:
            o = s.objects[0]
            t = PROMPT_TEMPLATES[rng.integers(len(PROMPT_TEMPLATES))]
            caps.append(prompt(o.color, o.shape, t))
            says.append(("class", o.color, o.shape))
        else:
            caps.append(caption(s, int(rng.integers(1000))))
            says.append(("scene", scene_key(s)))
    match = np.zeros((batch_size, batch_size), dtype=bool)
    for i, what in enumerate(says):
        for j, s in enumerate(scenes):
            if what[0] == "scene":
                match[i, j] = what[1] == scene_key(s)
            else:
                match[i, j] = (
                    s.relation is None and (s.objects[0].color, s.objects[0].shape) == what[1:]
                )
    return render_many(scenes), caps, match


def with_position(scene: Scene, position: str, rng: np.random.Generator) -> Scene:
    """The same single object moved to ``position`` (for demos)."""
    o = scene.objects[0]
    return replace(_single(rng, o.color, o.shape, o.size, position), bg_seed=scene.bg_seed)
