"""parafork.mpyx.FFmpeg (mpyx.Vid.FFmpeg) against a stand-in ffmpeg first on PATH
(fake_ffmpeg/ffmpeg: rawvideo in, every byte inverted, rawvideo out): frames in and out through
its pipes in each of mpyx's modes, and every way ffmpeg can fail."""

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

import parafork as pf
from parafork.mpyx import EZ, F, FFmpegError, Iter
from parafork.mpyx.Vid import FFmpeg  # mpyx's import, the package renamed
from conftest import alive

FAKE = Path(__file__).resolve().parent / "fake_ffmpeg"
SHAPE = (3, 4, 3)  # H, W, C


@pytest.fixture
def ffmpeg(monkeypatch, tmp_path):
    """The stand-in first on PATH; notes() gives (pid, arguments) of each run."""
    monkeypatch.setenv("PATH", f"{FAKE}:{os.environ['PATH']}")
    notes = tmp_path / "ffmpeg-runs"
    monkeypatch.setenv("FAKE_FFMPEG_NOTES", str(notes))

    class Runs:
        def mode(self, m):
            monkeypatch.setenv("FAKE_FFMPEG", m)

        def runs(self):
            if not notes.exists():
                return []
            return [(int(line.split(" ", 1)[0]), line.split(" ", 1)[1].split())
                    for line in notes.read_text().splitlines()]
    return Runs()


def frames(n, shape=SHAPE):
    return [np.full(shape, i % 256, dtype=np.uint8) + np.arange(np.prod(shape), dtype=np.uint8).reshape(shape)
            for i in range(n)]


def gone(pid, within=10.0):
    deadline = time.monotonic() + within
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not alive(pid)


def test_frames_stream_in_and_out_through_ffmpeg(ffmpeg):
    src = frames(20)
    out = EZ(Iter(src), FFmpeg(SHAPE, [], SHAPE, [])).list()
    assert len(out) == 20
    for a, b in zip(src, out):
        assert b.dtype == np.uint8 and b.shape == SHAPE
        assert (b == 255 - a).all()
    (pid, argv), = ffmpeg.runs()
    assert argv == ["-f", "rawvideo", "-video_size", "4x3", "-pix_fmt", "rgb24", "-i", "-",
                    "-f", "rawvideo", "-s", "4x3", "-pix_fmt", "rgb24", "-"]
    assert not alive(pid)


def test_more_than_a_pipe_holds_through_an_ffmpeg_that_buffers_it_all(ffmpeg):
    shape = (48, 64, 3)  # 9 KiB frames, 300 of them: 2.7 MB before the stand-in writes a byte
    src = frames(300, shape)
    out = EZ(Iter(src), FFmpeg(shape, "-f rawvideo", shape, ["-pix_fmt rgb24"], "-y"), F()).list()
    assert len(out) == 300 and all((b == 255 - a).all() for a, b in zip(src, out))
    (_, argv), = ffmpeg.runs()
    assert argv[0] == "-y" and argv.count("-f") == 2 and argv.count("-pix_fmt") == 2


def test_gray_frames_and_bytes_items(ffmpeg):
    shape = (2, 5, 1)
    out = EZ(Iter([bytes(range(10)), np.zeros(shape, np.uint8)]), FFmpeg(shape, [], shape, [])).list()
    assert [o.tolist() for o in out] == [(255 - np.arange(10, dtype=np.uint8)).reshape(shape).tolist(),
                                         np.full(shape, 255).tolist()]
    assert "gray" in ffmpeg.runs()[0][1]


def test_a_file_in_frames_out_is_a_source(ffmpeg, tmp_path):
    raw = tmp_path / "in.raw"
    src = frames(7)
    raw.write_bytes(b"".join(f.tobytes() for f in src))
    out = EZ(FFmpeg(str(raw), "-f rawvideo -video_size 4x3 -pix_fmt rgb24", SHAPE, [])).list()
    assert len(out) == 7 and all((b == 255 - a).all() for a, b in zip(src, out))


def test_frames_in_a_file_out_is_a_sink(ffmpeg, tmp_path):
    dst = tmp_path / "out.raw"
    src = frames(9)
    EZ(Iter(src), FFmpeg(SHAPE, [], str(dst), "-f rawvideo")).start().join()
    assert dst.read_bytes() == b"".join((255 - f).tobytes() for f in src)


def test_a_frame_of_the_wrong_size_is_an_error(ffmpeg):
    with pytest.raises(ValueError, match="input shape"):
        EZ(Iter([np.zeros((2, 2, 3), np.uint8)]), FFmpeg(SHAPE, [], SHAPE, [])).list()


def test_ffmpeg_that_fails_fails_the_graph_with_its_stderr(ffmpeg):
    ffmpeg.mode("fail")
    with pytest.raises(FFmpegError, match="exited with code 1: fake ffmpeg: Invalid data") as info:
        EZ(Iter(frames(50)), FFmpeg(SHAPE, [], SHAPE, []), F()).list()
    assert isinstance(info.value.__cause__, pf.RemoteTraceback)
    pid, _ = ffmpeg.runs()[0]
    assert gone(pid)


def test_ffmpeg_killed_fails_the_graph(ffmpeg):
    ffmpeg.mode("die")
    with pytest.raises(FFmpegError, match=r"killed by signal 9 \(SIGKILL\)"):
        EZ(Iter(frames(50)), FFmpeg(SHAPE, [], SHAPE, [])).list()


def test_output_that_ends_inside_a_frame_is_an_error(ffmpeg):
    ffmpeg.mode("partial")
    with pytest.raises(FFmpegError, match="inside a frame: 18 bytes"):
        EZ(Iter(frames(3)), FFmpeg(SHAPE, [], SHAPE, [])).list()


def test_no_ffmpeg_on_path_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(OSError, match="exec ffmpeg"):
        EZ(Iter(frames(1)), FFmpeg(SHAPE, [], SHAPE, [])).list()


def test_the_stage_killed_takes_ffmpeg_with_it(ffmpeg):
    ffmpeg.mode("sleep")
    p = EZ(Iter(frames(3)), FFmpeg(SHAPE, [], SHAPE, []), F()).start()
    stage = p.pids()[1]
    deadline = time.monotonic() + 20
    while not ffmpeg.runs() and time.monotonic() < deadline:
        time.sleep(0.02)
    pid, _ = ffmpeg.runs()[0]
    os.kill(stage, signal.SIGKILL)
    with pytest.raises(pf.WorkerDied) as info:
        p.join()
    assert info.value.pid == stage
    assert gone(pid)  # it dies with its stage


def test_another_stage_failing_ends_ffmpeg_too(ffmpeg):
    ffmpeg.mode("sleep")

    class Boom(F):
        def setup(self):
            time.sleep(0.5)  # ffmpeg has started meanwhile
            raise KeyError("elsewhere")

    with pytest.raises(KeyError):
        EZ(Iter(frames(3)), FFmpeg(SHAPE, [], SHAPE, []), F()).xcut("x", EZ(Boom())).list()
    pid, _ = ffmpeg.runs()[0]
    assert gone(pid)


def test_output_frames_need_a_shape():
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        EZ(Iter([1]), FFmpeg(SHAPE, [], "-", [])).list()
