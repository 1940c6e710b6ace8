"""`python -m graphc` runs the command line."""
import sys

from graphc.cli import main

sys.exit(main())
