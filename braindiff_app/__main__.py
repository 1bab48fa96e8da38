import sys

from braindiff_app.cli import main

sys.exit(main())
