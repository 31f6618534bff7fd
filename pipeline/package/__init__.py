"""``onnxbuild package BUILD``: a deployment package of one build (a folder and a zip): the model
with its external data, the ONNX Runtime session settings it was measured with, the recipe as composed,
the stage records and metrics, a SHA-256 manifest and a runnable ``infer.py``.

Modules: :mod:`~pipeline.package.build` assembles it, :mod:`~pipeline.package.readiness` decides whether
a build may ship, :mod:`~pipeline.package.settings` turns a target's session into data,
:mod:`~pipeline.package.manifest` writes and checks ``SHA256SUMS``, :mod:`~pipeline.package.command` is
the subcommand; ``infer.py`` is the script copied into every package (numpy + onnxruntime only).
"""

from pipeline.package.build import PackageError, Packaged, package_build

__all__ = ["PackageError", "Packaged", "package_build"]
