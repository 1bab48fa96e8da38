"""The tooling that builds the demo world: never imported by the library.

The library (everything outside ``demo/`` and ``cli/``) only reads what this subpackage wrote into
``assets/demo/`` and ``precomputed/``; ``tests/test_architecture.py`` checks that no library module imports it.

- :mod:`~braindiff_app.demo.anatomy`: pycortex's subject S1 -> the demo voxel grid, ROIs, retinotopy and flatmap;
- :mod:`~braindiff_app.demo.stimuli`: the simulated stimulus world (scenes, renderings, captions);
- :mod:`~braindiff_app.demo.simulate`, :mod:`~braindiff_app.demo.simulated_nsd`: the encoding model and the
  NSD-shaped folder of simulated subjects;
- :mod:`~braindiff_app.demo.figure`: the flatmap figure of docs/demo_subject.md;
- :mod:`~braindiff_app.demo.vd`, :mod:`~braindiff_app.demo.train_vd`, :mod:`~braindiff_app.demo.train_vdvae`: the
  small models of the real classes and their trainers;
- :mod:`~braindiff_app.demo.judge`: a small CNN that names a scene's content (for ROI category checks);
- :mod:`~braindiff_app.demo.export`: the ROI studio's compact committed workspace.
"""
