"""python-pkcs11 (pinned: 0.10.1) past its public API: the library initialised for threads.

python-pkcs11 calls ``C_Initialize(NULL)``. By PKCS#11 (v2.40 §5.4, C_Initialize) a NULL
argument tells the module that the application will not call it from several threads at
once, and SoftHSM2 then takes no locks of its own: two threads signing at once fail with
CKR_GENERAL_ERROR (bench/hsm_sign.py found it). ``initialise_for_threads`` finalises the
module python-pkcs11 has just loaded — before any session exists — and initialises it again
with ``CKF_OS_LOCKING_OK`` through ctypes, on the same loaded module (``dlopen`` of the same
path returns the same handle) and so the same function table python-pkcs11 calls through.
The sessions of ``Pkcs11KeyStore``'s pool can then sign at once: python-pkcs11 releases the
GIL around each PKCS#11 call. tests/unit/test_compat.py fails if python-pkcs11 changes what
this relies on (its per-path cache of loaded modules, ``C_Initialize(NULL)`` in ``lib``).
"""

from __future__ import annotations

import ctypes
from importlib.metadata import version
from typing import Any

PINNED = "0.10.1"
CKR_OK = 0
CKR_CRYPTOKI_ALREADY_INITIALIZED = 0x191
CKF_OS_LOCKING_OK = 0x2


class _InitArgs(ctypes.Structure):
    """CK_C_INITIALIZE_ARGS: four mutex callbacks (NULL: use the OS's), flags, reserved."""

    _fields_ = [("CreateMutex", ctypes.c_void_p), ("DestroyMutex", ctypes.c_void_p),
                ("LockMutex", ctypes.c_void_p), ("UnlockMutex", ctypes.c_void_p),
                ("flags", ctypes.c_ulong), ("pReserved", ctypes.c_void_p)]


_Call = ctypes.CFUNCTYPE(ctypes.c_ulong, ctypes.c_void_p)


class _FunctionList(ctypes.Structure):
    """The head of CK_FUNCTION_LIST: the version, then C_Initialize and C_Finalize."""

    _fields_ = [("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte),
                ("C_Initialize", _Call), ("C_Finalize", _Call)]


# ``import pkcs11`` is inside the functions: loading python-pkcs11 (and its native library)
# is for processes that use a token, not for every one that imports the key stores.
#: modules this process has initialised for threads (by path)
_threaded: set[str] = set()


def loaded(module: str) -> bool:
    """Whether python-pkcs11 has this module loaded in this process already."""
    import pkcs11

    return module in pkcs11._loaded  # type: ignore[attr-defined]


def initialise_for_threads(module: str) -> bool:
    """Load ``module`` with python-pkcs11, initialised with OS locking; returns whether the
    module now runs with OS locking (False: another part of this process loaded it first and
    may hold sessions, so it is left as it was and calls must stay serialised)."""
    import pkcs11

    if module in _threaded:
        pkcs11.lib(module)
        return True
    first = not loaded(module)
    pkcs11.lib(module)  # loads and calls C_Initialize(NULL)
    if not first:
        return False
    functions = _function_list(module)
    if functions.C_Finalize(None) != CKR_OK:
        return False
    arguments = _InitArgs(flags=CKF_OS_LOCKING_OK)
    result = functions.C_Initialize(ctypes.cast(ctypes.pointer(arguments), ctypes.c_void_p))
    if result != CKR_OK:  # leave it initialised as python-pkcs11 expects, without threads
        functions.C_Initialize(None)
        return False
    _threaded.add(module)
    return True


def _function_list(module: str) -> Any:
    library = ctypes.CDLL(module)
    pointer = ctypes.POINTER(_FunctionList)()
    get = library.C_GetFunctionList
    get.argtypes = [ctypes.POINTER(ctypes.POINTER(_FunctionList))]
    get.restype = ctypes.c_ulong
    if get(ctypes.byref(pointer)) != CKR_OK:
        raise OSError(f"C_GetFunctionList failed in {module}")
    return pointer.contents


def already_initialised(module: str) -> bool:
    """Whether ``C_Initialize`` on the loaded module answers ALREADY_INITIALIZED (the test's
    proof that ctypes reaches the same module state as python-pkcs11)."""
    return bool(_function_list(module).C_Initialize(None) == CKR_CRYPTOKI_ALREADY_INITIALIZED)


def problems() -> list[str]:
    """What of the above no longer holds for the installed python-pkcs11."""
    import pkcs11
    from pkcs11 import _pkcs11

    found = []
    if version("python-pkcs11") != PINNED:
        found.append(f"python-pkcs11 {version('python-pkcs11')} is not the pinned {PINNED}")
    if not isinstance(getattr(pkcs11, "_loaded", None), dict):
        found.append("pkcs11._loaded (loaded modules by path) is gone")
    if not hasattr(_pkcs11.lib, "initialized"):
        found.append("pkcs11._pkcs11.lib.initialized is gone")
    return found
