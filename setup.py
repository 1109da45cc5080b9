"""The one compiled part of pixelmill: libjpeg-turbo's raw Y/Cb/Cr planes (codecs/_jpegyuv.c).

Optional: where there is no C compiler or no libjpeg headers, the build goes on without it and
pixelmill decodes those JPEGs to RGB as before (``pixelmill.codecs.planes_available()`` says
which). Everything else is declared in pyproject.toml.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "pixelmill.codecs._jpegyuv",
    sources=["src/pixelmill/codecs/_jpegyuv.c"],
    libraries=["jpeg"],
    extra_compile_args=["-O2"],
    optional=True,
)])
