"""The one jit decorator of the package.

Every kernel is compiled with the same options so that numba's on-disk cache works for all of
them (``NUMBA_CACHE_DIR`` moves it), errors follow NumPy's rules (division by zero gives inf,
not an exception) and the GIL is released, so that several samples run on several cores from
plain Python threads.  No ``fastmath``: the kernels must agree bit for bit with their slow twins
in ``tests/naive.py``.
"""

import functools

import numba

jit = functools.partial(numba.njit, cache=True, error_model="numpy", nogil=True)
