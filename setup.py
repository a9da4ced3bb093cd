"""The optional C part of HIF: the load runner's SSE reader (hif/harness/load/_sse.c).

Everything else is declared in pyproject.toml. ``optional=True``: without a C compiler the
install still succeeds and the runner reads streams with its pure-Python reader (stream.py), the
same figures at a lower rate; ``tests/unit/harness/test_sse_reader.py`` fails under CI=true when
the extension is missing, so CI cannot test only the fallback.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "hif.harness.load._sse",
            ["hif/harness/load/_sse.c"],
            extra_compile_args=["-O2", "-std=c99", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
