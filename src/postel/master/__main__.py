"""python -m postel.master - run master (what `postel start` launches)

SYNOPSIS
    python -m postel.master -c config_dir [-f] [-w fd] [-v]

DESCRIPTION
    The same as `postel -c config_dir master ...`; see postel.master.master.
    The configuration directory appears in the process's command line, so
    that an administrator (and the tests) can tell instances apart in ps.
"""

import sys

from postel.master.master import main

sys.exit(main(sys.argv[1:], None))
