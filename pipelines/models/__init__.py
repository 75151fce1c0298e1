"""SQL models on top of the loaded tables: staging views, mart tables and data tests.

The SQL lives in ``sql/`` (DuckDB dialect); this package orders, translates and builds it.
"""

from .preview import mart_preview
from .project import ModelsError
from .runner import DataTestFailed, DataTestResult, ModelsReport, build_models, run_data_tests
from .transpile import transpile_models

__all__ = [
    "DataTestFailed",
    "DataTestResult",
    "ModelsError",
    "ModelsReport",
    "build_models",
    "mart_preview",
    "run_data_tests",
    "transpile_models",
]
