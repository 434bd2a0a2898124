"""SICE-layout data sets: reading them, building them from multi-exposure sequences, choosing labels.

- :mod:`~sice.dataset.layout` reads the layout (the authors' and ours), splits and exposure levels.
- :mod:`~sice.dataset.build` writes it (``sice build-dataset``): frames, candidate references from
  every fusion generator, the manifest.
- :mod:`~sice.dataset.scoring` scores candidates (MEF-SSIM and simple statistics);
  :mod:`~sice.dataset.selection` picks each scene's label by score or by screening votes.
- :mod:`~sice.dataset.manifest` records what was built: one entry per finished scene, merged.
- :mod:`~sice.dataset.finishing` gives the chosen fusion its photographic finish.
- :mod:`~sice.dataset.rendering` renders badly exposed photos and sequences from HDR radiance maps.
"""
