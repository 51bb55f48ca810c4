"""Bytes on disk: the ``.sfi`` container, image files in and out, and weights files.

Nothing here knows a network; the coding path and the engines sit above it.
"""
