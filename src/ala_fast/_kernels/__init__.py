"""Every compiled (Numba) function of ala_fast lives in this private package.

Modules are imported lazily by their callers so that ``import ala_fast`` compiles nothing.
"""
