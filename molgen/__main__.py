import sys

from molgen.cli import main

sys.exit(main())
