"""The C fast path of load-pg (everything else is in pyproject.toml).

Declared here rather than in pyproject.toml's `[tool.setuptools] ext-modules`, which
setuptools still marks experimental and warns about on every install. Optional: without
a compiler the build skips it and load-pg uses its Python path.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "taxi_cli.postgres._fastcopy",
            sources=["taxi_cli/postgres/_fastcopy.c"],
            optional=True,
        )
    ]
)
