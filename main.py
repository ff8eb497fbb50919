"""`python3 main.py TASK.yaml`: runs an audit task file, as the original PrivBox tool did.

Same as `privaudit run TASK.yaml`; see `python3 main.py --help`. Runs in the environment privaudit is
installed in (`make demo` creates it: `.venv/bin/python main.py TASK.yaml`).
"""

import sys

try:
    from privaudit.client.cli import main_seed
except ImportError as error:  # an interpreter without privaudit: say where it is
    sys.exit(f"main.py: privaudit is not installed in {sys.executable} ({error}); run `make demo` once, then "
             "`.venv/bin/python main.py TASK.yaml` (or `source .venv/bin/activate` first)")

if __name__ == "__main__":
    sys.exit(main_seed())
