"""Start the braindiff app: ``python app.py`` (http://127.0.0.1:7860), on the embedded demo by default.

The same as ``braindiff app``; every flag of ``braindiff app --help`` works here.
"""

from __future__ import annotations

import sys

from braindiff_app.cli import main

if __name__ == "__main__":
    sys.exit(main(["app", *sys.argv[1:]]))
