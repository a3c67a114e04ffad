"""Camera-like H.264 clips for scripts/bench-cameras and scripts/bench-latency, made once with FFmpeg's
libx264 and cached under out/bench-clips/ (a clip is remade only when its recipe changes).

A clip is what a camera's encoder sends: constant frame rate, no B-frames, a keyframe every `gop`
frames and nowhere else, about `bitrate` bits per second. The picture is testsrc2 with temporal noise
added, so the encoder really needs the bitrate (a clean test pattern would compress to a fraction).
Each clip exists twice with the same packets: CLIP.h264 (Annex B, an access unit delimiter before every
frame, SPS/PPS before every keyframe: for publishers that send access units themselves) and CLIP.mp4
(what relay-client --file and `ffmpeg -i` read).
"""
import json
import os
import subprocess
import sys

CLIP_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        "out", "bench-clips")


class Clip:
    def __init__(self, width, height, fps, seconds, gop, bitrate, h264, mp4, frames, bytes_):
        self.width, self.height, self.fps, self.seconds, self.gop, self.bitrate = \
            width, height, fps, seconds, gop, bitrate
        self.h264, self.mp4, self.frames, self.bytes = h264, mp4, frames, bytes_

    @property
    def size(self):
        return f"{self.width}x{self.height}"

    @property
    def measured_bitrate(self):
        return self.bytes * 8 / (self.frames / self.fps)

    def describe(self):
        return (f"{self.size} {self.fps} fps H.264 (libx264, no B-frames, GOP {self.gop}), "
                f"{self.frames} frames = {self.frames / self.fps:g} s, {self.measured_bitrate / 1e6:.2f} Mbit/s")


def recipe(width, height, fps, seconds, gop, bitrate):
    return {"version": 2, "width": width, "height": height, "fps": fps, "seconds": seconds, "gop": gop,
            "bitrate": bitrate, "preset": "veryfast", "noise": 12}


def make_clip(width, height, fps=30, seconds=20, gop=60, bitrate=4_000_000, directory=CLIP_DIR, log=None):
    """The clip for these parameters, encoding it first if it is not cached. log(text) reports progress."""
    os.makedirs(directory, exist_ok=True)
    wanted = recipe(width, height, fps, seconds, gop, bitrate)
    stem = os.path.join(directory, f"cam-{width}x{height}-{fps}fps-{bitrate // 1000}k-gop{gop}-{seconds}s")
    h264, mp4, meta = stem + ".h264", stem + ".mp4", stem + ".json"
    try:
        with open(meta) as f:
            cached = json.load(f)
        if cached.get("recipe") == wanted and os.path.isfile(h264) and os.path.isfile(mp4):
            return Clip(width, height, fps, seconds, gop, bitrate, h264, mp4, cached["frames"], cached["bytes"])
    except (OSError, ValueError, KeyError):
        pass
    if log:
        log(f"encoding {os.path.relpath(stem)} ({width}x{height}, {seconds} s, libx264 veryfast; "
            f"once, then cached)")
    x264 = f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0:aud=1:repeat-headers=1"
    common = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
    subprocess.run(common + [
        "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps},noise=alls={wanted['noise']}:allf=t",
        "-t", str(seconds), "-c:v", "libx264", "-preset", wanted["preset"], "-pix_fmt", "yuv420p",
        "-b:v", str(bitrate), "-maxrate", str(bitrate), "-bufsize", str(bitrate), "-x264-params", x264,
        "-f", "h264", h264 + ".part"], check=True, timeout=1800, start_new_session=True)
    os.replace(h264 + ".part", h264)
    subprocess.run(common + ["-framerate", str(fps), "-f", "h264", "-i", h264, "-c", "copy",
                             "-video_track_timescale", str(fps), "-movflags", "+faststart", "-f", "mp4",
                             mp4 + ".part"],
                   check=True, timeout=300, start_new_session=True)
    os.replace(mp4 + ".part", mp4)
    units = access_units(h264)
    keyframes = [i for i, (_, key) in enumerate(units) if key]
    expected = list(range(0, len(units), gop))
    if keyframes != expected:
        sys.exit(f"clips: {h264}: keyframes at {keyframes[:5]}..., expected every {gop} frames")
    size = sum(len(unit) for unit, _ in units)
    with open(meta, "w") as f:
        json.dump({"recipe": wanted, "frames": len(units), "bytes": size}, f)
    return Clip(width, height, fps, seconds, gop, bitrate, h264, mp4, len(units), size)


AUD = b"\x00\x00\x00\x01\x09"


def access_units(path):
    """[(bytes, keyframe)] of an Annex-B file with an access unit delimiter before every frame (x264's
    aud=1); a keyframe is an access unit holding an IDR slice (NAL type 5)."""
    with open(path, "rb") as f:
        annexb = f.read()
    units = []
    for part in annexb.split(AUD):
        if not part:
            continue
        unit = AUD + part
        keyframe = False
        start = unit.find(b"\x00\x00\x01", 3)
        while start != -1 and start + 3 < len(unit):
            if unit[start + 3] & 0x1F == 5:
                keyframe = True
                break
            start = unit.find(b"\x00\x00\x01", start + 3)
        units.append((unit, keyframe))
    return units
