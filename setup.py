"""The compiled data-path helpers (appliance/native/__init__.py says why); everything else about the
package is in pyproject.toml. Built by `pip install` (in place for `pip install -e`) and by
image/build.py for the VM image. Needs a C compiler, Python's headers and OpenSSL's (libcrypto)
headers: the Makefile's system dependencies (gcc, python3-dev, libssl-dev).
"""
from setuptools import Extension, setup

CFLAGS = ["-Wall", "-Wextra", "-Wno-missing-field-initializers", "-Werror", "-fno-strict-aliasing", "-D_FORTIFY_SOURCE=2",
          "-fstack-protector-strong"]

setup(ext_modules=[
    Extension("appliance.native._gro", ["appliance/native/gro.c"], extra_compile_args=CFLAGS),
    Extension("appliance.native._aead", ["appliance/native/aead.c"], libraries=["crypto"], extra_compile_args=CFLAGS),
    Extension("appliance.native._gso", ["appliance/native/gso.c"], extra_compile_args=CFLAGS),
    Extension("appliance.native._udp", ["appliance/native/udp.c"], extra_compile_args=CFLAGS),
])
