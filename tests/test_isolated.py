import pytest
from _isolated import run_isolated
def test_ok():
    assert run_isolated("print(1+1)").strip() == "2"
def test_crash_fails():
    with pytest.raises(pytest.fail.Exception, match="SIGSEGV"):
        run_isolated("import ctypes; ctypes.string_at(0)")
def test_exc_fails():
    with pytest.raises(pytest.fail.Exception, match="exited with 1"):
        run_isolated("raise SystemExit(1)")
