"""Builds the parafork Python package with CMake (pip install --no-build-isolation .).

The extension is built by this repository's CMake project for the interpreter running this
script; nothing is downloaded. Set CMAKE_ARGS to pass more options to CMake.
"""

import os
import shlex
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        out = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build = Path(self.build_temp).resolve() / "cmake"
        build.mkdir(parents=True, exist_ok=True)
        configure = [
            "cmake", "-S", str(ROOT), "-B", str(build), "-G", "Ninja",
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DPython_EXECUTABLE={sys.executable}",
            "-DPARAFORK_PYTHON=ON",
            "-DPARAFORK_BUILD_TESTS=OFF", "-DPARAFORK_BUILD_EXAMPLES=OFF",
            "-DPARAFORK_BUILD_BENCH=OFF", "-DPARAFORK_BUILD_TOOLS=OFF", "-DPARAFORK_INSTALL=OFF",
        ] + shlex.split(os.environ.get("CMAKE_ARGS", ""))
        subprocess.run(configure, check=True)
        subprocess.run(["cmake", "--build", str(build), "--target", "_parafork"], check=True)
        built = next((build / "python" / "parafork").glob("_parafork*.so"))
        target = Path(self.get_ext_fullpath(ext.name)).resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        self.copy_file(str(built), str(target))


setup(
    name="parafork",
    version="0.1.0",
    description="Process-based parallelism on Linux: fork-at-the-call map, on a C++20 core",
    python_requires=">=3.9",
    packages=["parafork"],
    package_dir={"": "python"},
    ext_modules=[CMakeExtension("parafork._parafork")],
    cmdclass={"build_ext": CMakeBuild},
    zip_safe=False,
)
