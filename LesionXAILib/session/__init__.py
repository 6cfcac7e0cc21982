"""Scene-free lesion session: inputs in, cache key, staged per-lesion results, results out (no Slicer import).

- ``clicks``: the one click policy of the Slicer module and the browser viewer.
- ``cache``: the per-lesion result cache and the digests its keys are made of.
"""
