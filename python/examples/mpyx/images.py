# mpyx's image pipeline, with text "images": files read, resized, enhanced, watermarked and
# saved in parallel, the file name travelling in .meta from ImgFiles to SaveTo.
import sys
import tempfile
from pathlib import Path

from parafork.mpyx import EZ, F


class ImgFiles(F):
    def setup(self, dir):
        for p in sorted(Path(dir).glob("*.jpg")):
            self.meta["fname"] = p.name
            self.put(p)
        self.stop()


class SaveTo(F):
    def setup(self, dir):
        self.dest = Path(dir)

    def do(self, image):
        (self.dest / self.meta["fname"]).write_text(image)


def imread(path):
    return Path(path).read_text()


def resize(image):
    return image[:8]


def enhance(image):
    return image.upper()


def watermark(image):
    return image + " (c)"


with tempfile.TemporaryDirectory() as src, tempfile.TemporaryDirectory() as dst:
    for i in range(40):
        Path(src, f"pic{i:02}.jpg").write_text(f"picture number {i}")
    EZ(
        ImgFiles(src),
        (imread, imread, imread),
        (resize, resize, resize, resize, resize, resize, resize),
        (enhance, enhance, enhance),
        (watermark, watermark),
        (SaveTo(dst), SaveTo(dst)),
    ).watch().start().join()
    saved = {p.name: p.read_text() for p in Path(dst).iterdir()}
    assert len(saved) == 40, saved
    assert saved["pic07.jpg"] == "PICTURE  (c)", saved["pic07.jpg"]
    print("saved", len(saved), file=sys.stderr)
