"""Built-in estimators of ibtoolkit, one module each.

They are declared in setup.py under the ``ibtoolkit.estimators`` entry-point group, the same way a
third-party plugin is, and depend only on ibtoolkit's estimator contract (never on the callback or
the store).
"""
