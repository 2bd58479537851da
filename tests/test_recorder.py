"""mp4 recording: round trips through PyAV, keeps partial recordings, never truncates a target;
and `worldplay record` end to end."""

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from worldplay import cli
from worldplay.errors import WorldplayError

av = pytest.importorskip("av")
from worldplay.client.recorder import Mp4Recorder, read_mp4_info  # noqa: E402

H, W = 360, 640
ROOT = Path(__file__).resolve().parents[1]


def frame(k: int) -> np.ndarray:
    """A smooth gradient with a moving bar: easy to encode, and each frame differs."""
    x = np.linspace(0, 255, W, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, H, dtype=np.float32)[:, None, None]
    img = np.concatenate([np.broadcast_to(x, (H, W, 1)), np.broadcast_to(y, (H, W, 1)),
                          np.full((H, W, 1), 40.0 * (k % 6), np.float32)], axis=-1)
    img[:, 20 * k:20 * k + 40] = 255
    return img.astype(np.uint8)


def hidden_temps(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".")]


def test_twenty_frames_round_trip(tmp_path):
    out = tmp_path / "walk.mp4"
    with Mp4Recorder(out) as rec:
        for k in range(20):
            rec.write(torch.from_numpy(frame(k)) if k % 2 else frame(k))   # torch or numpy
        assert rec.frames_written == 20
    info = read_mp4_info(out)
    assert info == {"frames": 20, "width": 640, "height": 360, "fps": 16.0, "codec": "h264"}
    with av.open(str(out)) as c:
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
    err = np.abs(decoded[7].astype(np.float32) - frame(7).astype(np.float32)).mean()
    assert err < 4.0                                                       # crf 20: close to the input
    assert hidden_temps(tmp_path) == []
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask                    # like any file the user writes


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_exception_mid_recording_keeps_a_playable_partial_file(tmp_path, exc):
    out = tmp_path / "partial.mp4"
    with pytest.raises(exc):
        with Mp4Recorder(out) as rec:
            for k in range(10):
                rec.write(frame(k))
            raise exc()
    assert read_mp4_info(out)["frames"] == 10
    assert hidden_temps(tmp_path) == []


def test_failure_before_any_frame_leaves_the_existing_file(tmp_path):
    out = tmp_path / "keep.mp4"
    out.write_bytes(b"previous recording")
    with pytest.raises(RuntimeError):
        with Mp4Recorder(out):
            raise RuntimeError("source failed")
    assert out.read_bytes() == b"previous recording"
    with Mp4Recorder(out):
        pass                                                               # nothing written: no file change
    assert out.read_bytes() == b"previous recording" and hidden_temps(tmp_path) == []


def test_unwritable_or_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(WorldplayError, match="does not exist"):
        Mp4Recorder(tmp_path / "nope" / "x.mp4")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(WorldplayError, match="cannot write in"):
        Mp4Recorder(blocker / "x.mp4")


def test_wrong_frame_shape_is_a_clear_error(tmp_path):
    with Mp4Recorder(tmp_path / "a.mp4") as rec:
        with pytest.raises(WorldplayError, match=r"\(360, 640, 3\)"):
            rec.write(np.zeros((100, 100, 3), np.uint8))
        rec.write(frame(0))


def test_disk_full_is_a_worldplay_error_and_leaves_no_file(tmp_path, monkeypatch):
    out = tmp_path / "full.mp4"
    rec = Mp4Recorder(out)

    def no_space(packets):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(rec, "_container", _Wrap(rec._container, mux=no_space))
    with pytest.raises(WorldplayError, match="disk full"):
        for k in range(60):                                                # x264 buffers a few frames first
            rec.write(frame(k))
        rec.close()
    assert not out.exists() and hidden_temps(tmp_path) == []


class _Wrap:
    """The real container with one method swapped."""
    def __init__(self, inner, **over):
        self._inner, self._over = inner, over

    def __getattr__(self, name):
        return self._over.get(name) or getattr(self._inner, name)


def test_sigkill_leaves_only_a_hidden_temp_file(tmp_path):
    out = tmp_path / "killed.mp4"
    code = textwrap.dedent(f"""
        import os, signal, numpy as np
        from worldplay.client.recorder import Mp4Recorder
        rec = Mp4Recorder({str(out)!r})
        for k in range(30):
            rec.write(np.full((360, 640, 3), k * 8, np.uint8))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert not out.exists()
    assert [p.name.startswith(".killed.mp4.") for p in hidden_temps(tmp_path)] == [True]


# ---- `worldplay record` end to end --------------------------------------------------------

def test_record_command_writes_the_right_frames(tmp_path, capsys):
    pytest.importorskip("worldplay.world.render")
    out = tmp_path / "orbit.mp4"
    assert cli.main(["record", "--source", "world", "--scene", "7", "--path", "orbit", "--seconds", "0.5",
                     "--out", str(out), "--no-progress"]) == 0
    assert read_mp4_info(out) == {"frames": 8, "width": 640, "height": 360, "fps": 16.0, "codec": "h264"}
    assert "recorded 8 frames" in capsys.readouterr().out


@pytest.mark.parametrize("argv, match", [
    (["--path", "spiral"], "unknown path 'spiral'"),
    (["--out", "/nonexistent-folder/x.mp4"], "does not exist"),
    (["--prompt", "desert blorp"], "blorp"),
    (["--source", "model:no-such-model"], "unknown model 'no-such-model'"),
    (["--source", "nothing"], "unknown source 'nothing'"),
    (["--seconds", "0"], "--seconds must be > 0"),
])
def test_record_command_errors_are_one_line_before_rendering(tmp_path, capsys, argv, match):
    base = {"--path": "orbit", "--out": str(tmp_path / "x.mp4"), "--seconds": "0.5"}
    base.update(dict(zip(argv[::2], argv[1::2])))
    rc = cli.main(["record", *[a for kv in base.items() for a in kv]])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and match in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.mp4").exists()


def test_record_ctrl_c_keeps_a_playable_partial_file(tmp_path, capsys, monkeypatch):
    from worldplay.frame import Frame
    from worldplay.sources import registry

    class Interrupting:
        name, chunk, calls = "fake", 2, 0

        def frames(self, c2w, times):
            Interrupting.calls += 1
            if Interrupting.calls == 3:
                raise KeyboardInterrupt
            return [Frame(torch.full((H, W, 3), 100, dtype=torch.uint8), torch.ones(H, W),
                          torch.zeros(H, W, dtype=torch.bool), p, float(t)) for p, t in zip(c2w, times)]
    monkeypatch.setitem(registry.KINDS, "fake", registry.SourceKind("fake", lambda spec, env: Interrupting(), "test"))
    out = tmp_path / "cut.mp4"
    rc = cli.main(["record", "--source", "fake", "--path", "loop", "--seconds", "1", "--out", str(out),
                   "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 130 and "kept a playable" in err and "first 4 of 16 frames" in err
    assert read_mp4_info(out)["frames"] == 4


def test_record_reports_sizes_and_memory_every_n_frames(tmp_path, capsys, one_thread):
    from worldplay import cli
    out = tmp_path / "m.mp4"
    assert cli.main(["record", "--source", "model:tiny-random", "--path", "orbit", "--seconds", "0.5",
                     "--report-every", "4", "--no-progress", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.startswith("frame ")]
    assert [ln.split(":")[0] for ln in lines] == ["frame 4", "frame 8"]
    assert all("memory entries" in ln and "kv cache MB" in ln and "RSS" in ln for ln in lines)
    end = [ln for ln in captured.out.splitlines() if ln.startswith("end: ")]
    assert end and "flat frames" in end[0] and "NaN frames 0" in end[0]
