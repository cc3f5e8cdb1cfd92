"""A small ``unittest`` for the guest (MicroPython), copied to a node as ``/unittest.py``.

Upstream's tests that use unittest (extmod/ssl_noleak.py in 1.25; tls_noleak.py and
tls_threads.py in 1.26) expect it on the board: run-tests.py says to install micropython-lib's
with ``mpremote mip install unittest``. micropython-lib is not in the Debian source tarball and
the lab fetches nothing from outside, so this stand-in gives those tests what they use, and
ends with the summary that run-tests.py parses (CPython's format)::

    ----------------------------------------------------------------------
    Ran 2 tests

    OK                                  (or "OK (skipped=1)", "FAILED (failures=1, errors=0)")

It must stay MicroPython- and CPython-compatible: it is ordinary Python, no host imports.
"""

import sys


class SkipTest(Exception):
    pass


def skip(reason):
    def deco(fn):
        def skipped(*args, **kwargs):
            raise SkipTest(reason)

        return skipped

    return deco


def skipIf(cond, reason):
    return skip(reason) if cond else (lambda fn: fn)


def skipUnless(cond, reason):
    return skipIf(not cond, reason)


class _Raises:
    def __init__(self, exc):
        self.expected = exc
        self.exception = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            raise AssertionError(f"{self.expected!r} not raised")
        if issubclass(exc_type, self.expected):
            self.exception = exc
            return True
        return False


class TestCase:
    def setUp(self):
        pass

    def tearDown(self):
        pass

    @classmethod
    def setUpClass(cls):
        pass

    @classmethod
    def tearDownClass(cls):
        pass

    def skipTest(self, reason):
        raise SkipTest(reason)

    def fail(self, msg=None):
        raise AssertionError(msg or "fail")

    def assertEqual(self, a, b, msg=None):
        if a != b:
            self.fail(msg or f"{a!r} != {b!r}")

    def assertNotEqual(self, a, b, msg=None):
        if a == b:
            self.fail(msg or f"{a!r} == {b!r}")

    def assertTrue(self, x, msg=None):
        if not x:
            self.fail(msg or f"{x!r} is not true")

    def assertFalse(self, x, msg=None):
        if x:
            self.fail(msg or f"{x!r} is not false")

    def assertIs(self, a, b, msg=None):
        if a is not b:
            self.fail(msg or f"{a!r} is not {b!r}")

    def assertIsNot(self, a, b, msg=None):
        if a is b:
            self.fail(msg or f"{a!r} is {b!r}")

    def assertIsNone(self, x, msg=None):
        self.assertIs(x, None, msg)

    def assertIsNotNone(self, x, msg=None):
        self.assertIsNot(x, None, msg)

    def assertIn(self, a, b, msg=None):
        if a not in b:
            self.fail(msg or f"{a!r} not in {b!r}")

    def assertNotIn(self, a, b, msg=None):
        if a in b:
            self.fail(msg or f"{a!r} in {b!r}")

    def assertIsInstance(self, x, cls, msg=None):
        if not isinstance(x, cls):
            self.fail(msg or f"{x!r} is not an instance of {cls!r}")

    def assertGreater(self, a, b, msg=None):
        if not a > b:
            self.fail(msg or f"{a!r} not greater than {b!r}")

    def assertGreaterEqual(self, a, b, msg=None):
        if not a >= b:
            self.fail(msg or f"{a!r} not greater than or equal to {b!r}")

    def assertLess(self, a, b, msg=None):
        if not a < b:
            self.fail(msg or f"{a!r} not less than {b!r}")

    def assertLessEqual(self, a, b, msg=None):
        if not a <= b:
            self.fail(msg or f"{a!r} not less than or equal to {b!r}")

    def assertAlmostEqual(self, a, b, places=7, msg=None):
        if round(abs(a - b), places) != 0:
            self.fail(msg or f"{a!r} != {b!r} within {places!r} places")

    def assertRaises(self, exc, func=None, *args, **kwargs):
        ctx = _Raises(exc)
        if func is None:
            return ctx
        with ctx:
            func(*args, **kwargs)
        return None


def _print_exc(e):
    pe = getattr(sys, "print_exception", None)
    if pe is not None:
        pe(e)
    else:
        print(f"{type(e).__name__}: {e}")


def _cases(module):
    for name in sorted(dir(module)):
        obj = getattr(module, name)
        if isinstance(obj, type) and obj is not TestCase and issubclass(obj, TestCase):
            yield obj


def _run_class(cls, counts):
    cls.setUpClass()
    for name in sorted(n for n in dir(cls) if n.startswith("test")):
        if not callable(getattr(cls, name)):
            continue
        label = "{} ({}.{})".format(name, "__main__", cls.__name__)
        counts["run"] += 1
        case = cls()
        try:
            case.setUp()
            try:
                getattr(case, name)()
            finally:
                case.tearDown()
            print(label, "... ok")
        except SkipTest as e:
            counts["skipped"] += 1
            print(label, "... skipped", e.args[0] if e.args else "")
        except AssertionError as e:
            counts["failures"] += 1
            print(label, "... FAIL")
            _print_exc(e)
        except Exception as e:
            counts["errors"] += 1
            print(label, "... ERROR")
            _print_exc(e)
    cls.tearDownClass()


def main(module="__main__"):
    # In the raw REPL the test's globals are the __main__ module; importing it by name works
    # in MicroPython and CPython alike.
    mod = __import__(module) if isinstance(module, str) else module
    counts = {"run": 0, "failures": 0, "errors": 0, "skipped": 0}
    for cls in _cases(mod):
        _run_class(cls, counts)
    print("-" * 70)
    print("Ran", counts["run"], "tests")
    print()
    failures, errors, skipped = counts["failures"], counts["errors"], counts["skipped"]
    if failures or errors:
        print(f"FAILED (failures={failures}, errors={errors})")
    elif skipped:
        print(f"OK (skipped={skipped})")
    else:
        print("OK")
    return counts
