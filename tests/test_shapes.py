"""The shapes world: determinism, captions, splits, hold-out."""

import hashlib

import numpy as np
import pytest

from clipq_helpers import shapes


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(a.tobytes()).hexdigest()


def test_same_seed_identical_bytes():
    a = shapes.make_split("calibration", 32)
    b = shapes.make_split("calibration", 32)
    assert _digest(a.images) == _digest(b.images)
    assert a.captions == b.captions


def test_other_seed_differs():
    a = shapes.make_split("calibration", 16, seed=0)
    b = shapes.make_split("calibration", 16, seed=1)
    assert _digest(a.images) != _digest(b.images)


def test_image_format():
    img = shapes.make_split("eval", 4).images
    assert img.dtype == np.uint8 and img.shape == (4, shapes.IMAGE_SIZE, shapes.IMAGE_SIZE, 3)


def test_caption_phrasings():
    s = shapes.split_scenes("calibration", 1)[0]
    while s.relation is not None:
        s = shapes.random_scene(np.random.default_rng(len(s.objects)), p_pair=0.0)
    o = s.objects[0]
    caps = {shapes.caption(s, k) for k in range(5)}
    assert len(caps) == 5
    for c in caps:
        assert o.color in c and o.shape in c and s.position in c and o.size in c
    assert shapes.caption(s, 0) == f"一个{o.color}的{o.size}{o.shape}在{s.position}"


def test_pair_caption_and_key_symmetry():
    rng = np.random.default_rng(0)
    a = shapes._pair(rng, ("红色", "圆形"), ("蓝色", "正方形"), "左边")
    b = shapes._pair(rng, ("蓝色", "正方形"), ("红色", "圆形"), "右边")
    assert shapes.caption(a, 0) == "红色圆形在蓝色正方形的左边"
    assert shapes.scene_key(a) == shapes.scene_key(b)  # same meaning, same key
    ax, bx = a.objects[0].cx, a.objects[1].cx
    assert ax < bx  # the relation holds geometrically


def test_held_out_never_in_training_scenes():
    rng = np.random.default_rng(1)
    for _ in range(20):
        _, caps, _ = shapes.train_batch(rng, 64, p_prompt=0.3)
        for c in caps:
            for color, shape in shapes.HELD_OUT:
                assert color + shape not in c and f"{color}的{shape}" not in c, c
    assert len(shapes.HELD_OUT) == len(shapes.COLORS)
    assert {c for c, _ in shapes.HELD_OUT} == set(shapes.COLORS)


def test_zeroshot_split_is_held_out():
    for s in shapes.split_scenes("zeroshot", 40):
        o = s.objects[0]
        assert (o.color, o.shape) in shapes.HELD_OUT


def test_eval_split_distinct_scenes_and_captions():
    scenes = shapes.split_scenes("eval")
    assert len({shapes.scene_key(s) for s in scenes}) == len(scenes) == shapes.SPLIT_SIZES["eval"]
    caps = [shapes.caption(s) for s in scenes]
    assert len(set(caps)) == len(caps)
    assert any(s.relation for s in scenes) and any(s.relation is None for s in scenes)


def test_train_batch_groups_are_near_duplicates():
    imgs, caps, match = shapes.train_batch(np.random.default_rng(3), 16, 8)
    assert imgs.shape[0] == 16 and len(set(caps)) == 16
    assert (match == np.eye(16, dtype=bool)).all()  # full captions: one true image each


def test_train_batch_prompt_captions_match_every_image_of_their_class():
    rng = np.random.default_rng(4)
    _, caps, match = shapes.train_batch(rng, 64, 8, p_prompt=1.0)
    assert match.diagonal().all()
    short = [i for i, c in enumerate(caps) if c.startswith(("一张", "一幅", "这是"))]
    assert short and any(match[i].sum() > 1 for i in short)
    for i in short:
        for j in np.flatnonzero(match[i]):
            assert match[j].any()
        # a prompt names its colour and shape; every matched image's full caption agrees
        color_shape = caps[i].removeprefix("一张").removeprefix("一幅").removeprefix("这是一个")
        color_shape = color_shape.removesuffix("的图片").removesuffix("的画")
        for j in np.flatnonzero(match[i]):
            if not caps[j].startswith(("一张", "一幅", "这是")):
                assert color_shape[:2] in caps[j] and color_shape[2:] in caps[j]


def test_bad_split_and_batch():
    with pytest.raises(ValueError, match="unknown split"):
        shapes.split_scenes("test")
    with pytest.raises(ValueError, match="multiple of group_size"):
        shapes.train_batch(np.random.default_rng(0), 10, 8)


def test_every_shape_renders_inside_the_image():
    rng = np.random.default_rng(0)
    for shape in shapes.SHAPES:
        for pos in shapes.POSITIONS:
            s = shapes._single(rng, "红色", shape, "大", pos)
            img = shapes.render(s).astype(int)
            red = (img[..., 0] > 170) & (img[..., 1] < 90) & (img[..., 2] < 90)
            assert red.sum() > 40, (shape, pos)
