"""The seam metasched's scheduler talks to sites through; ``site_agents`` implements it.

``base``: the agent protocol and the records that cross it; ``kind``: what a site kind declares (its
config class, agent factory, preflight checks, test-matrix rows); ``registry``: the kinds installed
(entry points); ``schema``: typed, constrained fields for site configuration dataclasses, which are the
one schema of the Python API and of campaign files; ``preflight``: ``metasched sites check``.
"""
