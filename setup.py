"""The native rANS coder (slimfast/coding/_rans.c); everything else is in pyproject.toml.

``optional``: where no C compiler is found, slimfast installs without it and codes with the
pure-Python reference in slimfast/coding/rans.py (the same bytes, slowly).
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension("slimfast.coding._rans", ["slimfast/coding/_rans.c"], optional=True,
                             extra_compile_args=["-O3"])])
