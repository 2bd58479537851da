"""H.264 mp4 recording with PyAV, safe against crashes, Ctrl-C and full disks.

Frames go to a hidden temp file next to the target (`.NAME.XXXX.mp4`); `close()` flushes the
encoder, then fsyncs and renames it into place (fileio.commit, as every atomic write does). So a
SIGKILL leaves only the hidden temp file and never a truncated target. Not `atomic_path`: that
drops the temp file on an exception, and a recording is kept. An exception or Ctrl-C inside `with Mp4Recorder(...)` still finalises
what was recorded (a playable, shorter mp4) before the exception propagates: the user keeps
the walk they recorded. A recorder that wrote nothing leaves no file (and an existing target
untouched).
"""

from __future__ import annotations

import errno
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from worldplay.errors import WorldplayError
from worldplay.fileio import check_writable, commit, temp_beside

# Tried in order: libx264 is in the PyAV wheels; the others cover FFmpeg builds without it.
H264_ENCODERS = ("libx264", "libopenh264", "h264_nvenc", "h264_videotoolbox")
X264_OPTIONS = {"crf": "20", "preset": "veryfast"}   # visually clean, encodes far faster than rendering
FALLBACK_BIT_RATE = 4_000_000                        # bits/s for encoders without crf (good at 640x360)
MAX_FPS_DENOMINATOR = 1001                           # NTSC-style rates (29.97) stay exact


def pick_h264_encoder() -> str:
    """Name of the first H.264 encoder this PyAV build can open for writing."""
    import av  # PyAV loads libav: imported on use, so `worldplay --help` stays fast

    for name in H264_ENCODERS:
        if name not in av.codecs_available:
            continue
        try:
            av.codec.Codec(name, "w")
        except Exception:  # noqa: BLE001 (listed but not usable as an encoder in this build)
            continue
        return name
    raise WorldplayError("this PyAV/FFmpeg build has no H.264 encoder (tried "
                         f"{', '.join(H264_ENCODERS)}); reinstall PyAV from its wheels: pip install --force-reinstall av")


def _is_enospc(e: BaseException) -> bool:
    return (isinstance(e, OSError) and e.errno == errno.ENOSPC) or "No space left" in str(e)


class Mp4Recorder:
    """`with Mp4Recorder("walk.mp4") as rec: rec.write(rgb)` — rgb uint8 (H, W, 3), torch or numpy."""

    def __init__(self, path, fps: float = 16, width: int = 640, height: int = 360):
        import av  # PyAV, on use (see pick_h264_encoder)

        if width % 2 or height % 2 or width <= 0 or height <= 0:
            raise WorldplayError(f"recording size {width}x{height} must be positive and even (yuv420p); "
                                 "pick e.g. 640x360")
        if not fps > 0:
            raise WorldplayError(f"recording fps must be > 0 (got {fps}); use e.g. --fps 16")
        self.path = check_writable(path)
        self.fps, self.width, self.height = fps, width, height
        self.frames_written = 0
        self.codec = pick_h264_encoder()
        try:
            self.tmp_path = temp_beside(self.path, ".mp4")
        except OSError as e:
            raise WorldplayError(f"cannot write in {self.path.parent} ({e.strerror}); pick another output file") from e
        try:
            self._container = av.open(str(self.tmp_path), mode="w", format="mp4")
            rate = Fraction(fps).limit_denominator(MAX_FPS_DENOMINATOR)
            self._stream = self._container.add_stream(self.codec, rate=rate)
            self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, "yuv420p"
            if self.codec == "libx264":
                self._stream.options = dict(X264_OPTIONS)
            else:
                self._stream.bit_rate = FALLBACK_BIT_RATE
            self._time_base = Fraction(1) / rate
            self._stream.codec_context.time_base = self._time_base
        except BaseException:
            self._discard()
            raise
        self._closed = False

    # ---- writing ------------------------------------------------------------------------------

    def write(self, rgb) -> None:
        """Append one frame: uint8 (H, W, 3) RGB at the recorder's size."""
        import av  # PyAV, on use (see pick_h264_encoder)

        if self._closed:
            raise WorldplayError(f"recorder for {self.path} is closed; open a new one to record more")
        arr = rgb.detach().cpu().numpy() if isinstance(rgb, torch.Tensor) else np.asarray(rgb)
        if arr.shape != (self.height, self.width, 3) or arr.dtype != np.uint8:
            raise WorldplayError(f"recorder for {self.path} takes uint8 frames of shape "
                                 f"({self.height}, {self.width}, 3); got {arr.dtype} {tuple(arr.shape)}")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
        frame.pts, frame.time_base = self.frames_written, self._time_base
        self._mux(self._stream.encode(frame))
        self.frames_written += 1

    def _mux(self, packets) -> None:
        try:
            self._container.mux(packets)
        except Exception as e:
            if _is_enospc(e):
                self._discard()
                raise WorldplayError(f"disk full while recording {self.path}; free space and try again "
                                     f"(the previous {self.path.name}, if any, is untouched)") from e
            raise

    # ---- finishing ----------------------------------------------------------------------------

    def close(self) -> Path | None:
        """Flush the encoder and move the file into place; returns its path (None if no frames)."""
        if self._closed:
            return self.path if self.frames_written else None
        if self.frames_written == 0:
            self._discard()
            return None
        try:
            self._mux(self._stream.encode(None))                          # drain delayed frames
            self._container.close()
            commit(self.tmp_path, self.path)
        except WorldplayError:
            raise
        except BaseException as e:
            self._discard()
            if _is_enospc(e):
                raise WorldplayError(f"disk full while finishing {self.path}; free space and try again") from e
            raise
        self._closed = True
        return self.path

    def _discard(self) -> None:
        """Drop the temp file (nothing worth keeping); the target is left as it was."""
        self._closed = True
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 (already failing; the temp file goes anyway)
            pass
        self.tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> "Mp4Recorder":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        # On an exception (Ctrl-C included) keep what was recorded: finalise, then let it propagate.
        if exc_type is None:
            self.close()
        else:
            try:
                self.close()
            except Exception:  # noqa: BLE001 (the original exception matters more)
                self._discard()
        return False


def read_mp4_info(path) -> dict:
    """Decode `path` fully: {frames, width, height, fps, codec} (tests and `record` checks)."""
    import av  # PyAV, on use (see pick_h264_encoder)

    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            frames = sum(1 for _ in c.decode(s))
            rate = s.average_rate or s.guessed_rate
            return {"frames": frames, "width": s.codec_context.width, "height": s.codec_context.height,
                    "fps": float(rate) if rate else 0.0, "codec": s.codec_context.name}
    except (av.error.FFmpegError, IndexError) as e:
        raise WorldplayError(f"{path} is not a readable video ({e}); record it again") from e
