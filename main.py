"""`python3 main.py TASK.yaml`: runs an audit task file, as the original PrivBox tool did.

Same as `privaudit run TASK.yaml`; see `python3 main.py --help`.
"""

import sys
from pathlib import Path

# Let a checkout run without being installed: the generated protos live under protos/gen/python.
_ROOT = Path(__file__).resolve().parent
for _path in (_ROOT, _ROOT / "protos" / "gen" / "python"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from client.cli import main_seed  # noqa: E402

if __name__ == "__main__":
    sys.exit(main_seed())
