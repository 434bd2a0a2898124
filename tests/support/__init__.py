"""Test-side code that is not a test: shared helpers, reference implementations, the fuzzer.

pytest puts ``tests/`` on ``sys.path`` (rootdir-relative imports, no ``tests/__init__.py``), so
test modules import ``support.helpers`` etc.; they never import each other. Nothing in
``src/sice`` may import from here (``tests/test_architecture.py`` checks it).

* :mod:`support.helpers`: paths, synthetic images and the small datasets several tests build.
* :mod:`support.live_server`: real servers (uvicorn in a thread, or a ``sice`` command).
* :mod:`support.memory_probe`: peak memory of code run in a fresh interpreter.
* :mod:`support.caffe_reference`: an independent caffemodel encoder and layer interpreter.
* :mod:`support.caffe_demo`: the authors' demo of the released Caffe models, re-created.
* :mod:`support.fuzzing`: the fuzzer of the image and caffemodel readers (also a command:
  ``python tests/support/fuzzing.py --help``).
"""
