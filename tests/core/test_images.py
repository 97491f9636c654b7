"""Bad and unusual input to the image loader: every user error is a one-line FvgenError."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fvgen.core.errors import FvgenError
from fvgen.core.images import fit_size, list_image_files, load_images, read_image, select_views


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert isinstance(e.value, FvgenError)
    assert msg and "\n" not in msg and "Traceback" not in msg
    return msg


def _rgb(w: int = 64, h: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(path: Path, arr: np.ndarray, **kw) -> Path:
    Image.fromarray(arr).save(path, **kw)
    return path


# ----------------------------------------------------------------------------- folders


def test_missing_folder(tmp_path):
    with pytest.raises(FvgenError) as e:
        list_image_files(tmp_path / "nope")
    assert "not found" in _one_line(e)
    assert list_image_files(tmp_path / "nope", strict=False) == []


def test_file_instead_of_folder(tmp_path):
    f = _save(tmp_path / "a.png", _rgb())
    with pytest.raises(FvgenError) as e:
        list_image_files(f)
    assert "not a folder" in _one_line(e)
    assert list_image_files(f, strict=False) == []


def test_empty_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "sub.jpg").mkdir()  # a folder named like an image is not an image
    with pytest.raises(FvgenError) as e:
        list_image_files(tmp_path)
    assert "no image files" in _one_line(e)
    assert list_image_files(tmp_path, strict=False) == []
    with pytest.raises(FvgenError) as e:
        load_images([])
    _one_line(e)


def test_listing_sorted_suffixes_and_hidden(tmp_path):
    for n in ("b.JPG", "a.png", "c.jpeg", ".hidden.jpg", "d.webp", "e.txt", "cameras_opencv.json"):
        (tmp_path / n).write_bytes(b"x")
    assert [p.name for p in list_image_files(tmp_path)] == ["a.png", "b.JPG", "c.jpeg", "d.webp"]


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root ignores permissions")
def test_unreadable_folder(tmp_path):
    d = tmp_path / "locked"
    d.mkdir()
    d.chmod(0)
    try:
        with pytest.raises(FvgenError) as e:
            list_image_files(d)
        assert "permission" in _one_line(e)
    finally:
        d.chmod(0o755)


# ----------------------------------------------------------------------------- single files


def test_missing_image(tmp_path):
    with pytest.raises(FvgenError) as e:
        read_image(tmp_path / "gone.jpg")
    assert "not found" in _one_line(e)


def test_folder_as_image(tmp_path):
    (tmp_path / "x.jpg").mkdir()
    with pytest.raises(FvgenError) as e:
        read_image(tmp_path / "x.jpg")
    _one_line(e)


@pytest.mark.parametrize("content", [b"", b"this is not a jpeg\n" * 50, b"\xff\xd8\xff" + b"\x00" * 100])
def test_non_image_with_jpg_suffix(tmp_path, content):
    f = tmp_path / "fake.jpg"
    f.write_bytes(content)
    with pytest.raises(FvgenError) as e:
        read_image(f)
    assert "fake.jpg" in _one_line(e)


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9])
def test_truncated_jpeg(tmp_path, keep):
    full = _save(tmp_path / "full.jpg", _rgb(256, 192), quality=95)
    data = full.read_bytes()
    f = tmp_path / "trunc.jpg"
    f.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(FvgenError) as e:
        read_image(f)
    assert "trunc.jpg" in _one_line(e)


def test_truncated_png(tmp_path):
    full = _save(tmp_path / "full.png", _rgb(128, 96))
    f = tmp_path / "trunc.png"
    f.write_bytes(full.read_bytes()[:-200])
    with pytest.raises(FvgenError) as e:
        read_image(f)
    _one_line(e)


def test_too_small(tmp_path):
    f = _save(tmp_path / "tiny.png", _rgb(8, 8))
    with pytest.raises(FvgenError) as e:
        read_image(f)
    assert "too small" in _one_line(e)


def test_rgb_png_exact(tmp_path):
    a = _rgb()
    img = read_image(_save(tmp_path / "a.png", a))
    assert img.dtype == np.float32 and img.shape == (48, 64, 3)
    np.testing.assert_allclose(img, a / 255.0, atol=1e-6)


def test_rgba_composited_on_white(tmp_path):
    a = np.zeros((32, 40, 4), np.uint8)
    a[..., 0] = 200  # red-ish
    a[:, :10, 3] = 0  # transparent
    a[:, 10:20, 3] = 255  # opaque
    a[:, 20:, 3] = 128  # half
    img = read_image(_save(tmp_path / "rgba.png", a))
    assert img.shape == (32, 40, 3)
    np.testing.assert_allclose(img[:, :10], 1.0, atol=1e-6)
    np.testing.assert_allclose(img[0, 15], [200 / 255, 0, 0], atol=1e-6)
    al = 128 / 255
    np.testing.assert_allclose(img[0, 30], [200 / 255 * al + 1 - al, 1 - al, 1 - al], atol=1e-6)


def test_la_png_composited_on_white(tmp_path):
    a = np.zeros((20, 20, 2), np.uint8)
    a[..., 0] = 50
    a[:10, :, 1] = 0
    a[10:, :, 1] = 255
    img = read_image(_save(tmp_path / "la.png", a))
    np.testing.assert_allclose(img[0, 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(img[15, 0], 50 / 255, atol=1e-6)


def test_16bit_png_scaled(tmp_path):
    a = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    f = tmp_path / "deep.png"
    Image.fromarray(a).save(f)
    assert Image.open(f).mode.startswith("I")
    img = read_image(f)
    assert img.shape == (32, 32, 3)
    np.testing.assert_allclose(img[..., 0], a / 65535.0, atol=1e-6)
    np.testing.assert_array_equal(img[..., 0], img[..., 2])
    # a dark 16-bit image stays dark (no rescaling by its own maximum)
    dark = (a // 256).astype(np.uint16)
    Image.fromarray(dark).save(tmp_path / "dark.png")
    np.testing.assert_allclose(read_image(tmp_path / "dark.png")[..., 1], dark / 65535.0, atol=1e-6)


def test_grayscale(tmp_path):
    g = np.random.default_rng(1).integers(0, 256, (30, 40), dtype=np.uint8)
    img = read_image(_save(tmp_path / "g.png", g))
    assert img.shape == (30, 40, 3)
    for c in range(3):
        np.testing.assert_allclose(img[..., c], g / 255.0, atol=1e-6)
    img = read_image(_save(tmp_path / "g.jpg", g, quality=100))
    assert img.shape == (30, 40, 3)
    np.testing.assert_allclose(img[..., 0], img[..., 1])


def test_bilevel(tmp_path):
    im = Image.new("1", (24, 24), 0)
    im.paste(1, (0, 0, 12, 24))
    im.save(tmp_path / "b.png")
    img = read_image(tmp_path / "b.png")
    np.testing.assert_allclose(img[0, 0], 1.0)
    np.testing.assert_allclose(img[0, 20], 0.0)


def test_palette(tmp_path):
    a = _rgb(40, 30)
    im = Image.fromarray(a).quantize(16)
    assert im.mode == "P"
    im.save(tmp_path / "p.png")
    expect = np.asarray(im.convert("RGB")) / 255.0
    np.testing.assert_allclose(read_image(tmp_path / "p.png"), expect, atol=1e-6)


def test_palette_with_transparency(tmp_path):
    im = Image.new("P", (20, 20), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.paste(1, (10, 0, 20, 20))
    im.info["transparency"] = 0
    im.save(tmp_path / "pt.png", transparency=0)
    img = read_image(tmp_path / "pt.png")
    np.testing.assert_allclose(img[0, 0], 1.0, atol=1e-6)  # transparent black -> white
    np.testing.assert_allclose(img[0, 15], [1, 0, 0], atol=1e-6)


def test_exif_orientation_6_rotates(tmp_path):
    # stored landscape 64x48 with a red block at the stored top-left; orientation 6 = rotate 90 CW
    a = np.full((48, 64, 3), 128, np.uint8)
    a[:12, :12] = [255, 0, 0]
    im = Image.fromarray(a)
    exif = Image.Exif()
    exif[0x0112] = 6
    f = tmp_path / "rot.jpg"
    im.save(f, exif=exif, quality=95)
    img = read_image(f)
    assert img.shape == (64, 48, 3)  # now portrait
    # stored top-left ends up at the displayed top-right
    assert img[3, -4, 0] > 0.8 and img[3, -4, 1] < 0.2
    assert img[3, 3, 0] < 0.7
    ref = np.asarray(im.rotate(-90, expand=True)) / 255.0
    assert np.abs(img - ref).mean() < 0.02
    # load_images records the size after rotation
    li = load_images([f])
    assert li.original_sizes == [(48, 64)] and li.size == (48, 64)


@pytest.mark.parametrize("orientation,shape", [(1, (48, 64)), (3, (48, 64)), (8, (64, 48))])
def test_other_exif_orientations(tmp_path, orientation, shape):
    a = np.full((48, 64, 3), 100, np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    f = tmp_path / f"o{orientation}.jpg"
    Image.fromarray(a).save(f, exif=exif)
    assert read_image(f).shape[:2] == shape


# ----------------------------------------------------------------------------- sets of images


def test_mixed_sizes_same_aspect_resized_to_smallest(tmp_path):
    big = _save(tmp_path / "a.png", np.full((120, 160, 3), 200, np.uint8))
    mid = _save(tmp_path / "b.jpg", np.full((90, 120, 3), 50, np.uint8), quality=100)
    small = _save(tmp_path / "c.png", np.full((60, 80, 3), 10, np.uint8))
    li = load_images([big, mid, small])
    assert li.images.shape == (3, 60, 80, 3) and li.images.dtype == np.float32
    assert li.size == (80, 60)
    assert li.names == ["a.png", "b.jpg", "c.png"]
    assert li.original_sizes == [(160, 120), (120, 90), (80, 60)]
    np.testing.assert_allclose(li.images[0], 200 / 255, atol=1e-5)  # flat colour survives resizing
    np.testing.assert_allclose(li.images[2], 10 / 255, atol=1e-6)
    li = load_images([big, mid, small], max_size=40)
    assert li.size == (40, 30)


def test_different_aspects_refused(tmp_path):
    a = _save(tmp_path / "land.png", _rgb(64, 48))
    b = _save(tmp_path / "port.png", _rgb(48, 64))
    with pytest.raises(FvgenError) as e:
        load_images([a, b])
    msg = _one_line(e)
    assert "aspect" in msg and "port.png" in msg


def test_bad_file_in_set_names_it(tmp_path):
    a = _save(tmp_path / "a.png", _rgb())
    (tmp_path / "b.jpg").write_bytes(b"garbage")
    with pytest.raises(FvgenError) as e:
        load_images(list_image_files(tmp_path))
    assert "b.jpg" in _one_line(e)
    assert a.exists()


def test_fit_size():
    assert fit_size(4032, 3024, 512) == (512, 384)
    assert fit_size(100, 80, None) == (100, 80)
    assert fit_size(100, 80, 1000) == (100, 80)  # never upscales
    assert fit_size(1000, 750, 500, multiple=16) == (496, 368)


# ----------------------------------------------------------------------------- select_views


def test_select_views_rule(tmp_path):
    files = [tmp_path / f"{i:02d}.jpg" for i in range(10)]
    assert select_views(files, 3) == [files[0], files[4], files[9]]  # round(linspace(0, 9, 3)) = 0, 4.5->4, 9
    assert select_views(files, 2) == [files[0], files[9]]
    sel = select_views(files, 5)
    assert sel == [files[i] for i in np.round(np.linspace(0, 9, 5)).astype(int)]
    assert len(set(sel)) == 5
    for n in range(2, 11):
        s = select_views(files, n)
        assert len(s) == n and s[0] == files[0] and s[-1] == files[-1] and len(set(s)) == n
    assert select_views(files, None) == files
    assert select_views(files, 10) == files
    assert select_views(files, 50) == files
    eight = files[:8]
    assert select_views(eight, 3) == [eight[0], eight[4], eight[7]]  # the demo scene's 3 views


@pytest.mark.parametrize("n", [0, 1, -3])
def test_select_views_too_few(tmp_path, n):
    files = [tmp_path / f"{i}.jpg" for i in range(5)]
    with pytest.raises(FvgenError) as e:
        select_views(files, n)
    assert "at least 2" in _one_line(e)


# ----------------------------------------------------------------------------- what was used

def _scene(w: int = 160, h: int = 120, shift: int = 0, seed: int = 0) -> np.ndarray:
    """A smooth photo-like image (a few colour blobs on a gradient), moved ``shift`` px to the right."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    x = x - shift
    img = np.stack([x / w, y / h, 0.5 + 0 * x], -1) * 0.5
    for _ in range(6):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(8, 30)
        img += np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / r**2)[..., None] * rng.uniform(0, 0.6, 3)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def _notes(capsys) -> list[str]:
    err = capsys.readouterr().err
    return [ln for ln in err.splitlines() if ln.strip()]


def test_skipped_files_are_named_in_one_notice(tmp_path, capsys):
    _save(tmp_path / "a.png", _rgb())
    _save(tmp_path / "b.png", _rgb(seed=1))
    (tmp_path / "notes.txt").write_text("taken at noon")
    (tmp_path / "a.png.xmp").write_text("<x/>")
    (tmp_path / ".DS_Store").write_text("")
    (tmp_path / "cameras_opencv.json").write_text("{}")  # a pose file beside the photos is expected
    files = list_image_files(tmp_path, notify=True)
    assert [f.name for f in files] == ["a.png", "b.png"]
    assert _notes(capsys) == ["note: skipped 2 file(s) that are not images: a.png.xmp, notes.txt"]
    list_image_files(tmp_path)  # only the reconstruct path asks for the notice
    assert _notes(capsys) == []


def test_views_above_the_photo_count_say_so(tmp_path, capsys):
    files = [tmp_path / f"{i}.png" for i in range(3)]
    assert select_views(files, 99) == files
    assert _notes(capsys) == ["note: --views 99 but there are 3 photos: using all 3"]
    assert select_views(files, 3) == files and _notes(capsys) == []


def test_duplicate_photos_are_dropped_with_one_notice(tmp_path, capsys):
    from fvgen.core.images import drop_duplicate_photos

    a = _save(tmp_path / "a.png", _scene())
    b = tmp_path / "b.png"
    b.write_bytes(a.read_bytes())  # byte-identical
    c = _save(tmp_path / "c.jpg", np.asarray(Image.fromarray(_scene()).resize((320, 240))), quality=92)  # re-saved
    d = _save(tmp_path / "d.png", _scene(seed=1))  # another scene
    e = _save(tmp_path / "e.png", _scene(shift=3))  # the camera moved 2 % of the width: a real view
    kept = drop_duplicate_photos([a, b, c, d, e])
    assert kept == [a, d, e]
    assert _notes(capsys) == ["note: dropped 2 duplicate photo(s), which would only skew the fit: b.png (= a.png), "
                              "c.jpg (= a.png)"]
    assert drop_duplicate_photos([a, d, e]) == [a, d, e] and _notes(capsys) == []


def test_one_decode_fits_every_size_exactly_as_load_images(tmp_path, monkeypatch):
    """DecodedImages.fit makes, from one decode, arrays bit-identical to load_images' and to each file
    read and resized on its own to the smallest photo's fitted size (what load_images did before it
    was built on decode_images); photos of one aspect ratio, two resolutions, a JPEG with EXIF rotation."""
    import fvgen.core.images as images_module
    from fvgen.core.images import decode_images, resize_image

    files = [_save(tmp_path / "a.png", _rgb(240, 180, 1)), _save(tmp_path / "b.png", _rgb(320, 240, 2))]
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display: stored 180 x 240, shown 240 x 180
    files.append(_save(tmp_path / "c.jpg", _rgb(180, 240, 3), exif=exif, quality=95))
    reads = []
    real_read = images_module.read_image
    monkeypatch.setattr(images_module, "read_image", lambda f: reads.append(Path(f).name) or real_read(f))
    decoded = decode_images(files)
    assert reads == ["a.png", "b.png", "c.jpg"]
    for max_size in (100, 200, 1024, None):
        fitted, loaded = decoded.fit(max_size), load_images(files, max_size)
        w, h = fit_size(240, 180, max_size)
        one_by_one = np.stack([resize_image(real_read(f), w, h) for f in files])
        assert fitted.images.dtype == loaded.images.dtype == np.float32
        assert np.array_equal(fitted.images, one_by_one) and np.array_equal(loaded.images, one_by_one)
        assert (fitted.names, fitted.original_sizes) == (loaded.names, loaded.original_sizes)
    assert decoded.fit(100).size == (100, 75) and decoded.fit(1024).size == (240, 180)  # the smallest, never upscaled
