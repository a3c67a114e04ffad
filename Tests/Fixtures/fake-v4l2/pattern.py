"""The fake V4L2 camera's picture, as a test sees it after conversion to bgr24.

Mirrors render() in fake_v4l2.c (see README.md for the formula):

- 8 vertical bars (white, yellow, cyan, green, magenta, red, blue, black), each width/8 wide,
  moved right by shift = (8 * n) % width pixels in frame n;
- the 32-bit frame number n (the V4L2 sequence number, 0 at STREAMON) in 2 rows x 16 blocks of
  B x B pixels at the top left, B = max(16, (width // 256) * 16), most significant bit first,
  white = 1, black = 0.

The Y'CbCr values lie beyond BT.601's legal range on purpose: through the BT.601 limited-range
conversion that swscale uses by default every component clips to exactly 0 or 255, so a raw
capture matches expected_bgr() exactly and the colours survive lossy coding well.

Use with the project's venv: .venv/bin/python (numpy).
"""

import numpy as np

# (Y, Cb, Cr) of the bars, left to right in frame 0; must match bars[] in fake_v4l2.c.
BARS_YUV = [
    (250, 128, 128),  # white
    (222, 4, 150),    # yellow
    (176, 172, 2),    # cyan
    (150, 20, 20),    # green
    (104, 230, 230),  # magenta
    (76, 85, 250),    # red
    (32, 250, 108),   # blue
    (4, 128, 128),    # black
]
Y_ONE, Y_ZERO = 250, 4  # frame-number blocks (chroma 128)


def block_size(width):
    """Side of one frame-number block in pixels."""
    return max(16, (width // 256) * 16)


def expected_yuv(width, height, frame_number, pixel_format="yuyv422"):
    """Per-pixel (Y, Cb, Cr) planes at full resolution, chroma as the camera subsamples it:
    each horizontal pixel pair (yuyv422) or 2x2 block (nv12) takes its top-left pixel's chroma."""
    n = int(frame_number) & 0xFFFFFFFF
    shift = (n * 8) % width
    B = block_size(width)
    yuv = np.array(BARS_YUV, dtype=np.int32)
    x = np.arange(width)
    luma_bar = ((x - shift) % width) * 8 // width
    chroma_bar = ((x - (x & 1) - shift) % width) * 8 // width
    row_y = yuv[luma_bar, 0]
    row_c = yuv[chroma_bar, 1:]
    Y = np.tile(row_y, (height, 1))
    C = np.tile(row_c, (height, 1, 1))
    strip_w, strip_h = min(16 * B, width), min(2 * B, height)
    for r in range(2):
        for col in range(16):
            bit = (n >> (31 - (r * 16 + col))) & 1
            Y[r * B:(r + 1) * B, col * B:(col + 1) * B] = Y_ONE if bit else Y_ZERO
    C[:strip_h, :strip_w] = 128
    if pixel_format == "nv12":  # rows pair up too: a pair takes its upper row's chroma
        C = C[(np.arange(height) & ~1)]
    return Y, C[..., 0], C[..., 1]


def yuv_to_bgr(Y, U, V):
    """BT.601 limited range to 8-bit BGR, as swscale does by default."""
    c = 1.164383 * (Y.astype(np.float64) - 16)
    u = U.astype(np.float64) - 128
    v = V.astype(np.float64) - 128
    r = c + 1.596027 * v
    g = c - 0.391762 * u - 0.812968 * v
    b = c + 2.017232 * u
    return np.clip(np.rint(np.stack([b, g, r], axis=-1)), 0, 255).astype(np.uint8)


def expected_bgr(width, height, frame_number, pixel_format="yuyv422"):
    """What frame `frame_number` looks like as bgr24: a (height, width, 3) uint8 array."""
    return yuv_to_bgr(*expected_yuv(width, height, frame_number, pixel_format))


def exact_mask(width, height, pixel_format="yuyv422"):
    """Pixels where a raw capture equals expected_bgr() exactly: all of them for yuyv422; for
    nv12 all but the 4 rows around the frame-number strip's lower edge, where swscale
    interpolates chroma vertically between the strip's neutral chroma and the bars'."""
    mask = np.ones((height, width), dtype=bool)
    if pixel_format == "nv12":
        edge = 2 * block_size(width)
        mask[max(0, edge - 2):edge + 2] = False
    return mask


def read_frame_number(bgr):
    """The frame number drawn in the top-left blocks of a bgr24 image (height, width, 3).
    Reads the middle half of each block, so coding blur at the edges does not matter."""
    height, width = bgr.shape[:2]
    B = block_size(width)
    lo, hi = B // 4, B - B // 4
    n = 0
    for i in range(32):
        r, col = divmod(i, 16)
        block = bgr[r * B + lo:r * B + hi, col * B + lo:col * B + hi]
        n = (n << 1) | int(block.mean() > 127.5)
    return n


def psnr(a, b):
    """Peak signal-to-noise ratio in dB of two uint8 images (inf when equal)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def read_raw_frames(path, width, height):
    """Frames of a rawvideo bgr24 file as a (count, height, width, 3) uint8 array."""
    data = np.fromfile(path, dtype=np.uint8)
    return data.reshape(-1, height, width, 3)


if __name__ == "__main__":
    # .venv/bin/python pattern.py out.raw 640 480 [yuyv422|nv12]: check every frame of a raw bgr24 capture
    import sys

    path, w, h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    fmt = sys.argv[4] if len(sys.argv) > 4 else "yuyv422"
    numbers, worst, exact = [], float("inf"), 0
    mask = exact_mask(w, h, fmt)[..., None]
    for frame in read_raw_frames(path, w, h):
        n = read_frame_number(frame)
        exp = expected_bgr(w, h, n, fmt)
        numbers.append(n)
        worst = min(worst, psnr(frame, exp))
        diff = np.abs(frame.astype(int) - exp.astype(int)) * mask
        exact += not diff.any()
        if diff.any():
            print(f"frame {n}: max diff {diff.max()}, {np.count_nonzero(diff.max(axis=2))} pixels differ")
    gaps = sum(1 for a, b in zip(numbers, numbers[1:]) if b != a + 1)
    print(f"{len(numbers)} frames, numbers {numbers[0]}..{numbers[-1]}, {gaps} gaps, "
          f"{exact} exact, worst PSNR {worst:.1f} dB")
