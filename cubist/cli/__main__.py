import sys

from cubist.cli import main

sys.exit(main())
