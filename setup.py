"""Builds the optional SIMD kernels (src/deepcompress/runtime/_lut.c); everything else is in pyproject.toml.

Without a working C compiler the build goes on without them and the runtime uses its portable kernels.
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """build_ext that warns in one line instead of failing when the extension cannot be compiled."""

    def run(self):
        try:
            super().run()
        except Exception as err:  # no compiler, no Python headers: the portable kernels still work
            print(f"deepcompress: warning: SIMD kernels not built ({err}); using the portable kernels")

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as err:
            print(f"deepcompress: warning: SIMD kernels not built ({err}); using the portable kernels")


setup(
    ext_modules=[Extension("deepcompress.runtime._lut", ["src/deepcompress/runtime/_lut.c", "src/deepcompress/runtime/_spmm.c",
                                                     "src/deepcompress/runtime/_csc8.c"],
                           depends=["src/deepcompress/runtime/_lut_blocks.h"],
                           extra_compile_args=["-O2", "-std=c11", "-ffp-contract=off"], optional=True)],
    cmdclass={"build_ext": OptionalBuildExt},
)
