"""How the command line asks glibc to keep freed memory (large tiles), and to give it back before the check."""

import sys

import pytest

from napari_cvdm.inference._malloc import release_freed_memory, reuse_freed_memory

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")


@linux
def test_the_settings_apply_on_glibc_and_values_must_fit_a_c_int(monkeypatch):
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    assert reuse_freed_memory() is True
    with pytest.raises(ValueError, match="up to"):
        reuse_freed_memory(keep_bytes=8 << 30)  # would wrap around to 0 ("trim always") in a C int
    assert release_freed_memory() in (True, False)  # True when it returned memory


@linux
def test_the_environment_takes_precedence(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "268435456")
    assert reuse_freed_memory() is False
