"""The native parts of slimfast: the rANS coder (slimfast/coding/_rans.c) and the 8-bit
hyper-synthesis' elementwise steps (slimfast/coding/_intmath.c); everything else is in pyproject.toml.

``optional``: where no C compiler is found, slimfast installs without them and runs the numpy and
pure-Python code that defines them (the same bytes and bits, more slowly). ``-ffp-contract=off``:
no multiply-add is fused, so the native float steps round exactly as numpy's.
"""
from setuptools import Extension, setup

setup(ext_modules=[
    Extension("slimfast.coding._rans", ["slimfast/coding/_rans.c"], optional=True, extra_compile_args=["-O3"]),
    Extension("slimfast.coding._intmath", ["slimfast/coding/_intmath.c"], optional=True,
              extra_compile_args=["-O3", "-ffp-contract=off"]),
])
