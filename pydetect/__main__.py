import sys

from pydetect.cli import main

sys.exit(main())
