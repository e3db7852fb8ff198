import sys

from scripts.nomadctl.cli import main

sys.exit(main())
